"""`python -m minillama parallel-check --tp 2 --cp 2 --pp 2 --dp 2`: any mesh, one training step, against one device.

Starts TP·CP·PP·DP processes on this machine (gloo), runs one AdamW step of a small Llama on the mesh
(`fourd.train_step`), runs the same step on one device, and prints the largest differences of the loss, the
gradients and the updated parameters (each rank's shard against the same slice of the single-device tensors).
Exit status 0 when they are within tolerance (float64: 1e-10, float32: 1e-5), 1 otherwise.

Under `torchrun` the same command joins the job instead of starting processes (see `launch.py`).
Also `minillama parallel-check ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from minillama.parallel import fourd
from minillama.parallel.mesh import describe_layout

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m minillama parallel-check", description=__doc__.splitlines()[0])
    for dim in ("tp", "cp", "pp", "dp"):
        p.add_argument(f"--{dim}", type=int, default=1, help=f"{dim.upper()} size (default 1)")
    p.add_argument("--dtype", choices=sorted(TOLERANCE), default="float64")
    p.add_argument("--dp-mode", choices=["fsdp", "ddp"], default="fsdp", help="DP as FSDP (the paper) or all-reduce")
    p.add_argument("--schedule", choices=["gpipe", "1f1b", "interleaved"], default="1f1b")
    p.add_argument("--microbatches", type=int, default=None, help="pipeline micro-batches (default: local batch)")
    p.add_argument("--virtual-stages", type=int, default=1, help="stages per pipeline rank (interleaved)")
    p.add_argument("--batch", type=int, default=None, help="global batch (default 2·DP, at least 4)")
    p.add_argument("--seq", type=int, default=None, help="sequence length (default 8·CP, at least 16)")
    p.add_argument("--layers", type=int, default=None, help="transformer layers (default max(4, PP·V))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=120, help="seconds a collective may wait")
    p.add_argument("--quiet", action="store_true", help="do not print the mesh")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    speak = os.environ.get("RANK", "0") == "0"  # under torchrun every rank runs this: rank 0 prints
    sizes = {"tp": a.tp, "cp": a.cp, "pp": a.pp, "dp": a.dp}
    if min(sizes.values()) < 1:
        print(f"error: mesh sizes must be >= 1, got {sizes}", file=sys.stderr)
        return 2
    if a.schedule == "1f1b" and a.virtual_stages > 1:
        a.schedule = "interleaved"
    batch = a.batch or max(4, 2 * a.dp)
    seq = a.seq or max(16, 8 * a.cp)
    args = fourd.small_args(n_layers=a.layers or max(4, a.pp * a.virtual_stages))
    if speak and not a.quiet:
        print(describe_layout(**sizes))
    t0 = time.perf_counter()
    try:
        worst = fourd.check(
            **sizes,
            args=args,
            batch=batch,
            seq_len=seq,
            dtype=getattr(torch, a.dtype),
            dp_mode=a.dp_mode,
            seed=a.seed,
            timeout=a.timeout,
            schedule=a.schedule,
            n_microbatches=a.microbatches,
            virtual_stages=a.virtual_stages,
        )
    except ValueError as e:  # bad sizes for this model: say what to change
        print(f"error: {e}", file=sys.stderr)
        return 2
    tol = TOLERANCE[a.dtype]
    ok = all(worst[k] <= tol for k in ("loss", "grads", "params"))
    if not speak:
        return 0 if ok else 1
    print(
        f"{a.dtype}, DP as {a.dp_mode}"
        + (f", {a.schedule} pipeline" if a.pp > 1 else "")
        + f", batch {batch} x {seq} tokens, {args.n_layers} layers, {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"max |difference| vs one device over {worst['n_tensors']} tensors: loss {worst['loss']:.2e}, "
        f"gradients {worst['grads']:.2e}, parameters after AdamW {worst['params']:.2e} "
        f"(tolerance {tol:.0e}): {'OK' if ok else 'MISMATCH'}"
    )
    return 0 if ok else 1
