"""`python -m minillama.bench parallel`: step time and bytes sent for each parallel layout vs one device.

Every layout trains the same small Llama on the same global batch (B sequences of S tokens) for a few steps
(`minillama.parallel.fourd.Parallel4D`); ranks are processes on this machine (gloo). Reported per layout:
the median and best step time (the slowest rank of each step), its ratio to one device, and the bytes each rank
sends per step (ring-algorithm estimate from `minillama.parallel.comm.count_bytes`), split by collective.

On a 2-core machine the processes share the cores, so the step times show overheads (communication, bubbles,
synchronisation), not the speed-up a cluster would give; the byte counts are what they would be on one.
Layouts run in rounds (one launch each, in turn), so a neighbour's load hits them alike.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.distributed as dist

from minillama.bench._timing import summary
from minillama.parallel import fourd
from minillama.parallel.comm import count_bytes
from minillama.parallel.launch import launch
from minillama.parallel.mesh import Mesh
from minillama.utils import smoke

#: name -> (mesh sizes, options of Parallel4D)
LAYOUTS = {
    "1 device": ({}, {}),
    "DP=2 all-reduce": ({"dp": 2}, {"dp_mode": "ddp"}),
    "DP=2 FSDP": ({"dp": 2}, {"dp_mode": "fsdp"}),
    "TP=2": ({"tp": 2}, {}),
    "CP=2": ({"cp": 2}, {}),
    "PP=2 1F1B M=4": ({"pp": 2}, {"schedule": "1f1b", "n_microbatches": 4}),
    "TP=2 CP=2": ({"tp": 2, "cp": 2}, {}),
    "TP=2 CP=2 PP=2 DP=2": ({"tp": 2, "cp": 2, "pp": 2, "dp": 2}, {"n_microbatches": 2}),
}


def _run(sizes, options, args, tokens, steps, warmup):
    torch.manual_seed(0)
    run = fourd.Parallel4D(Mesh(**sizes), args, tokens.shape[1] - 1, dtype=torch.float32, **options)
    for _ in range(warmup):
        run.step(tokens)
    times = []
    for _ in range(steps):
        dist.barrier()
        t0 = time.perf_counter()
        run.step(tokens)
        times.append(time.perf_counter() - t0)
    dist.barrier()
    with count_bytes() as sent:
        loss = run.step(tokens)
    return times, dict(sent.bytes), sum(sent.calls.values()), loss


def measure(layouts: dict, args, tokens, rounds: int, steps: int, warmup: int) -> dict:
    """{name: {'times': [slowest rank per step], 'bytes': [per rank {op: bytes}], 'calls', 'loss', 'ranks'}}."""
    out = {name: {"times": []} for name in layouts}
    for _ in range(rounds):
        for name, (sizes, options) in layouts.items():
            ranks = math.prod(sizes.values()) if sizes else 1
            per_rank = launch(
                _run,
                ranks,
                {**{"tp": 1, "cp": 1, "pp": 1, "dp": 1}, **sizes},
                options,
                args,
                tokens,
                steps,
                warmup,
                timeout=300,
            )
            out[name]["times"] += [max(ts) for ts in zip(*(r[0] for r in per_rank))]
            out[name].update(
                bytes=[r[1] for r in per_rank], calls=[r[2] for r in per_rank], loss=per_rank[0][3], ranks=ranks
            )
    return out


def report(results: dict, batch: int, seq: int) -> str:
    ref = summary(results["1 device"]["times"])[0]
    lines = [
        f"global batch {batch} x {seq} tokens, float32; bytes = sent per rank per step (mean over ranks)",
        f"{'layout':22s} {'ranks':>5s} {'median ms':>10s} {'best ms':>8s} {'ratio':>6s} {'KiB/rank':>9s} "
        f"{'calls':>6s}  by collective (KiB/rank)",
    ]
    for name, r in results.items():
        med, best = summary(r["times"])
        ops = sorted({op for b in r["bytes"] for op in b})
        per_op = {op: statistics.mean(b.get(op, 0) for b in r["bytes"]) / 1024 for op in ops}
        total = sum(per_op.values())
        split = ", ".join(f"{op} {v:.0f}" for op, v in per_op.items() if v) or "-"
        lines.append(
            f"{name:22s} {r['ranks']:5d} {med * 1e3:10.1f} {best * 1e3:8.1f} {med / ref:6.2f} "
            f"{total:9.1f} {statistics.mean(r['calls']):6.0f}  {split}"
        )
    losses = {round(r["loss"], 5) for r in results.values()}
    lines.append(f"last-step loss on every layout: {sorted(losses)} (the same run, differently split)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minillama.bench parallel", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=smoke(3, 1))
    p.add_argument("--steps", type=int, default=smoke(5, 2), help="timed steps per round")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--dim", type=int, default=smoke(128, 64))
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=smoke(2048, 256))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=smoke(128, 32))
    p.add_argument("--only", default=None, help="comma-separated layout names to run (always with '1 device')")
    a = p.parse_args(argv)
    layouts = LAYOUTS
    if a.only:
        wanted = {"1 device", *(s.strip() for s in a.only.split(","))}
        unknown = wanted - set(LAYOUTS)
        if unknown:
            p.error(f"unknown layouts {sorted(unknown)}; choose from {list(LAYOUTS)}")
        layouts = {k: v for k, v in LAYOUTS.items() if k in wanted}
    args = fourd.small_args(dim=a.dim, n_layers=a.layers, vocab_size=a.vocab, max_seq_len=max(128, a.seq))
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), generator=torch.Generator().manual_seed(0))
    results = measure(layouts, args, tokens, a.rounds, a.steps, a.warmup)
    print(
        f"model: dim {args.dim}, {args.n_layers} layers, {args.n_heads}/{args.n_kv_heads} heads, vocab "
        f"{args.vocab_size}, {fourd.build_model(args).num_params():,} parameters"
    )
    print(report(results, a.batch, a.seq))
    return 0
