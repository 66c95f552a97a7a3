"""`python -m minillama.bench pretrain`: training throughput of the default pre-training recipe (what `minillama
pretrain` runs with no flags) against `transformers.LlamaForCausalLM` on the same weights, side by side in one run.

The recipe (`minillama.train.recipe.PRETRAIN_DEFAULTS`): the `small` preset (vocab 8,192), 16 rows x 256 tokens per
step, AdamW (fused, weight decay on matrices), gradient clipping, bf16 autocast where `cpu_has_native_bf16()`, else
fp32. Four variants, all from the same initial weights, each fed the same in-memory batch (no data-loading cost):

* ``minillama recipe``: `Trainer.train_step` itself, the step `minillama pretrain` runs;
* ``transformers recipe``: the same `Trainer.train_step` driving `LlamaForCausalLM` (its logits through the same
  loss), so transformers gets the recipe too (autocast, fused AdamW, clipping);
* ``minillama fp32``: a plain step (forward, cross-entropy, backward, AdamW), float32, for reference;
* ``transformers fp32``: the same plain step on `LlamaForCausalLM` in its default float32 (AdamW with
  ``foreach=True``, faster than the for-loop that is torch's default on a CPU; ``use_cache=False``): the reference
  every ratio is against.

Before timing, the float32 variants must agree: the same logits and the same first-step loss to 1e-4, so both
models hold the same weights and compute the same function. Rounds alternate between the variants (each round runs
`--steps` steps of each), so a busy neighbour slows all of them alike; we print tokens/s medians and best-of, the
ratio of the medians and the median of each round's own ratio ("paired": steadier when the load changes).

**MFU** (model FLOPs utilisation) = model FLOPs per token x tokens/s / peak FLOP/s. Model FLOPs per token follow
PaLM (Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with Pathways", Appendix B):

    FLOPs/token = 6·N + 12·L·H·Q·T

with N the parameters that take part in a matmul (every linear weight of the blocks and the output layer; not the
input embedding, a lookup, nor the norms), L layers, H query heads of width Q (H·Q = dim) and T = seq_len: 2 FLOPs
per parameter forward and 4 backward, plus QK^T and the weighted sum over values (the full T x T scores, not halved
for the causal mask, as PaLM counts them). A CPU has no datasheet peak, so the peak is measured in the same run and
the same rounds: the median FLOP/s of a large matmul (2048³ by default) in bfloat16 (for the bf16 autocast variants)
and in float32 (for the float32 ones). MFU is thus "vs the measured matmul peak", not vs the hardware's.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys

import torch

from minillama.bench._common import FixedBatch, hf_twin
from minillama.bench._timing import interleaved, summary
from minillama.bench.train import make_step
from minillama.model import ModelArgs, Transformer, ffn_hidden_dim
from minillama.train.recipe import PRETRAIN_DEFAULTS, TrainConfig, cpu_has_native_bf16
from minillama.train.trainer import Trainer
from minillama.utils import resolve_threads, set_threads

REFERENCE = "transformers fp32"
VARIANTS = ("minillama recipe", "transformers recipe", "minillama fp32", REFERENCE)
FLOPS_FORMULA = "6*N + 12*L*H*Q*T (PaLM, Chowdhery et al. 2022, App. B; N = matmul parameters incl. the output layer)"
PARITY_ATOL = 1e-4


def model_flops_per_token(args: ModelArgs, seq_len: int) -> dict:
    """PaLM's model FLOPs per token of a training step (see the module docstring), with its parts."""
    d, layers = args.dim, args.n_layers
    head_dim = d // args.n_heads
    kv_dim = (args.n_kv_heads or args.n_heads) * head_dim
    hidden = ffn_hidden_dim(d, args.multiple_of, args.ffn_dim_multiplier)
    per_layer = d * args.n_heads * head_dim + 2 * d * kv_dim + args.n_heads * head_dim * d + 3 * d * hidden
    n = layers * per_layer + args.vocab_size * d  # the blocks' linear weights + the output layer
    dense, attention = 6 * n, 12 * layers * args.n_heads * head_dim * seq_len
    return {"matmul_params": n, "dense": dense, "attention": attention, "total": dense + attention}


class _Logits(torch.nn.Module):
    """`LlamaForCausalLM` returning its logits tensor, so `Trainer`'s loss (`recipe.lm_loss`) drives it unchanged."""

    def __init__(self, hf: torch.nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.hf(inputs, use_cache=False).logits


def _matmul(n: int, dtype: torch.dtype, reps: int):
    a, b = (torch.randn(n, n, generator=torch.Generator().manual_seed(i)).to(dtype) for i in (1, 2))
    out = torch.empty(n, n, dtype=dtype)

    def run():
        for _ in range(reps):
            torch.mm(a, b, out=out)

    return run


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m minillama.bench pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all physical cores)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are over these)")
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps per variant per round")
    ap.add_argument("--preset", default=PRETRAIN_DEFAULTS["preset"])
    ap.add_argument("--seq", type=int, default=PRETRAIN_DEFAULTS["seq_len"])
    ap.add_argument("--batch", type=int, default=PRETRAIN_DEFAULTS["batch_size"])
    ap.add_argument("--lr", type=float, default=PRETRAIN_DEFAULTS["lr"])
    ap.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="the recipe's precision, as `minillama pretrain --precision`: auto = bf16 autocast where the CPU has "
        "native bf16",
    )
    ap.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n x n matmul that measures the peak")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also time the recipe under torch.compile (`minillama pretrain --compile`; compile time not counted)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return ap


def run(a: argparse.Namespace) -> dict:
    """Build the variants, check parity, time them; the results as a JSON-ready dict."""
    threads = set_threads(a.threads)
    bf16 = a.precision == "bf16" or (a.precision == "auto" and cpu_has_native_bf16())
    margs = ModelArgs.from_preset(a.preset, max_seq_len=max(ModelArgs.from_preset(a.preset).max_seq_len, a.seq))
    base = Transformer(margs).init_weights(std=0.02, seed=0)
    base.train()
    tokens = torch.randint(0, margs.vocab_size, (a.batch, a.seq + 1), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(
        max_steps=10**9, lr=a.lr, min_lr=a.lr / 10, warmup_steps=5, batch_size=a.batch, seq_len=a.seq, bf16=bf16
    )
    try:
        hf = hf_twin(base).train()
        import transformers

        hf_version, note = transformers.__version__, None
    except ImportError as e:
        hf, hf_version = None, None
        note = f"transformers is not importable ({e}); running the minillama variants only, no ratios against it"

    steps, parity = {}, {}
    recipe = Trainer(copy.deepcopy(base), FixedBatch(tokens), cfg)
    steps["minillama recipe"] = lambda: recipe.train_step()["loss"]
    if a.compile:
        twin = copy.deepcopy(base)
        compiled = Trainer(twin, FixedBatch(tokens), cfg, module=torch.compile(twin))
        steps["minillama recipe, compiled"] = lambda: compiled.train_step()["loss"]
    if hf is not None:
        hf_recipe = Trainer(_Logits(copy.deepcopy(hf)), FixedBatch(tokens), cfg)
        steps["transformers recipe"] = lambda: hf_recipe.train_step()["loss"]
    plain = copy.deepcopy(base)
    steps["minillama fp32"] = make_step(plain, plain.parameters(), tokens, lr=a.lr)
    if hf is not None:
        steps[REFERENCE] = make_step(lambda x: hf(x, use_cache=False).logits, hf.parameters(), tokens, lr=a.lr)
        with torch.no_grad():
            logits = plain(tokens[:, :-1])
            diff = (logits - hf(tokens[:, :-1], use_cache=False).logits).abs().max().item()
        parity.update(max_logit_diff=diff, logit_std=logits.std().item())

    # two steps of each before timing: warm-up, and the losses of the first two steps (the same weights must give
    # the same loss; the second step checks the gradients and the optimizer too)
    losses = {name: [float(fn()) for _ in range(2)] for name, fn in steps.items()}
    if hf is not None:
        parity["fp32_loss_diff"] = max(abs(x - y) for x, y in zip(losses["minillama fp32"], losses[REFERENCE]))
        parity["recipe_loss_diff"] = max(
            abs(x - y) for x, y in zip(losses["minillama recipe"], losses["transformers recipe"])
        )
        parity["ok"] = parity["max_logit_diff"] <= PARITY_ATOL and parity["fp32_loss_diff"] <= PARITY_ATOL

    n = a.matmul_size
    reps = {"bf16": max(1, round(4 * (2048 / n) ** 3)), "fp32": max(1, round(1 * (2048 / n) ** 3))}
    peaks = {"bf16": _matmul(n, torch.bfloat16, reps["bf16"]), "fp32": _matmul(n, torch.float32, reps["fp32"])}

    def repeat(fn):
        return lambda: [fn() for _ in range(a.steps)]

    timed = {f"matmul {k}": v for k, v in peaks.items()} | {k: repeat(v) for k, v in steps.items()}
    times = interleaved(timed, rounds=a.rounds, warmup=1)

    peak = {}
    for k in peaks:
        med, best = summary(times[f"matmul {k}"])
        peak[k] = {"flops_per_s": 2 * n**3 * reps[k] / med, "flops_per_s_best": 2 * n**3 * reps[k] / best}
    flops = model_flops_per_token(margs, a.seq)
    tokens_per_call = a.batch * a.seq * a.steps
    variants = {}
    for name in steps:
        med, best = summary(times[name])
        precision = "bf16" if bf16 and "recipe" in name else "fp32"
        rate = tokens_per_call / med
        variants[name] = {
            "precision": "bf16 autocast" if precision == "bf16" else "fp32",
            "tokens_per_s": rate,
            "tokens_per_s_best": tokens_per_call / best,
            "seconds": times[name],
            "first_losses": losses[name],
            "mfu": flops["total"] * rate / peak[precision]["flops_per_s"],
            "mfu_peak": precision,
        }
    ref = variants.get(REFERENCE, {}).get("tokens_per_s")
    for name, v in variants.items():
        v["ratio"] = v["tokens_per_s"] / ref if ref else None
        # each round's own ratio (the variants of one round ran back to back, under about the same load), median
        v["ratio_paired"] = statistics.median(r / t for r, t in zip(times[REFERENCE], times[name])) if ref else None
        v["ratio_vs_minillama_fp32"] = v["tokens_per_s"] / variants["minillama fp32"]["tokens_per_s"]
    return {
        "benchmark": "pretrain",
        "torch": torch.__version__,
        "transformers": hf_version,
        "note": note,
        "cpu": platform.processor() or platform.machine(),
        "threads": threads,
        "threads_from": resolve_threads(a.threads)[1],
        "native_bf16": cpu_has_native_bf16(),
        "recipe": {
            "preset": a.preset,
            "params": base.num_params(),
            "vocab_size": margs.vocab_size,
            "batch_size": a.batch,
            "seq_len": a.seq,
            "lr": a.lr,
            "precision": "bf16 autocast" if bf16 else "fp32",
        },
        "rounds": a.rounds,
        "steps": a.steps,
        "tokens_per_call": tokens_per_call,
        "flops_per_token": flops | {"formula": FLOPS_FORMULA},
        "peak": peak | {"matmul_size": n, "reps": reps, "note": "measured matmul peak, not a datasheet peak"},
        "parity": parity,
        "reference": REFERENCE if ref else None,
        "variants": variants,
    }


def _print_table(r: dict) -> None:
    rec, fl, pk = r["recipe"], r["flops_per_token"], r["peak"]
    print(
        f"torch {r['torch']}, transformers {r['transformers']}, {r['threads']} thread(s) ({r['threads_from']}), "
        f"{r['cpu']}, native bf16: {r['native_bf16']}"
    )
    if r["note"]:
        print(r["note"])
    print(
        f"default pre-training recipe: preset {rec['preset']} ({rec['params'] / 1e6:.1f}M parameters, vocab "
        f"{rec['vocab_size']:,}), batch {rec['batch_size']} x {rec['seq_len']} tokens, AdamW lr {rec['lr']:g}, "
        f"{rec['precision']}"
    )
    if r["parity"]:
        p = r["parity"]
        print(
            f"same weights: max |logit diff| {p['max_logit_diff']:.1e} (logit std {p['logit_std']:.2f}), first two "
            f"losses fp32 differ by {p['fp32_loss_diff']:.1e}, recipe by {p['recipe_loss_diff']:.1e}"
        )
    print(
        f"model FLOPs/token = 6N + 12·L·H·Q·T = 6·{fl['matmul_params']:,} + {fl['attention']:,} = "
        f"{fl['total'] / 1e6:.1f} MFLOP (PaLM, Chowdhery et al. 2022, App. B; N = matmul weights incl. output layer)"
    )
    n = pk["matmul_size"]
    print(
        f"MFU vs measured matmul peak ({n}x{n}x{n}, median): bf16 {pk['bf16']['flops_per_s'] / 1e9:,.0f} GFLOP/s, "
        f"fp32 {pk['fp32']['flops_per_s'] / 1e9:,.0f} GFLOP/s"
    )
    print(
        f"tokens/s, median of {r['rounds']} interleaved rounds of {r['steps']} step(s) (best in brackets); ratio vs "
        f"{r['reference'] or '(no transformers)'} of the medians, and the median of each round's own ratio (paired)"
    )
    print(f"{'variant':<28}{'precision':<15}{'tokens/s':>10}{'(best)':>10}{'ratio':>8}{'paired':>8}{'MFU':>8}  of peak")
    for name, v in r["variants"].items():
        ratio, paired = (f"{v[k]:.2f}x" if v[k] else "-" for k in ("ratio", "ratio_paired"))
        best = f"({v['tokens_per_s_best']:,.0f})"
        print(
            f"{name:<28}{v['precision']:<15}{v['tokens_per_s']:>10,.0f}{best:>10}{ratio:>8}{paired:>8}"
            f"{100 * v['mfu']:>7.1f}%  {v['mfu_peak']}"
        )
    for name, what in (
        ("minillama recipe", "the default recipe"),
        ("minillama recipe, compiled", "the default recipe as a >= 5-minute `minillama pretrain` runs it (compiled)"),
    ):
        v = r["variants"].get(name)
        if v and v["ratio"]:
            print(
                f"{what}: {v['ratio']:.2f}x transformers' fp32 default ({v['ratio_paired']:.2f}x paired; "
                "issue 14's target: >= 1.9x)"
            )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    r = run(a)
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        _print_table(r)
    if r["parity"] and not r["parity"]["ok"]:
        print(f"error: minillama and transformers differ in fp32 beyond {PARITY_ATOL}: {r['parity']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
