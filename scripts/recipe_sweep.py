"""The sweep behind the default pre-training recipe (`minillama.train.recipe.PRETRAIN_DEFAULTS`; README "How the
default recipe was chosen"), as a command that re-runs it.

Two modes:

* ``quality``: train every config of a round at a fixed token budget (the same `Trainer` and `TrainConfig` that
  `minillama pretrain` runs: AdamW, warmup of 5% of the steps capped at 200, cosine to ``lr * min_frac``, gradient
  clipping, bf16 autocast), then score the whole held-out split (`Trainer.heldout_score`: bits/byte and
  nats/token). One JSON line per config is printed and appended to ``--out``; a table sorted by bits/byte ends
  the run. The data is the default diet, built once by `prepare_data("stdlib", ...)` (or any shard folder via
  ``--data``), so the numbers are those of `minillama pretrain` on the same shards.
* ``speed``: CPU training tokens/s of the model shapes and batch layouts the sweep compared (`Trainer.train_step`
  on a fixed in-memory batch, so no data loading), in interleaved rounds: the median tokens/s of each and the
  median of each round's own ratio against ``base`` (paired: steadier while neighbours load the machine).

The two rounds (``--round``) are the lists that were run; their results, measured on one H200 GPU with
``--device cuda`` (bf16 autocast, seed 0 unless a name says otherwise), are in ``scripts/recipe_sweep_results/``.
Round 1 varied the learning rate, shapes and batch layouts around lr 3e-3 *with* the paper's batch ramp (paper
§3.4.1); round 2, after the ramp lost, went on without it (its names start with ``nr_``).

Usage::

    python scripts/recipe_sweep.py quality --round 2 --device cuda --workers 6   # round 2, ~2 minutes on an H200
    python scripts/recipe_sweep.py quality --round 2 --only nr_lr2e-3,nr_lr2e-3_h4kv1 --device cpu
    python scripts/recipe_sweep.py quality --round 1 --list                      # the configs, nothing is run
    python scripts/recipe_sweep.py quality --only nr_lr2e-3 --set tokens=100000 dim=64   # a smaller smoke run
    python scripts/recipe_sweep.py speed                                          # CPU tokens/s, 5 rounds
    python scripts/recipe_sweep.py speed --rounds 9 --threads 2 --only base,h4kv1

Run it from the repository root with the package installed (``pip install -e .``) or ``PYTHONPATH=.``. A config of
3.6M tokens took about 35 s on an H200 (six at once) and takes 10-12 minutes on 2 CPU cores, which is why the
sweep ran on a GPU; ``--workers N`` runs N configs at once (separate processes; on a GPU they share it).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from minillama.bench._common import FixedBatch
from minillama.bench._timing import interleaved
from minillama.cli.distributed import pick_device
from minillama.data.prepare import prepare_data
from minillama.data.shards import ShardLoader, read_meta
from minillama.model import ModelArgs, Transformer
from minillama.train.heldout import token_byte_lengths
from minillama.train.recipe import TrainConfig, cpu_has_native_bf16, default_ramp, steps_for_tokens
from minillama.train.trainer import Trainer
from minillama.utils import resolve_threads, set_threads

M = 1_000_000

#: Every field of a config: the model shape (of the `small` preset's family: vocab from the data, tied embeddings),
#: the peak LR and the cosine floor as a fraction of it, rows per step, tokens per row, the token budget, the
#: paper's batch ramp (`default_ramp`: a quarter of the rows, half after 2% of the tokens, all after 10%), weight
#: decay and the seed (model initialisation and data order; the shards themselves are always built with seed 0).
BASE_ROUND_1 = dict(
    dim=256,
    n_layers=6,
    n_heads=8,
    n_kv_heads=2,
    lr=3e-3,
    min_frac=0.1,
    bs=16,
    seq=256,
    tokens=3.6 * M,
    ramp=True,
    wd=0.1,
    seed=0,  # round 1's records carry no seed: it ran with this default
)
BASE_ROUND_2 = {**BASE_ROUND_1, "ramp": False}

#: Round 1: around lr 3e-3 with the batch ramp (names are the change from `BASE_ROUND_1`).
ROUND_1 = {
    "lr5e-3": dict(lr=5e-3),
    "lr3e-3": dict(),
    "lr2e-3": dict(lr=2e-3),
    "lr8e-3": dict(lr=8e-3),
    "lr5e-3_min0.01": dict(lr=5e-3, min_frac=0.01),
    "lr3e-3_min0.01": dict(min_frac=0.01),
    "bs32_lr5e-3": dict(bs=32, lr=5e-3),
    "h4kv1": dict(n_heads=4, n_kv_heads=1),
    "h4kv2": dict(n_heads=4, n_kv_heads=2),
    "d192L8h6": dict(dim=192, n_layers=8, n_heads=6),
    "d256L4": dict(n_layers=4),
    "bs8": dict(bs=8),
    "bs8_lr2e-3": dict(bs=8, lr=2e-3),
    "d320L6h5kv1": dict(dim=320, n_heads=5, n_kv_heads=1),
    "seq128bs32": dict(seq=128, bs=32),
    "seq512bs8": dict(seq=512, bs=8),
    "tok4.8M": dict(tokens=4.8 * M),
    "d384L4h6": dict(dim=384, n_layers=4, n_heads=6),
    "wd0": dict(wd=0.0),
    "d256L8": dict(n_layers=8),
    "lr2e-3_min0.1_old": dict(lr=2e-3),  # lr2e-3 again: the GPU run repeated to the last digit
    "tok6M": dict(tokens=6.0 * M),
    "noramp": dict(ramp=False),
    "tok2.4M": dict(tokens=2.4 * M),
}

#: Round 2: no ramp (names are the change from `BASE_ROUND_2`; ``ramp_`` puts the ramp back).
ROUND_2 = {
    "nr_lr1e-3": dict(lr=1e-3),
    "nr_lr1.5e-3": dict(lr=1.5e-3),
    "nr_lr2e-3": dict(lr=2e-3),
    "nr_lr2e-3_seed1": dict(lr=2e-3, seed=1),
    "nr_lr3e-3_seed1": dict(lr=3e-3, seed=1),
    "nr_lr2.5e-3": dict(lr=2.5e-3),
    "nr_lr2e-3_min0.01": dict(lr=2e-3, min_frac=0.01),
    "nr_lr2e-3_h4kv1": dict(lr=2e-3, n_heads=4, n_kv_heads=1),
    "nr_lr2e-3_d192L8h6": dict(lr=2e-3, dim=192, n_layers=8, n_heads=6),
    "nr_lr1.5e-3_d192L8h6": dict(lr=1.5e-3, dim=192, n_layers=8, n_heads=6),
    "nr_lr2e-3_seq128bs32": dict(lr=2e-3, seq=128, bs=32),
    "nr_lr2e-3_seq128bs32_h4kv1": dict(lr=2e-3, seq=128, bs=32, n_heads=4, n_kv_heads=1),
    "nr_lr2e-3_d192L8h6_seq128bs32": dict(lr=2e-3, dim=192, n_layers=8, n_heads=6, seq=128, bs=32),
    "nr_lr2e-3_tok3M": dict(lr=2e-3, tokens=3.0 * M),
    "nr_lr2e-3_tok4.2M": dict(lr=2e-3, tokens=4.2 * M),
    "nr_lr2e-3_bs8": dict(lr=2e-3, bs=8),
    "ramp_lr2e-3_seed1": dict(lr=2e-3, seed=1, ramp=True),
    "nr_lr2e-3_tok2.4M": dict(lr=2e-3, tokens=2.4 * M),
}

ROUNDS = {1: (BASE_ROUND_1, ROUND_1), 2: (BASE_ROUND_2, ROUND_2)}

#: `speed`: shapes and batch layouts against ``base`` (round 2's base: 8 heads of 32, 2 KV heads, 16 x 256).
#: ``h4kv1`` is the `small` preset of `minillama pretrain` (4 heads of 64, 1 KV head).
SPEED = {
    "base": dict(),
    "h4kv1": dict(n_heads=4, n_kv_heads=1),
    "bs8": dict(bs=8),
    "seq128bs32": dict(seq=128, bs=32),
    "seq128bs32_h4kv1": dict(seq=128, bs=32, n_heads=4, n_kv_heads=1),
    "d192L8h6": dict(dim=192, n_layers=8, n_heads=6),
}

RESULTS = Path(__file__).resolve().parent / "recipe_sweep_results"


def configs(round_: int) -> dict[str, dict]:
    """Every config of a round, complete: ``{name: {**base, **overrides}}``."""
    base, overrides = ROUNDS[round_]
    return {name: {**base, **over} for name, over in overrides.items()}


def model_args(c: dict, vocab_size: int) -> ModelArgs:
    """The `small` preset's family with the config's shape (the sweep's ``max_seq_len``: at least 512)."""
    return ModelArgs.from_preset(
        "small",
        dim=c["dim"],
        n_layers=c["n_layers"],
        n_heads=c["n_heads"],
        n_kv_heads=c["n_kv_heads"],
        vocab_size=vocab_size,
        max_seq_len=max(512, c["seq"]),
    )


def train_config(c: dict, bf16: bool) -> TrainConfig:
    """The `TrainConfig` of a config: `minillama pretrain`'s schedule (warmup 5% of the steps, 5..200) for its
    token budget, validation only at the end, no checkpoints."""
    total = int(c["tokens"])
    ramp = default_ramp(c["bs"], c["seq"], total) if c["ramp"] else ((0, c["bs"]),)
    steps = steps_for_tokens(total, ramp, c["seq"])
    return TrainConfig(
        max_steps=steps,
        lr=c["lr"],
        min_lr=c["lr"] * c["min_frac"],
        warmup_steps=min(200, max(5, steps // 20)),
        weight_decay=c["wd"],
        batch_size=c["bs"],
        batch_ramp=ramp,
        seq_len=c["seq"],
        bf16=bf16,
        seed=c["seed"],
        eval_every=0,
        ckpt_every=0,
    )


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for ``precision="auto"``: on a GPU, and on a CPU with native bf16 (as `minillama pretrain`)."""
    if precision != "auto":
        return precision == "bf16"
    return device.type != "cpu" or cpu_has_native_bf16()


def run_config(
    name: str,
    c: dict,
    data: str | Path,
    token_bytes: torch.Tensor | None = None,
    device: str = "cpu",
    precision: str = "auto",
    threads: int | None = None,
) -> dict:
    """Train config `c` on the shard folder `data` and score the whole held-out split. `token_bytes` (UTF-8 bytes
    per token id, `token_byte_lengths`) gives bits/byte; without it ``bpb`` is None. Returns the JSON record: the
    name, the config, parameters, steps, tokens seen, ``bpb``, ``nats`` (per token), seconds, the training loss
    every ~5% of the run (``curve``: ``[tokens, loss]`` pairs), device and precision."""
    if threads is not None:
        set_threads(threads)
    dev = torch.device(device)
    bf16 = use_bf16(precision, dev)
    cfg = train_config(c, bf16)
    torch.manual_seed(c["seed"])
    model = Transformer(model_args(c, read_meta(data)["vocab_size"])).init_weights(std=0.02, seed=c["seed"]).to(dev)
    loader = ShardLoader(data, c["seq"], "train", seed=c["seed"])
    heldout = ShardLoader(data, c["seq"], "val", shuffle=False)
    trainer = Trainer(model, loader, cfg, heldout=heldout, token_bytes=token_bytes)
    t0 = time.time()
    trainer.fit(progress=False)
    score = trainer.heldout_score
    curve = [[r["tokens"], round(r["loss"], 4)] for r in trainer.history[:: max(1, cfg.max_steps // 20)]]
    bpb = score.bits_per_byte
    return dict(
        name=name,
        **c,
        params=model.num_params(),
        steps=cfg.max_steps,
        tokens_seen=trainer.tokens_seen,
        bpb=None if math.isnan(bpb) else bpb,
        nats=score.nats_per_token,
        secs=time.time() - t0,
        curve=curve,
        device=dev.type,
        precision="bf16 autocast" if bf16 else "fp32",
    )


def _run_safe(name: str, c: dict, *args) -> dict:
    """`run_config`, or ``{"name": ..., "error": ...}``: one failing config does not stop the sweep."""
    try:
        return run_config(name, c, *args)
    except Exception as e:  # reported in the record; the other configs go on
        return dict(name=name, **c, error=repr(e))


def _parse_set(items: list[str]) -> dict:
    """``["tokens=1e5", "ramp=False"]`` -> ``{"tokens": 100000.0, "ramp": False}``, keys checked."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in BASE_ROUND_1:
            raise SystemExit(f"--set {item!r}: want KEY=VALUE with KEY one of {', '.join(BASE_ROUND_1)}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise SystemExit(f"--set {item!r}: {value!r} is not a number or True/False") from None
    return out


def _select(table: dict, only: str | None) -> dict:
    if not only:
        return table
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(table)}")
    return {n: table[n] for n in names}


def quality(a: argparse.Namespace) -> int:
    table = {name: {**c, **_parse_set(a.set)} for name, c in _select(configs(a.round), a.only).items()}
    if a.list:
        for name, c in table.items():
            print(json.dumps({"name": name, **c}))
        return 0
    device, why = pick_device(a.device)
    if why:
        print(f"recipe_sweep: {why}", file=sys.stderr)
        return 2
    vocab = ModelArgs.from_preset("small").vocab_size
    folder, meta, tok = prepare_data(a.data, Path(a.work), None, vocab, None, 0)
    token_bytes = token_byte_lengths(tok, meta["vocab_size"]) if tok is not None else None
    workers = max(1, min(a.workers, len(table)))
    threads = a.threads or max(1, resolve_threads()[0] // workers)
    out = Path(a.out or Path(a.work) / f"round{a.round}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"round {a.round}: {len(table)} config(s) on {device} ({workers} worker(s), {threads} thread(s) each), "
        f"data {folder} ({meta['splits']['train']['tokens']:,} training tokens); results appended to {out}",
        file=sys.stderr,
    )
    job = (str(folder), token_bytes, str(device), a.precision, threads)
    records = []

    def done(rec: dict) -> None:
        records.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if k != "curve"}), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    if workers == 1:
        for name, c in table.items():
            done(_run_safe(name, c, *job))
    else:  # spawn: a CUDA context cannot be forked
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(_run_safe, name, c, *job) for name, c in table.items()]):
                done(fut.result())
    ok = sorted((r for r in records if "error" not in r), key=lambda r: (r["bpb"] is None, r["bpb"] or 0.0))
    print(f"\n{'config':<34}{'bits/byte':>10}{'nats/tok':>10}{'steps':>7}{'secs':>7}")
    for r in ok:
        bpb = f"{r['bpb']:.4f}" if r["bpb"] is not None else "-"
        print(f"{r['name']:<34}{bpb:>10}{r['nats']:>10.4f}{r['steps']:>7}{r['secs']:>7.0f}")
    for r in records:
        if "error" in r:
            print(f"{r['name']:<34}failed: {r['error']}")
    return 0 if len(ok) == len(records) else 1


def speed(a: argparse.Namespace) -> int:
    threads = set_threads(a.threads)
    bf16 = use_bf16(a.precision, torch.device("cpu"))
    base = {**BASE_ROUND_2, **_parse_set(a.set)}
    table = _select(SPEED, a.only)
    if "base" not in table:
        table = {"base": SPEED["base"], **table}
    vocab = ModelArgs.from_preset("small").vocab_size
    steps, tokens = {}, {}
    for name, over in table.items():
        c = {**base, **over}
        model = Transformer(model_args(c, vocab)).init_weights(std=0.02, seed=0)
        batch = torch.randint(0, vocab, (c["bs"], c["seq"] + 1), generator=torch.Generator().manual_seed(0))
        budget = {**c, "tokens": c["bs"] * c["seq"] * 10_000, "ramp": False}  # a schedule far longer than the timing
        trainer = Trainer(model, FixedBatch(batch), train_config(budget, bf16))
        steps[name] = lambda tr=trainer: [tr.train_step() for _ in range(a.steps)]
        tokens[name] = c["bs"] * c["seq"] * a.steps
    times = interleaved(steps, rounds=a.rounds, warmup=1)
    rate = {name: [tokens[name] / t for t in times[name]] for name in table}
    result = {
        "threads": threads,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "rounds": a.rounds,
        "steps": a.steps,
        "variants": {
            name: {
                **{k: c for k, c in {**base, **over}.items() if k in ("dim", "n_layers", "n_heads", "n_kv_heads")},
                "rows": {**base, **over}["bs"],
                "seq": {**base, **over}["seq"],
                "tokens_per_s": statistics.median(rate[name]),
                "ratio_paired": statistics.median(r / b for r, b in zip(rate[name], rate["base"])),
            }
            for name, over in table.items()
        },
    }
    if a.json:
        print(json.dumps(result))
        return 0
    print(
        f"CPU training tokens/s, {threads} thread(s), {result['precision']}: median of {a.rounds} interleaved "
        f"round(s) of {a.steps} step(s); paired = median of each round's ratio to base"
    )
    print(f"{'variant':<20}{'shape':<24}{'rows x seq':>11}{'tokens/s':>10}{'paired':>8}")
    for name, v in result["variants"].items():
        shape = f"d{v['dim']} L{v['n_layers']} h{v['n_heads']} kv{v['n_kv_heads']}"
        rows = f"{v['rows']} x {v['seq']}"
        print(f"{name:<20}{shape:<24}{rows:>11}{v['tokens_per_s']:>10,.0f}{v['ratio_paired']:>7.2f}x")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python scripts/recipe_sweep.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="mode", required=True)
    q = sub.add_parser("quality", help="train each config at a fixed token budget; held-out bits/byte")
    q.add_argument("--round", type=int, choices=sorted(ROUNDS), default=2, help="which config list (default 2)")
    q.add_argument("--only", help="comma-separated config names of the round")
    q.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    q.add_argument("--workers", type=int, default=1, help="configs trained at once, in separate processes")
    q.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores / workers)")
    q.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="auto: as minillama pretrain")
    q.add_argument("--data", default="stdlib", help="'stdlib' (built once under --work) or a shard folder")
    q.add_argument("--work", default="runs/recipe_sweep", help="folder for the built data and the results")
    q.add_argument("--out", default=None, help="JSON lines to append to (default WORK/roundN.jsonl)")
    q.add_argument("--list", action="store_true", help="print the configs and stop")
    q.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a field in every config")
    s = sub.add_parser("speed", help="CPU training tokens/s of the shapes and batch layouts, paired with base")
    s.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are over these)")
    s.add_argument("--steps", type=int, default=2, help="optimizer steps per variant per round")
    s.add_argument("--threads", type=int, default=None, help="torch threads (default: all physical cores)")
    s.add_argument("--only", help=f"comma-separated variants (base is always timed): {', '.join(SPEED)}")
    s.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="auto: as minillama pretrain")
    s.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a field in every variant")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    return quality(a) if a.mode == "quality" else speed(a)


if __name__ == "__main__":
    sys.exit(main())
