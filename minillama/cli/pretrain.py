"""`minillama pretrain --preset small --data stdlib --minutes 15 --out runs/small [--resume]`: pre-train a small
Llama on the CPU (paper §3.4) with `minillama.train.Trainer`, planning the schedule from the measured speed.

The same run on a GPU (`--device cuda`), or scaled out with torch's own engine (paper §3.3.2, data parallelism):
`torchrun --nproc_per_node=N -m minillama.pretrain --dist ddp|fsdp ...` (`minillama.cli.distributed`)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from minillama.assets import CHECKPOINT
from minillama.checkpoint import load_checkpoint
from minillama.cli.distributed import DEVICES, Cluster, pick_device, rows_error
from minillama.data.prepare import load_tokenizer, prepare_data
from minillama.data.shards import ShardLoader, read_meta
from minillama.model import ModelArgs, Transformer
from minillama.train.heldout import token_byte_lengths
from minillama.train.recipe import PRETRAIN_DEFAULTS, TrainConfig, cpu_has_native_bf16, default_ramp, steps_for_tokens
from minillama.train.state import TRAINER_STATE, read_trainer_state
from minillama.train.trainer import (
    LOSS_PLOT,
    Trainer,
    fixed_batches,
    measure_tokens_per_s,
    replan_at_warmup_end,
    sample_text,
)
from minillama.utils import resolve_threads, set_threads


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minillama pretrain",
        description="Pre-train a small Llama on the CPU "
        "(paper §3.4). With no flags: the `small` preset on the standard library, 15 minutes.",
    )
    p.add_argument(
        "--preset", default=PRETRAIN_DEFAULTS["preset"], help="model preset (tiny, small, base); default %(default)s"
    )
    p.add_argument(
        "--data",
        default="stdlib",
        help="'stdlib' (built-in corpus), a documents.jsonl from `minillama "
        "data build`, a text file or folder, or a shard folder made by minillama.data.shards "
        "(has meta.json)",
    )
    p.add_argument("--minutes", type=float, default=15.0, help="training time; sets the schedule length")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --minutes; reproducible)")
    p.add_argument("--out", default=None, help="run folder (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer file; default: the shipped course tokenizer for 'stdlib', else a new 8K BPE trained on --data",
    )
    p.add_argument("--limit-mb", type=float, default=None, help="use at most this many MB of the corpus")
    p.add_argument("--seq-len", type=int, default=PRETRAIN_DEFAULTS["seq_len"])
    p.add_argument("--batch-size", type=int, default=PRETRAIN_DEFAULTS["batch_size"], help="rows per step")
    p.add_argument(
        "--micro-batch-size",
        type=int,
        default=None,
        help="rows per forward over all processes (gradient accumulation)",
    )
    p.add_argument(
        "--ramp",
        action=argparse.BooleanOptionalAction,
        default=PRETRAIN_DEFAULTS["batch_ramp"],
        help="the paper's batch ramp (a quarter of --batch-size, then half, then all; §3.4.1); off by default: "
        "in a sweep it made short CPU runs no better at lr 2e-3 and much worse at 3e-3",
    )
    p.add_argument("--lr", type=float, default=PRETRAIN_DEFAULTS["lr"], help="peak learning rate (%(default)s)")
    p.add_argument("--min-lr", type=float, default=None, help="cosine floor (default lr/10)")
    p.add_argument("--warmup", type=int, default=None, help="warmup steps (default 5%% of the steps, <= 200)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="bf16 autocast or plain fp32; auto = bf16 on a GPU, and where the CPU computes bf16 natively (~2x faster)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the training steps through torch.compile (1.37x the tokens/s of the small preset on 2 CPU cores, "
        "after about a minute of compiling). Default: on for a single-process CPU run of --minutes >= 5 where a C++ "
        "compiler is found, else off",
    )
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where to train; auto = cuda if available, else mps, else cpu (checkpoints are always saved on the CPU)",
    )
    p.add_argument(
        "--dist",
        choices=("ddp", "fsdp"),
        default="ddp",
        help="under torchrun: DDP (a whole model per process) or FSDP2 (weights and optimizer state sharded)",
    )
    p.add_argument("--dim", type=int, default=None, help="override the preset's dim")
    p.add_argument("--n-layers", type=int, default=None, help="override the preset's n_layers")
    p.add_argument("--n-heads", type=int, default=None, help="override the preset's n_heads")
    p.add_argument("--n-kv-heads", type=int, default=None, help="override the preset's n_kv_heads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--ckpt-every", type=int, default=None)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: MINILLAMA_THREADS, else OMP_NUM_THREADS, else all physical cores)",
    )
    p.add_argument("--sample-every", type=int, default=0, help="print a greedy sample every N steps")
    p.add_argument("--prompt", default="def", help="prompt for samples (no trailing space: see chapter 01)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    cpu_presets = ("tiny", "small", "base")
    if args.preset not in cpu_presets:
        parser.error(
            f"--preset {args.preset!r}: pre-training on a CPU takes one of {', '.join(cpu_presets)} "
            "(the herd's presets are for chapter 00's meta-device counts, not for training here)"
        )
    if args.minutes <= 0 or (args.steps is not None and args.steps < 1):
        parser.error("--minutes must be > 0 and --steps >= 1")
    device, why = pick_device(args.device)
    why = why or (None if args.resume else _data_error(args.data))
    if why:
        return _error(why)
    try:
        cluster = Cluster.start(device, args.dist)
    except ValueError as e:
        return _error(str(e))
    try:
        with cluster.quiet_unless_main():  # rank 0 prints; the other processes exit quietly
            code = _main(args, cluster)
    except BaseException:
        cluster.close(ok=False)
        raise
    cluster.close(ok=True)
    return code


class _NoData(Exception):
    """--data cannot be prepared (no text in it): one line, in every process (rank 0 says it)."""


def _error(message: str) -> int:
    print(f"minillama pretrain: {message}", file=sys.stderr)
    return 2


def _data_error(data: str) -> str | None:
    """Why `--data` can hold no text (an empty file), or None; the other cases are reported by `prepare_data`."""
    path = Path(data)
    if data != "stdlib" and path.is_file() and path.stat().st_size == 0:
        return f"--data {data}: the file is empty; pass a text file, a folder of .txt/.md/.py files or 'stdlib'"
    return None


def _ramp_rows(args) -> list[int]:
    """The batch rows of every stage of the ramp a new run will use (the thresholds do not matter here)."""
    if not args.ramp:
        return [args.batch_size]
    return [rows for _, rows in default_ramp(args.batch_size, args.seq_len, 10**15)]


def _main(args, cluster: Cluster) -> int:
    threads = set_threads(args.threads)
    out = Path(args.out or f"runs/{args.preset}")
    ckpt = out / CHECKPOINT
    if args.resume and not (ckpt / TRAINER_STATE).is_file():
        print(
            f"minillama pretrain: nothing to resume in {out} (no {ckpt / TRAINER_STATE}); run without --resume",
            file=sys.stderr,
        )
        return 2
    if args.resume:
        state = read_trainer_state(ckpt)
        cfg = TrainConfig.from_dict(state["train_config"])
        max_steps = cfg.max_steps
        if state["step"] >= max_steps:
            print(
                f"minillama pretrain: the run in {out} already finished ({state['step']}/{max_steps} steps); "
                "--resume only completes an interrupted run: for more training start a new one with another --out"
            )
            return 0
    if not args.resume and (ckpt / TRAINER_STATE).is_file():
        print(
            f"minillama pretrain: {out} already holds a run; pass --resume to continue it or --out for a new one",
            file=sys.stderr,
        )
        return 2
    if args.resume:
        why = rows_error([rows for _, rows in cfg.ramp], cfg.micro_batch_size, cluster.world_size)
    else:
        why = rows_error(_ramp_rows(args), args.micro_batch_size, cluster.world_size)
    if why:
        return _error(why)
    print(f"torch threads: {threads} ({resolve_threads(args.threads)[1]}; set with --threads or MINILLAMA_THREADS)")
    args.compile, because = compile_by_default(args, cluster)
    print(f"torch.compile: {'on' if args.compile else 'off'} ({because})")
    try:
        return _run(args, out, threads, cluster)
    except _NoData as e:
        return _error(str(e))
    except KeyboardInterrupt:  # Ctrl-C: the trainer has saved a checkpoint (if it got that far); say how to go on
        if (ckpt / TRAINER_STATE).is_file():
            print(
                f"\ninterrupted; the checkpoint is in {ckpt}. Continue with: "
                f"minillama pretrain --out {shlex.quote(str(out))} --resume",
                file=sys.stderr,
            )
        else:
            print("\ninterrupted before the first checkpoint; nothing to resume", file=sys.stderr)
        return 130


def _run(args, out: Path, threads: int, cluster: Cluster) -> int:
    ckpt = out / CHECKPOINT
    trainer, meta, tok = resume_run(args, out, cluster) if args.resume else new_run(args, out, threads, cluster)
    data_tokenizer = Path(trainer.meta["data_folder"]) / "tokenizer.model"
    if data_tokenizer.is_file() and not trainer.extra_files:
        trainer.extra_files["tokenizer.model"] = data_tokenizer.read_bytes()
    clock = {}
    if not args.resume and args.steps is None:
        trainer.callbacks.append(replan_at_warmup_end(args.minutes * 60 * 0.93, clock))
    if args.sample_every and tok is not None:

        def show(tr, record):  # every process samples (FSDP gathers weights), rank 0 prints
            if tr.step % args.sample_every == 0:
                print(f"\n[step {tr.step}] {sample_text(tr.model, tok, args.prompt, 48)!r}", flush=True)

        trainer.callbacks.append(show)
    sample_tokens = sum(batch[1].numel() for batch in trainer.val_batches)
    print(
        f"validation while training (val, bpb in the progress bar): a sample, the first {sample_tokens:,} held-out "
        f"tokens; at the end the whole held-out split ({trainer.heldout.n_windows * trainer.heldout.seq_len:,} "
        "tokens) is scored"
    )
    clock["start"] = time.perf_counter()
    trainer.fit()
    cfg = trainer.cfg
    where = f"{threads} thread(s)" if cluster.device.type == "cpu" and not cluster.distributed else cluster.describe()
    print(
        f"done: step {trainer.step}/{cfg.max_steps}, {trainer.tokens_seen:,} tokens in {trainer.wall_s / 60:.1f} "
        f"min of training ({trainer.tokens_per_s:,.0f} tokens/s) on {where}"
    )
    last = trainer.val_history[-1] if trainer.val_history else {}
    held = trainer.heldout_score
    if held is not None:
        print(
            f"held-out: {held.nats_per_token:.3f} nats/token, {_bpb(held.bits_per_byte)} over "
            f"{held.describe()}; validation sample {last.get('val_loss', float('nan')):.3f} nats/token; "
            f"unigram entropy {meta.get('unigram_entropy', float('nan')):.3f} nats/token"
        )
    else:
        print(
            f"validation sample: {last.get('val_loss', float('nan')):.3f} nats/token, "
            f"{_bpb(last.get('val_bpb', math.nan))} vs unigram entropy "
            f"{meta.get('unigram_entropy', float('nan')):.3f} nats/token"
        )
    if tok is not None:
        print(f"sample after training: {sample_text(trainer.model, tok, args.prompt, 64)!r}")
    print(f"checkpoint: {ckpt}   loss plot: {out / LOSS_PLOT}")
    print(f"sample from it: minillama generate --checkpoint {ckpt} --prompt {args.prompt!r}")
    return 0


def _loaders(data_folder: Path, seq_len: int, seed: int) -> tuple[ShardLoader, list, ShardLoader]:
    """The training loader, fixed validation batches (a cheap sample for every `eval_every` steps: the first
    16 x 4 windows of the held-out split) and a loader over the whole held-out split (scored at the end)."""
    loader = ShardLoader(data_folder, seq_len, "train", seed=seed)
    val_batches = fixed_batches(ShardLoader(data_folder, seq_len, "val", shuffle=False), rows=16, max_batches=4)
    return loader, val_batches, ShardLoader(data_folder, seq_len, "val", shuffle=False)


def _bpb(value: float) -> str:
    return "bits/byte unknown (no tokenizer)" if math.isnan(value) else f"{value:.3f} bits/byte"


def _token_bytes(tok):
    """UTF-8 bytes per token id (bits per byte), or None without a byte-level tokenizer."""
    return token_byte_lengths(tok) if tok is not None and hasattr(tok, "decode_bytes") else None


def resume_run(args, out: Path, cluster: Cluster | None = None) -> tuple[Trainer, dict, object]:
    """The interrupted run in `out`, its data's meta and its tokenizer (None if it has none), on `cluster`'s
    device and processes (any number: the checkpoint holds whole tensors)."""
    cluster = cluster or Cluster(pick_device("cpu")[0])
    ckpt = out / CHECKPOINT
    state = read_trainer_state(ckpt)
    data_folder = Path(state["meta"]["data_folder"])
    tok_file = ckpt / "tokenizer.model"
    tok = load_tokenizer(tok_file) if tok_file.is_file() else None
    cfg = TrainConfig.from_dict(state["train_config"])
    loader, val_batches, heldout = _loaders(data_folder, cfg.seq_len, cfg.seed)
    model, module = _compiled(args, *cluster.wrap(load_checkpoint(ckpt).to(cluster.device)))
    trainer = Trainer(
        model,
        loader,
        cfg,
        val_batches=val_batches,
        out_dir=out,
        heldout=heldout,
        token_bytes=_token_bytes(tok),
        module=module,
        rank=cluster.rank,
        world_size=cluster.world_size,
    ).load_state(ckpt)
    print(f"resuming {out} at step {trainer.step}/{cfg.max_steps} ({trainer.tokens_seen:,} tokens seen)")
    print(f"device: {cluster.describe()}")
    return trainer, read_meta(data_folder), tok


def _prepare(args, out: Path, cluster: Cluster) -> tuple[Path, dict, object]:
    """`prepare_data` for --data: rank 0 prepares first (tokenizer, shards in out/data), the other processes then
    reuse what it wrote. Raises `_NoData` in every process when it fails."""
    vocab_size = ModelArgs.from_preset(args.preset).vocab_size
    prepared, why = None, None
    if cluster.is_main:
        try:
            prepared = prepare_data(args.data, out, args.tokenizer, vocab_size, args.limit_mb, args.seed)
        except (ValueError, FileNotFoundError) as e:
            why = str(e)
    why = cluster.broadcast(why)
    if why is not None:
        raise _NoData(why)
    if prepared is None:
        prepared = prepare_data(args.data, out, args.tokenizer, vocab_size, args.limit_mb, args.seed)
    return prepared


def new_run(args, out: Path, threads: int, cluster: Cluster | None = None) -> tuple[Trainer, dict, object]:
    """A new run: data prepared, model built on `cluster`'s device, schedule planned (from --steps, or from this
    machine's measured speed and --minutes), the model wrapped for several processes."""
    cluster = cluster or Cluster(pick_device("cpu")[0])
    data_folder, meta, tok = _prepare(args, out, cluster)
    seq_len = args.seq_len
    loader, val_batches, heldout = _loaders(data_folder, seq_len, args.seed)
    overrides = {
        k: v
        for k, v in (
            ("dim", args.dim),
            ("n_layers", args.n_layers),
            ("n_heads", args.n_heads),
            ("n_kv_heads", args.n_kv_heads),
        )
        if v is not None
    }
    margs = ModelArgs.from_preset(
        args.preset,
        vocab_size=meta["vocab_size"],
        **overrides,
        max_seq_len=max(ModelArgs.from_preset(args.preset).max_seq_len, seq_len),
    )
    model = Transformer(margs).init_weights(std=0.02, seed=args.seed).to(cluster.device)
    cfg = TrainConfig(
        max_steps=10,
        lr=args.lr,
        min_lr=args.min_lr if args.min_lr is not None else args.lr / 10,
        warmup_steps=0,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        seq_len=seq_len,
        bf16=args.precision == "bf16"
        or (args.precision == "auto" and (cluster.device.type != "cpu" or cpu_has_native_bf16())),
        seed=args.seed,
    )
    steps, ramp = cluster.broadcast(_plan(args, model, cfg, loader, threads))  # rank 0's plan for every process
    warmup = args.warmup if args.warmup is not None else min(200, max(5, steps // 20))
    cfg = dataclasses.replace(
        cfg,
        max_steps=steps,
        warmup_steps=min(warmup, steps),
        batch_ramp=ramp or (),
        eval_every=args.eval_every if args.eval_every is not None else max(10, steps // 15),
        ckpt_every=args.ckpt_every if args.ckpt_every is not None else max(10, steps // 10),
        time_limit_s=args.minutes * 60 * 1.15 if args.steps is None else None,
    )
    tok_file = Path(data_folder) / "tokenizer.model"
    extra = {"tokenizer.model": tok_file.read_bytes()} if tok_file.is_file() else {}
    n, n_body = model.num_params(), model.num_params(exclude_embeddings=True)
    before = sample_text(model, tok, args.prompt, 32) if tok is not None and cluster.is_main else None
    model, module = _compiled(args, *cluster.wrap(model))  # after the sample: FSDP would need every process
    trainer = Trainer(
        model,
        loader,
        cfg,
        val_batches=val_batches,
        heldout=heldout,
        token_bytes=_token_bytes(tok),
        out_dir=out,
        extra_files=extra,
        meta={
            "data_folder": str(Path(data_folder).resolve()),
            "preset": args.preset,
            "data": args.data,
            "unigram_entropy": meta.get("unigram_entropy"),
        },
        module=module,
        rank=cluster.rank,
        world_size=cluster.world_size,
    )
    print(f"device: {cluster.describe()}")
    print(f"precision: {'bf16 autocast' if cfg.bf16 else 'fp32'}; batch ramp (tokens seen, rows): {cfg.ramp}")
    print(
        f"model {args.preset}{' ' + str(overrides) if overrides else ''}: {n:,} parameters "
        f"({n_body:,} without the embedding); "
        f"train {meta['splits']['train']['tokens']:,} tokens, val "
        f"{meta['splits']['val']['tokens']:,}; unigram entropy {meta.get('unigram_entropy', float('nan')):.3f} "
        f"nats/token"
    )
    if before is not None:
        print(f"sample before training: {before!r}")
    return trainer, meta, tok


#: A `--minutes` run at least this long compiles by default: compiling costs about a minute on 2 cores.
COMPILE_MIN_MINUTES = 5.0


def compile_by_default(args, cluster: Cluster) -> tuple[bool, str]:
    """(whether to compile, why): ``--compile``/``--no-compile`` as given, else on for one CPU process planned from
    ``--minutes >= COMPILE_MIN_MINUTES`` with a C++ compiler on PATH (torch.compile's CPU backend needs one)."""
    if args.compile is not None:
        return args.compile, "--compile" if args.compile else "--no-compile"
    if cluster.device.type != "cpu" or cluster.distributed:
        return False, "auto: only single-process CPU runs compile by default"
    if args.steps is not None or args.minutes < COMPILE_MIN_MINUTES:
        return False, f"auto: runs shorter than {COMPILE_MIN_MINUTES:g} minutes do not repay the compile"
    compiler = next((c for c in (os.environ.get("CXX"), "c++", "g++", "clang++") if c and shutil.which(c)), None)
    if compiler is None:
        return False, "auto: no C++ compiler on PATH"
    return True, f"auto: a {args.minutes:g}-minute CPU run and {compiler}"


def _compiled(args, model, module):
    """(model, module) with the module that runs the training steps compiled when `args.compile` says so: the
    trainer's validation, samples and checkpoints keep using the plain `model` (the same parameters)."""
    if not args.compile:
        return model, module
    return model, torch.compile(module if module is not None else model)


def _plan(args, model: Transformer, cfg: TrainConfig, loader, threads: int) -> tuple[int, tuple]:
    """(optimizer steps, batch ramp): --steps as given, or as many as --minutes allow at the measured speed."""
    ramp = None if args.ramp else ()
    if args.steps is not None:
        total_tokens = args.steps * args.batch_size * cfg.seq_len
        return args.steps, default_ramp(args.batch_size, cfg.seq_len, total_tokens) if ramp is None else ramp
    tok_s = measure_tokens_per_s(model, cfg, loader)
    total_tokens = int(0.93 * args.minutes * 60 * tok_s)
    if ramp is None:
        ramp = default_ramp(args.batch_size, cfg.seq_len, total_tokens)
    steps = max(1, steps_for_tokens(total_tokens, ramp or ((0, args.batch_size),), cfg.seq_len))
    print(
        f"measured {tok_s:,.0f} tokens/s on {threads} thread(s): {args.minutes:g} min ≈ "
        f"{total_tokens:,} tokens ≈ {steps} steps"
    )
    return steps, ramp
