"""Supervised fine-tuning [P §4.1.3]: cross-entropy on the assistant's tokens, prompts masked, dialogs packed.

The training loop is the pre-training one (`minillama.train.train`), reused unchanged: SFT only brings its own
batches (`DialogLoader`: packed dialogs with assistant-only labels and a document mask) and its own loss
(`minillama.posttrain.data.sft_loss`). Llama 3 fine-tunes its largest models at LR 1e-5 for 8.5K–9K steps; a 3M
parameter model on a CPU learns this task family at a few 1e-3 in a few hundred steps.

`minillama sft --init CKPT|fresh|auto --out runs/sft --steps 600` trains on the task family's train split (or on
`--data dialogs.jsonl`, one `{"messages": [...]}` per line) and reports held-out accuracy before and after.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.data import Example, pack_examples, render, sft_loss


class DialogLoader:
    """Rendered dialogs, shuffled each epoch, packed into rows of `seq_len` for `minillama.train.Trainer`.

    `next_batch(rows)` -> `{"tokens", "labels", "doc_ids"}` of `rows` rows; `state_dict()` / `load_state_dict()`
    make a resumed run continue with the same dialogs.
    """

    def __init__(self, examples: list[Example], seq_len: int, seed: int = 0, pad_id: int = 0):
        if not examples:
            raise ValueError("no dialogs to train on")
        too_long = max(len(e.tokens) for e in examples)
        if too_long > seq_len:
            raise ValueError(f"a dialog has {too_long} tokens, more than seq_len={seq_len}; raise --seq-len")
        self.examples, self.seq_len, self.seed, self.pad_id = examples, seq_len, seed, pad_id
        self.epoch, self.pos = 0, 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        return order

    def _next_example(self) -> Example:
        if self.pos >= len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._epoch_order()
        e = self.examples[self._order[self.pos]]
        self.pos += 1
        return e

    def next_batch(self, rows: int) -> dict:
        """Fill `rows` rows with whole dialogs, first fit (each dialog goes into the first row with room), exactly
        as `pack_examples` lays them out; the first dialog that fits nowhere opens the next batch."""
        picked, used = [], []
        while True:
            e = self._next_example()
            n = len(e.tokens)
            slot = next((r for r, u in enumerate(used) if u + n <= self.seq_len), None)
            if slot is None:
                if len(used) == rows:
                    self.pos -= 1  # pos >= 1 here: _next_example has just advanced it
                    break
                used.append(n)
            else:
                used[slot] += n
            picked.append(e)
        return pack_examples(picked, self.seq_len, self.pad_id).as_dict()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.pos = state["seed"], state["epoch"], state["pos"]
        self._order = self._epoch_order()


def task_examples(chat_format, tasks: list[T.Task], responses: list[str] | None = None) -> list[Example]:
    """SFT examples from tasks, with the exact answers or the given responses (e.g. rejection-sampled ones)."""
    responses = responses if responses is not None else [t.answer for t in tasks]
    return [render(chat_format, t.messages(r, system=False)) for t, r in zip(tasks, responses)]


def default_config(steps: int, lr: float = 3e-3, batch_size: int = 16, seq_len: int = 256, seed: int = 0,
                   warmup: int | None = None, **kwargs):
    """The TrainConfig SFT uses: cosine from `lr` to lr/10, short warmup, light weight decay."""
    from minillama.train import TrainConfig

    return TrainConfig(max_steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=warmup if warmup is not None else
                       max(1, min(50, steps // 10)), weight_decay=0.01, batch_size=batch_size, seq_len=seq_len,
                       seed=seed, eval_every=0, **kwargs)


def run_sft(model: Transformer, examples: list[Example], cfg, out_dir: str | Path | None = None,
            progress: bool | None = None, val_examples: list[Example] | None = None):
    """Fine-tune `model` in place on `examples` with the pre-training Trainer; returns the Trainer."""
    from minillama.train import train

    loader = DialogLoader(examples, cfg.seq_len, seed=cfg.seed)
    val = None
    if val_examples:
        val = [pack_examples(val_examples[i:i + 64], cfg.seq_len).as_dict() for i in range(0, len(val_examples), 64)]
    trainer = train(model, loader, cfg, loss_fn=sft_loss, val_batches=val, out_dir=out_dir, progress=progress)
    model.eval()
    return trainer


def load_dialogs(path: str | Path, chat_format) -> list[Example]:
    """A JSON-lines file of `{"messages": [...]}` dialogs -> SFT examples."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(render(chat_format, json.loads(line)["messages"]))
        except (KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}:{i}: expected a JSON object with 'messages' ({err})") from None
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillama sft", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", default="auto", help="checkpoint folder, 'fresh', or 'auto' (shipped, else fresh)")
    p.add_argument("--tokenizer", default=None, help="rank file (default: the shipped course tokenizer)")
    p.add_argument("--out", required=True, help="output folder (checkpoint/, loss.png, results.json)")
    p.add_argument("--data", default=None, help="JSON lines of {'messages': [...]} (default: the task family)")
    p.add_argument("--n-train", type=int, default=20000, help="task-family dialogs to train on")
    p.add_argument("--n-eval", type=int, default=200, help="held-out prompts for the accuracy")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=16, help="packed rows per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    from minillama.posttrain.common import load_chat_format, load_policy, write_json
    from minillama.posttrain.rejection import evaluate_accuracy
    from minillama.utils import set_threads

    args = _parser().parse_args(argv)
    set_threads()
    cf = load_chat_format(args.tokenizer)
    model, origin = load_policy(args.init, cf.tokenizer.n_words, seed=args.seed)
    print(f"start: {origin} ({model.num_params():,} parameters)")
    examples = (load_dialogs(args.data, cf) if args.data else
                task_examples(cf, T.make_tasks(args.n_train, "train", seed=args.seed)))
    heldout = T.make_tasks(args.n_eval, "heldout", seed=0)
    before = evaluate_accuracy(model, cf, heldout)
    print(f"held-out accuracy before SFT: {before['accuracy']:.1%}")
    t0 = time.perf_counter()
    trainer = run_sft(model, examples, default_config(args.steps, args.lr, args.batch_size, args.seq_len, args.seed),
                      out_dir=args.out)
    wall = time.perf_counter() - t0
    after = evaluate_accuracy(model, cf, heldout)
    print(f"held-out accuracy after SFT: {after['accuracy']:.1%} ({wall:.0f} s); checkpoint in {args.out}/checkpoint")
    write_json(Path(args.out) / "results.json", {"before": before, "after": after, "wall_s": wall,
                                                 "final_loss": trainer.history[-1]["loss"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
