"""`minillama tooluse --out runs/tooluse`: train a small model to call tools and evaluate it on held-out requests
(paper §4.3.5; `minillama.tooluse.train`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from minillama.assets import resolve_checkpoint
from minillama.checkpoint import load_checkpoint
from minillama.posttrain.common import load_chat_format
from minillama.tooluse.train import evaluate_tool_use, make_tasks, train_tool_model
from minillama.utils import set_threads


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minillama tooluse", description="SFT a small model to call tools and measure it on held-out requests."
    )
    p.add_argument("--out", required=True, help="output folder (checkpoint/, results.json)")
    p.add_argument("--init", default="fresh", help="checkpoint folder, 'fresh' (tied embeddings), or 'auto'")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-eval", type=int, default=100)
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25, help="print the loss every N steps (0: never)")
    p.add_argument("--eval-only", default=None, help="evaluate this checkpoint folder instead of training")
    p.add_argument(
        "--untied",
        action="store_true",
        help="fresh model with untied input/output embeddings (tied ones make copying easy to learn)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    set_threads()
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.eval_only:
        model, cf, trainer = load_checkpoint(resolve_checkpoint(args.eval_only)), load_chat_format(), None
        model.eval()
    else:
        model, cf, trainer = train_tool_model(
            args.n_train,
            args.steps,
            args.lr,
            args.batch_size,
            init=args.init,
            seed=args.seed,
            out_dir=out,
            log_every=args.log_every,
            model_args={"tie_word_embeddings": False} if args.untied else None,
        )
    train_s = time.perf_counter() - t0
    heldout = make_tasks(args.n_eval, "heldout", seed=args.seed)
    t1 = time.perf_counter()
    metrics = evaluate_tool_use(model, cf, heldout)
    metrics.update(
        train_s=train_s,
        eval_s=time.perf_counter() - t1,
        steps=args.steps,
        n_train=args.n_train,
        params=model.num_params(),
        final_loss=trainer.history[-1]["loss"] if trainer else None,
        eval_only=args.eval_only,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(metrics, indent=2))
    for key in ("well_formed", "right_tool", "accuracy_with_tools", "accuracy_without_tools"):
        print(f"{key:>24}: {metrics[key]:.1%}")
    for kind, row in metrics["by_kind"].items():
        print(f"{kind:>24}: {row['with_tools']:.1%} with tools, {row['without_tools']:.1%} without (n={row['n']})")
    done = f"evaluated {args.eval_only}" if args.eval_only else f"trained {args.steps} steps in {train_s:.0f} s"
    print(f"{done}; {metrics['params']:,} parameters; results in {out}")
    print("\n\n".join(metrics["transcripts"][:2]))
    return 0
