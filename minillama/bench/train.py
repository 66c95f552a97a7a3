"""`python -m minillama.bench train`: one training step (forward, cross-entropy, backward, AdamW), minillama vs
`transformers.LlamaForCausalLM` on the same weights, batch 8 × 256 tokens, float32, side by side in one process.

Rounds alternate between the variants (each round runs `--steps` steps of each), so a busy neighbour slows all of
them alike; we print tokens/s medians, best-of, and the ratio against transformers. `--precision medium` and
`--compile` show what those switches give.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from minillama.bench._common import FixedBatch, add_common_args, bench_models, print_rates, setup
from minillama.bench._timing import interleaved, summary
from minillama.train import TrainConfig, Trainer


def make_step(forward, params, tokens, fused=False, lr=1e-4):
    """A closure running one optimizer step of next-token prediction on `tokens` (b, s+1): forward, cross-entropy,
    backward, AdamW (foreach, or fused). Returns the loss (before the step)."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1, **({"fused": True} if fused else {"foreach": True}))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step():
        logits = forward(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minillama.bench train", description=__doc__.split("\n\n")[0])
    add_common_args(ap)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    a = ap.parse_args(argv)
    setup(a)
    model, hf = bench_models()
    model.train()
    hf.train()
    tokens = torch.randint(0, model.args.vocab_size, (a.batch, a.seq + 1), generator=torch.Generator().manual_seed(0))

    with torch.no_grad():  # same weights, same loss (a sanity check before timing)
        ours_loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        hf_loss = F.cross_entropy(hf(tokens[:, :-1]).logits.flatten(0, 1), tokens[:, 1:].flatten())
    assert torch.allclose(ours_loss, hf_loss, atol=1e-4), (ours_loss, hf_loss)

    steps = {
        "minillama": make_step(model, model.parameters(), tokens),
        "transformers": make_step(lambda x: hf(x).logits, hf.parameters(), tokens),
    }
    # The course's training loop (schedule, clipping, weight-decay groups, loader, bookkeeping) against a bare
    # step with the same fused AdamW: the trainer should cost at most a few percent more.
    bare_model = copy.deepcopy(model)
    steps["minillama bare (fused AdamW)"] = make_step(bare_model, bare_model.parameters(), tokens, fused=True)
    trainer = Trainer(
        copy.deepcopy(model),
        FixedBatch(tokens),
        TrainConfig(max_steps=10**9, batch_size=a.batch, seq_len=a.seq, warmup_steps=10),
    )
    steps["minillama Trainer.train_step"] = trainer.train_step
    if a.compile:
        compiled = torch.compile(model)
        steps["minillama+compile"] = make_step(compiled, model.parameters(), tokens)

    def repeat(fn):
        return lambda: [fn() for _ in range(a.steps)]

    times = interleaved({k: repeat(v) for k, v in steps.items()}, rounds=a.rounds)
    n = a.batch * a.seq * a.steps
    print(
        f"training step, batch {a.batch} x {a.seq} tokens, {model.num_params() / 1e6:.1f}M parameters, AdamW; "
        f"tokens/s (median of {a.rounds} rounds, best in brackets)"
    )
    print_rates(times, n)
    bare_med, bare_best = summary(times["minillama bare (fused AdamW)"])
    tr_med, tr_best = summary(times["minillama Trainer.train_step"])
    print(
        f"Trainer overhead over the bare step: {100 * (tr_med / bare_med - 1):+.1f}% (median), "
        f"{100 * (tr_best / bare_best - 1):+.1f}% (best of {a.rounds}); target <= +5%"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
