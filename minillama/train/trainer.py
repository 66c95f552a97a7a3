"""The training loop, used for pre-training (paper §3.4) and reused unchanged by post-training (paper §4).

`Trainer` is a run: model, AdamW, the schedule of `recipe.TrainConfig`, the data position and the loss history, one
`train_step()` at a time; `fit()` loops, validates (a fixed sample every `eval_every` steps, the whole held-out split
at the end, in nats/token and bits/byte: `heldout.py`) and checkpoints. Its checkpoint folder (`state.py`) holds
everything, so `Trainer.resume` continues exactly where the run was: the loss curve is bit-identical to a run that
never stopped. A `loss.png` (`plots.py`) is written beside the checkpoint.

Post-training passes its own batches and loss: `train(model, loader, cfg, loss_fn=masked_sft_loss)`, where
`loader.next_batch(rows)` returns any batch and `loss_fn(model, batch)` returns a scalar tensor.
The command line is `minillama pretrain` (`minillama.cli.pretrain`).

Devices and processes: batches come from the loader on the CPU and go to the model's device inside the step
(`to_device`). Data parallelism over several processes (paper §3.3.2; `torchrun`, wired in `minillama.cli`) needs
three generic hooks only: ``module=`` the wrapped model (DDP) that runs forward and backward, and ``rank=`` /
``world_size=``. Every process then draws the same global batch from an identically seeded loader and keeps its
own equal slice of the rows (`rows_of_rank`), the gradients are averaged by the wrapper, the logged loss is
averaged over the processes, and only rank 0 shows progress and writes the checkpoint, which holds the full
(gathered) tensors on the CPU: it resumes on any device and any number of processes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from minillama.assets import CHECKPOINT
from minillama.checkpoint import load_checkpoint, save_checkpoint
from minillama.generate import generate
from minillama.model import Transformer
from minillama.train import state
from minillama.train.heldout import HeldOutScore, score_batches, score_split
from minillama.train.plots import plot_loss
from minillama.train.recipe import (
    TrainConfig,
    batch_rows_at,
    evaluate,
    lm_loss,
    make_adamw,
    steps_for_tokens,
    tokens_after_steps,
)
from minillama.utils import progress as progress_bar

__all__ = [
    "Trainer",
    "train",
    "fixed_batches",
    "replan_at_warmup_end",
    "measure_tokens_per_s",
    "sample_text",
    "to_device",
    "rows_of_rank",
]

LOSS_PLOT = "loss.png"


class Trainer:
    """A run: model + AdamW + schedule + data position + history, one `train_step()` at a time.

    model:       a `Transformer` (or any module `loss_fn` understands).
    loader:      has ``next_batch(rows)``, ``state_dict()``, ``load_state_dict(state)`` (see `ShardLoader`).
    cfg:         `TrainConfig`.
    loss_fn:     ``loss_fn(model, batch) -> scalar tensor``; default next-token cross-entropy (`lm_loss`).
    val_batches: fixed batches for the periodic validation loss (any that `loss_fn` accepts): a cheap sample.
    heldout:     a loader over the whole held-out split (an unshuffled `ShardLoader`), scored at the end of the run
                 (`heldout.score_split`); the result is `heldout_score` and the last `val_history` record's
                 ``"heldout"``.
    token_bytes: UTF-8 bytes per token id (`heldout.token_byte_lengths`): validation then reports bits per byte.
    out_dir:     where ``checkpoint/`` and ``loss.png`` go (None: nothing is written).
    callbacks:   ``fn(trainer, record)`` called after every step (logging, samples, a test's sleep).
    extra_files: more files for the checkpoint folder, e.g. ``{"tokenizer.model": bytes}``.
    module:      what runs forward and backward when it is not `model` itself: a wrapper such as
                 ``DistributedDataParallel(model)``; `model` stays the plain model (validation, samples, saving).
                 FSDP2 shards `model` in place: pass the sharded model as `model`, no `module`.
    rank, world_size: this process among the data-parallel processes (a group already initialised by the caller).
                 Each step every process reads the whole global batch and keeps rows ``[rank·b/N, (rank+1)·b/N)``;
                 the batch rows (and micro-batch rows) must be multiples of `world_size`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loader,
        cfg: TrainConfig,
        loss_fn: Callable | None = None,
        val_batches: Sequence | None = None,
        out_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Callable] = (),
        extra_files: dict[str, bytes] | None = None,
        meta: dict | None = None,
        heldout=None,
        token_bytes: Tensor | None = None,
        module: torch.nn.Module | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.model, self.loader, self.cfg = model, loader, cfg
        self.module = module if module is not None else model
        self.rank, self.world_size = rank, world_size
        self.loss_fn = loss_fn or lm_loss
        self.val_batches = list(val_batches or [])
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks, self.extra_files, self.meta = list(callbacks), dict(extra_files or {}), dict(meta or {})
        self.heldout, self.token_bytes = heldout, token_bytes
        self.heldout_score: HeldOutScore | None = None
        self.param_names, self.optimizer = make_adamw(model, cfg)
        self.device = next(model.parameters()).device  # a sharded (DTensor) weight reports its local device
        self.device_type = self.device.type
        self.step, self.tokens_seen, self.wall_s = 0, 0, 0.0
        self.history: list[dict] = []  # one record per step: step, tokens, rows, lr, loss, grad_norm
        self.val_history: list[dict] = []  # step, tokens, val_loss
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, shows progress and writes files."""
        return self.rank == 0

    @property
    def params(self) -> list[torch.nn.Parameter]:
        """The optimized parameters, in the order of `param_names`."""
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """One optimizer step: LR from the schedule, rows from the ramp, gradient accumulation, clipping.

        With ``world_size`` N > 1 each micro-batch of ``micro`` global rows is read whole (so the data order is the
        same for any N) and this process computes on its ``micro / N`` rows; ``rows``, ``tokens`` and ``loss`` in
        the record are those of the global batch."""
        cfg = self.cfg
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rows = batch_rows_at(self.tokens_seen, cfg.ramp)
        micro = cfg.micro_batch_size or rows
        n_micro = rows // micro
        loss_sum, tokens = 0.0, 0
        for i in range(n_micro):
            batch = self.loader.next_batch(micro)  # the global micro-batch, the same in every process
            tokens += _batch_tokens(batch)
            batch = to_device(rows_of_rank(batch, self.rank, self.world_size), self.device)
            # DDP: average the gradients once, after the last micro-batch, not after each one
            last = i == n_micro - 1 or not hasattr(self.module, "no_sync")
            with contextlib.nullcontext() if last else self.module.no_sync():
                with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    loss = self.loss_fn(self.module, batch)
                (loss / n_micro).backward()
            loss_sum += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: the norm of sharded gradients is a DTensor
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += tokens
        record = {
            "step": self.step,
            "tokens": self.tokens_seen,
            "rows": rows,
            "lr": lr,
            "loss": self.mean_over_ranks(loss_sum / n_micro),
            "grad_norm": float(grad_norm),
        }
        self.history.append(record)
        return record

    # ------------------------------------------------------------------ several processes
    def mean_over_ranks(self, value: float) -> float:
        """The mean of a number over the processes (each computed it on its own, equal, share of the batch)."""
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)  # NCCL needs it on the GPU, gloo on CPU
        dist.all_reduce(t)
        return t.item() / self.world_size

    def any_rank(self, flag: bool) -> bool:
        """True when any process says so: every process must stop at the same step (Ctrl-C, a time limit)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def from_main(self, value):
        """Rank 0's `value` (any picklable object) in every process: for decisions taken on a clock."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def validate(self, final: bool = False) -> float | None:
        """Loss on the validation sample (`val_batches`), with bits per byte when `token_bytes` is known; with
        ``final=True`` and a `heldout` loader, also the whole held-out split. Returns the sample's loss."""
        record: dict = {"step": self.step, "tokens": self.tokens_seen}
        val = None
        if self.val_batches and self.loss_fn is lm_loss:
            sample = score_batches(self.model, self.val_batches, self.token_bytes, self.cfg.bf16)
            val = record["val_loss"] = sample.nats_per_token
            if self.token_bytes is not None:
                record["val_bpb"] = sample.bits_per_byte
        elif self.val_batches:
            val = record["val_loss"] = evaluate(self.model, self.val_batches, self.loss_fn, self.cfg.bf16)
        if final and self.heldout is not None:
            self.heldout_score = score_split(self.model, self.heldout, self.token_bytes, bf16=self.cfg.bf16)
            record["heldout"] = self.heldout_score.to_dict()
        if len(record) > 2:
            self.val_history.append(record)
        return val

    # ------------------------------------------------------------------ the loop
    def fit(self, progress: bool | None = None) -> Trainer:
        """Train until `cfg.max_steps` (or the time limit), validating and checkpointing on schedule."""
        bar_kwargs = {} if progress is None else {"disable": not progress}
        if not self.is_main:
            bar_kwargs = {"disable": True}
        # Pre-training counts tokens, not steps: under a batch ramp a late step holds 4x the tokens of an early one,
        # and a bar in steps would promise an ETA the run cannot keep. Other losses (post-training) count steps.
        self._bar_tokens = self.loss_fn is lm_loss
        self.bar = bar = progress_bar(
            total=self.bar_total(),
            initial=self.tokens_seen if self._bar_tokens else self.step,
            desc="train",
            unit="tok" if self._bar_tokens else "step",
            unit_scale=self._bar_tokens,
            **bar_kwargs,
        )
        start, self._window = time.perf_counter(), (time.perf_counter(), self.tokens_seen)
        previous_handler = self._catch_ctrl_c()
        try:
            while self.step < self.cfg.max_steps:
                if self.any_rank(self._interrupted):  # Ctrl-C during the last step: stop here, between steps
                    raise KeyboardInterrupt
                cfg = self.cfg  # a callback may re-plan the run (see `replan_at_warmup_end`)
                t0 = time.perf_counter()
                record = self.train_step()
                self.wall_s += time.perf_counter() - t0
                for fn in self.callbacks:
                    fn(self, record)
                last = self.step == self.cfg.max_steps
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or last:
                    self.validate(final=last)
                if self.out_dir is not None and ((cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last):
                    self.save()
                self._show(record, last)
                limit = cfg.time_limit_s
                if limit is not None and not last and self.any_rank(time.perf_counter() - start > limit):
                    self._stop_for_time()
                    break
        except KeyboardInterrupt:
            if self.out_dir is not None:
                self.save()  # first: a message to a closed pipe must not cost the checkpoint
                with contextlib.suppress(OSError):
                    if self.is_main:
                        bar.write(f"interrupted at step {self.step}; saved a checkpoint in {self.checkpoint_dir}")
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
            bar.close()
        return self

    def _catch_ctrl_c(self):
        """The first Ctrl-C (SIGINT) only sets a flag that the loop reads between steps; a KeyboardInterrupt raised at
        an arbitrary point can be swallowed (Python ignores exceptions in weakref callbacks and finalizers) and the
        run would go on. A second Ctrl-C interrupts at once. Returns the previous handler (None off the main thread,
        where signal handlers cannot be set)."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(signum, frame):
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True

        return signal.signal(signal.SIGINT, on_sigint)

    def bar_total(self) -> int:
        """The progress bar's end: the tokens seen at `cfg.max_steps` (pre-training) or the steps."""
        cfg = self.cfg
        if not getattr(self, "_bar_tokens", False):
            return cfg.max_steps
        return tokens_after_steps(cfg.max_steps - self.step, cfg.ramp, cfg.seq_len, self.tokens_seen)

    def _show(self, record: dict, last: bool) -> None:
        """Advance the progress bar; every 2 s, show loss, speed, LR and the last validation loss."""
        self.bar.update(record["tokens"] - self.bar.n if self._bar_tokens else 1)
        now, (then, tokens_then) = time.perf_counter(), self._window
        if now - then > 2.0 or last:
            self._window = (now, self.tokens_seen)
            post = {
                "loss": f"{record['loss']:.3f}",
                "tok/s": f"{(self.tokens_seen - tokens_then) / (now - then):,.0f}",
                "lr": f"{record['lr']:.1e}",
            }
            if self.val_history and "val_loss" in self.val_history[-1]:
                post["val"] = f"{self.val_history[-1]['val_loss']:.3f}"
                if "val_bpb" in self.val_history[-1]:
                    post["bpb"] = f"{self.val_history[-1]['val_bpb']:.3f}"
            self.bar.set_postfix(post, refresh=False)

    def _stop_for_time(self) -> None:
        cfg = self.cfg
        if self.is_main:
            self.bar.write(
                f"time limit of {cfg.time_limit_s:.0f}s reached at step {self.step}/{cfg.max_steps}"
                + ("; saved a checkpoint, continue with --resume" if self.out_dir else "")
            )
        if self.out_dir is not None:
            self.validate(final=True)
            self.save()

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.wall_s if self.wall_s else float("nan")

    # ------------------------------------------------------------------ checkpoints (files: `state.py`)
    @property
    def checkpoint_dir(self) -> Path:
        if self.out_dir is None:
            raise ValueError("this Trainer has no out_dir; pass out_dir= to write checkpoints")
        return self.out_dir / CHECKPOINT

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Write the checkpoint folder atomically (and the loss plot beside it): full tensors on the CPU.

        With several processes every one must call it (sharded weights and optimizer moments are gathered);
        rank 0 writes."""
        folder = Path(folder) if folder is not None else self.checkpoint_dir
        weights, files = state.full_model_state(self.model), state.state_files(self)
        if not self.is_main:
            return folder
        save_checkpoint(self.model, folder, extra_files={**self.extra_files, **files}, state=weights)
        if self.history:
            plot = folder.parent / LOSS_PLOT
            tmp = plot.with_name(f".{plot.stem}.tmp.png")
            plot_loss(self.history, self.val_history, baseline=self.meta.get("unigram_entropy")).savefig(tmp, dpi=90)
            os.replace(tmp, plot)
        return folder

    def load_state(self, folder: str | os.PathLike) -> Trainer:
        """Restore optimizer, RNG, loader, step and history from a checkpoint folder (the model is loaded by
        `resume`). Raises CheckpointError naming the file when something is missing or corrupt."""
        state.load_state(self, folder)
        return self

    @classmethod
    def resume(
        cls,
        folder: str | os.PathLike,
        loader,
        loss_fn: Callable | None = None,
        val_batches: Sequence | None = None,
        out_dir: str | os.PathLike | None = None,
        **kwargs,
    ) -> Trainer:
        """A Trainer continuing the run saved in checkpoint `folder` (model, optimizer, data position, RNG)."""
        folder = Path(folder)
        cfg = TrainConfig.from_dict(state.read_trainer_state(folder)["train_config"])
        trainer = cls(
            load_checkpoint(folder),
            loader,
            cfg,
            loss_fn,
            val_batches,
            folder.parent if out_dir is None else out_dir,
            **kwargs,
        )
        return trainer.load_state(folder)


def _map_tensors(batch, fn):
    """`batch` with `fn` applied to each tensor in it: a tensor, a tuple/list or a dict of them (others kept)."""
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_map_tensors(b, fn) for b in batch)
    if isinstance(batch, dict):
        return {k: _map_tensors(v, fn) for k, v in batch.items()}
    return batch


def to_device(batch, device: torch.device):
    """A batch (tensor, tuple/list or dict of tensors) on `device`; a no-op for tensors already there."""
    return _map_tensors(batch, lambda t: t.to(device))


def rows_of_rank(batch, rank: int, world_size: int):
    """Process `rank`'s slice of a global batch: rows ``[rank·b/N, (rank+1)·b/N)`` of every tensor (b, ...)."""
    if world_size == 1:
        return batch

    def mine(t: Tensor) -> Tensor:
        if t.shape[0] % world_size:
            raise ValueError(f"a batch of {t.shape[0]} rows does not split over {world_size} processes")
        n = t.shape[0] // world_size
        return t[rank * n : (rank + 1) * n]

    return _map_tensors(batch, mine)


def _batch_tokens(batch) -> int:
    """Tokens of input in a batch: (inputs, targets) tuples, a tensor, or a dict with 'tokens'/first tensor."""
    if isinstance(batch, Tensor):
        return batch.numel()
    if isinstance(batch, dict):
        first = batch.get("tokens", next(v for v in batch.values() if isinstance(v, Tensor)))
        return first.numel()
    return batch[0].numel()


def train(
    model: torch.nn.Module,
    loader,
    cfg: TrainConfig,
    loss_fn: Callable | None = None,
    val_batches: Sequence | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **kwargs,
) -> Trainer:
    """Train `model` on `loader` with `cfg` (see `Trainer`); with ``resume=True`` and a checkpoint in
    ``out_dir/checkpoint``, continue that run instead (its saved model and config win). Returns the Trainer."""
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs the out_dir of the run to continue")
        folder = Path(out_dir) / CHECKPOINT
        if not folder.exists():
            raise ValueError(f"nothing to resume: {folder} does not exist; run once without resume first")
        trainer = Trainer.resume(folder, loader, loss_fn, val_batches, out_dir, **kwargs)
    else:
        trainer = Trainer(model, loader, cfg, loss_fn, val_batches, out_dir, **kwargs)
    return trainer.fit(progress=progress)


def fixed_batches(loader, rows: int, max_batches: int) -> list:
    """Up to `max_batches` batches of `rows` read in order from an unshuffled loader (the validation set); fewer
    rows when the split is small. Raises ValueError when it holds no window at all."""
    if loader.n_windows == 0:
        raise ValueError("the validation split holds no full window; use more data or a shorter --seq-len")
    rows = min(rows, loader.n_windows)
    return [loader.next_batch(rows) for _ in range(min(max_batches, loader.n_windows // rows))]


def replan_at_warmup_end(budget_s: float, clock: dict, skip_steps: int = 3) -> Callable:
    """A callback for `--minutes` runs: when warmup ends, measure the real speed (the first guess comes from a few
    probe steps and is noisy on a busy machine) and set `max_steps` so the run fills `budget_s` seconds from
    ``clock["start"]``. The speed is taken over the steps after the first `skip_steps` (which include
    `torch.compile`'s compiling, a minute on a CPU), so a slow start is paid once, not extrapolated. The cosine only
    starts after warmup, so the schedule stays one smooth curve."""

    def callback(trainer: Trainer, record: dict) -> None:
        cfg = trainer.cfg
        if trainer.step == skip_steps and "mark" not in clock:
            clock["mark"] = (time.perf_counter(), trainer.tokens_seen)
        if trainer.step != max(cfg.warmup_steps, skip_steps + 2) or "done" in clock:
            return
        clock["done"] = True
        now = time.perf_counter()
        elapsed = now - clock["start"]
        since, tokens_then = clock.get("mark", (clock["start"], 0))
        rate = (trainer.tokens_seen - tokens_then) / max(now - since, 1e-9)
        total = trainer.tokens_seen + int(rate * max(0.0, budget_s - elapsed))
        steps = max(
            trainer.step + 1, trainer.step + steps_for_tokens(total, cfg.ramp, cfg.seq_len, trainer.tokens_seen)
        )
        rate, total, steps = trainer.from_main((rate, total, steps))  # every process plans rank 0's steps
        if steps != cfg.max_steps:
            trainer.cfg = dataclasses.replace(
                cfg, max_steps=steps, eval_every=max(10, steps // 15), ckpt_every=max(10, steps // 10)
            )
            bar = getattr(trainer, "bar", None)
            if bar is not None:
                bar.total = trainer.bar_total()
            if trainer.is_main:
                (bar.write if bar is not None else print)(
                    f"re-planned at step {trainer.step}: {rate:,.0f} tokens/s -> {steps} steps (~{total:,} tokens)"
                )

    return callback


def measure_tokens_per_s(model: Transformer, cfg: TrainConfig, loader, steps: int = 3) -> float:
    """Tokens/s of full training steps on a throwaway copy of the model (the run itself is untouched)."""
    probe_cfg = dataclasses.replace(cfg, max_steps=steps + 1, eval_every=0, ckpt_every=0, time_limit_s=None)
    probe = Trainer(copy.deepcopy(model), copy.deepcopy(loader), probe_cfg)
    probe.train_step()  # warm-up
    t0, tok0 = time.perf_counter(), probe.tokens_seen
    for _ in range(steps):
        probe.train_step()
    return (probe.tokens_seen - tok0) / (time.perf_counter() - t0)


def sample_text(model: Transformer, tokenizer, prompt: str = "def", max_new_tokens: int = 48) -> str:
    """A greedy continuation of `prompt` (BOS + prompt), decoded."""
    was_training = model.training
    model.eval()
    ids = tokenizer.encode(prompt, bos=True, eos=False)
    new = generate(model, [ids], max_new_tokens, temperature=0.0, stop_tokens=(tokenizer.eos_id,))[0]
    model.reset_cache()
    model.train(was_training)
    return prompt + tokenizer.decode(new)
