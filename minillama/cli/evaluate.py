"""`minillama eval --checkpoint DIR [--data ...] [--max-tokens N] [--samples N]`: nats per token and bits per byte
of a checkpoint on held-out text (`minillama.train.heldout`, the function the trainer's final validation uses), and
with ``--samples`` the share of sampled `def`/`class` definitions that parse as Python (`minillama.train.samples`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from minillama.assets import DEFAULT_MODEL, resolve_checkpoint, shipped_checkpoint
from minillama.checkpoint import load_checkpoint
from minillama.data.prepare import heldout_split, load_tokenizer
from minillama.data.shards import ShardLoader
from minillama.train.heldout import compressor_bits_per_byte, heldout_text, score_split, token_byte_lengths
from minillama.train.samples import parse_rate
from minillama.train.state import TRAINER_STATE, read_trainer_state
from minillama.utils import progress, resolve_threads, set_threads


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minillama eval",
        description="Score a checkpoint on held-out text: nats per token and bits per byte (total NLL in nats / "
        "ln 2 / UTF-8 bytes of the scored target tokens; special tokens count 0 bytes).",
    )
    p.add_argument(
        "--checkpoint",
        default=str(shipped_checkpoint(DEFAULT_MODEL)),
        help=f"checkpoint folder, or a run folder holding checkpoint/ (default: the shipped {DEFAULT_MODEL} model)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="'stdlib', a documents.jsonl, a text file or folder (its held-out documents, split as `minillama "
        "pretrain` splits them), or a shard folder (its val split); default: the run's own data folder when the "
        "checkpoint names one, else 'stdlib'",
    )
    p.add_argument("--seed", type=int, default=None, help="the split's seed (default: the run's, else 0)")
    p.add_argument("--limit-mb", type=float, default=None, help="as `minillama pretrain --limit-mb` (same split)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="score an evenly strided sample of about this many tokens instead of the whole split",
    )
    p.add_argument("--seq-len", type=int, default=None, help="window length (default: the run's, else 256)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument(
        "--samples",
        type=int,
        default=0,
        help="also sample this many def/class definitions and report how many parse as Python (ast.parse)",
    )
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature for --samples (0.8)")
    p.add_argument(
        "--compressors", action="store_true", help="also give xz -9e and gzip -9 bits/byte on the same held-out text"
    )
    p.add_argument("--sample-tokens", type=int, default=256, help="token budget per sample (256)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (see `minillama pretrain --help`)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_tokens is not None and args.max_tokens < 1:
        parser.error("--max-tokens must be >= 1")
    if args.batch_size < 1 or (args.seq_len is not None and args.seq_len < 1):
        parser.error("--batch-size and --seq-len must be >= 1")
    if args.samples < 0 or args.temperature < 0 or args.sample_tokens < 1:
        parser.error("--samples and --temperature must be >= 0, --sample-tokens >= 1")
    threads = set_threads(args.threads)
    folder = resolve_checkpoint(args.checkpoint)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint in {args.checkpoint} (no config.json there or in its checkpoint/)")
    if not (folder / "tokenizer.model").is_file():
        raise FileNotFoundError(f"{folder} has no tokenizer.model; bits per byte need the checkpoint's tokenizer")
    state = read_trainer_state(folder) if (folder / TRAINER_STATE).is_file() else {}
    run_data = state.get("meta", {}).get("data_folder")
    data = args.data or (run_data if run_data and Path(run_data).is_dir() else "stdlib")
    cfg = state.get("train_config", {})
    seed = args.seed if args.seed is not None else cfg.get("seed", 0)
    model = load_checkpoint(folder)
    seq_len = min(args.seq_len or cfg.get("seq_len", 256), model.args.max_seq_len)
    tok = load_tokenizer(folder / "tokenizer.model")
    t0 = time.perf_counter()
    arrays, what = heldout_split(data, tok, seed=seed, limit_mb=args.limit_mb)
    loader = ShardLoader(arrays, seq_len, "val", shuffle=False)
    t1 = time.perf_counter()
    score = score_split(
        model,
        loader,
        token_byte_lengths(tok, model.args.vocab_size),
        max_tokens=args.max_tokens,
        rows=args.batch_size,
        progress=lambda it, total: progress(it, total=total, desc="eval", unit="batch"),
    )
    t2 = time.perf_counter()
    parsed = None
    if args.samples:
        budget = min(args.sample_tokens, model.args.max_seq_len - 2)
        parsed = parse_rate(model, tok, args.samples, args.temperature, budget, seed=seed)
    t3 = time.perf_counter()
    result = {
        "checkpoint": str(folder),
        "data": what,
        "seq_len": seq_len,
        **score.to_dict(),
        "sampled": score.sampled,
        "threads": threads,
        "seconds": {"tokenize": round(t1 - t0, 2), "score": round(t2 - t1, 2), "samples": round(t3 - t2, 2)},
    }
    if parsed is not None:
        result["parse_rate"] = parsed.to_dict()
    if args.compressors:
        result["compressors"] = compressor_bits_per_byte(heldout_text(arrays, tok))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"torch threads: {threads} ({resolve_threads(args.threads)[1]})")
    print(f"{folder}: {score.nats_per_token:.4f} nats/token, {score.bits_per_byte:.4f} bits/byte")
    print(f"scored {score.describe()} of {what}, windows of {seq_len} tokens")
    print(f"took {t1 - t0:.1f} s to read and tokenize, {t2 - t1:.1f} s to score")
    if args.compressors:
        print("the same text compressed whole: " + ", ".join(f"{k} {v:.3f}" for k, v in result["compressors"].items()))
    if parsed is not None:
        print(f"{parsed.describe()}; {t3 - t2:.1f} s")
        print(f"first sample: {parsed.texts[0][:200]!r}")
    return 0
