"""The training loop, used for pre-training (paper §3.4) and reused unchanged by post-training (§4).

The recipe of §3.4.1, scaled down to a CPU:

* **AdamW** with decoupled weight decay (the decay shrinks weights directly, it is not added to the gradient), on
  matrices only; norms are not decayed.
* **Learning rate**: linear warmup, then cosine decay to a floor (405B: peak 8e-5, 8,000 warmup steps, cosine to
  8e-7 over 1.2M steps); `schedule="linear"` goes linearly to zero instead, as the final annealing does (§3.4.3).
* **Batch-size ramp**: the 405B run started at 4M tokens per step and doubled to 8M after 252M tokens and to 16M
  after 2.87T: small batches early are stable and cheap, big batches later are efficient. `batch_ramp` says how many
  rows each step takes after how many tokens. Rows are processed `micro_batch_size` at a time with **gradient
  accumulation**, so a large batch fits in little memory.
* **Gradient clipping** by global norm, optional **bf16 autocast**, everything **seeded**.

`Trainer` keeps the whole state of a run (model, optimizer, step, data-loader position, RNG, loss history) and
writes it as a checkpoint folder, atomically::

    checkpoint/
      config.json, model.safetensors   the model (`minillama.checkpoint.save_checkpoint`)
      optimizer.st (safetensors)       AdamW moments and step counts, by parameter name
      rng.st (safetensors)             torch's RNG state
      trainer.json                     TrainConfig, step, tokens seen, loader state, Python/NumPy RNG, history

so `Trainer.resume` continues exactly where the run was: the loss curve is bit-identical to a run that never
stopped. A `loss.png` is written beside the checkpoint.

Post-training passes its own batches and loss: `train(model, loader, cfg, loss_fn=masked_sft_loss)`, where
`loader.next_batch(rows)` returns any batch and `loss_fn(model, batch)` returns a scalar tensor.

The command line: ``minillama pretrain --preset small --data stdlib --minutes 15 --out runs/small [--resume]``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from minillama.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minillama.model import Transformer

__all__ = [
    "TrainConfig", "lr_schedule", "batch_rows_at", "adamw_step", "clip_grad_norm", "lm_loss", "evaluate",
    "Trainer", "train", "plot_loss", "plot_schedules", "main",
]

TRAINER_STATE = "trainer.json"
OPTIMIZER_STATE = "optimizer.st"  # safetensors format; not *.safetensors, which load_checkpoint reads as weights
RNG_STATE = "rng.st"  # safetensors format
CHECKPOINT = "checkpoint"  # the folder name inside a run folder
LOSS_PLOT = "loss.png"
SHIPPED = "tiny-stdlib"  # minillama/assets/tiny-stdlib: the course tokenizer and a tiny model trained here


# ====================================================================== the recipe as pure functions
def lr_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int,
                schedule: str = "cosine") -> float:
    """Learning rate of optimizer step `step` (0-based).

    * warmup: ``max_lr · (step + 1) / warmup_steps`` for ``step < warmup_steps``;
    * then with ``progress = (step - warmup_steps) / (max_steps - warmup_steps)`` in [0, 1]:
      cosine: ``min_lr + (max_lr - min_lr) · (1 + cos(π · progress)) / 2``; linear: ``max_lr · (1 - progress)``
      (to zero, for annealing); constant: ``max_lr``;
    * ``min_lr`` (linear: 0) from ``max_steps`` on.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return max_lr
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "cosine":
        return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return max_lr * (1.0 - progress)
    raise ValueError(f"schedule must be 'cosine', 'linear' or 'constant', got {schedule!r}")


def batch_rows_at(tokens_seen: int, ramp: Sequence[tuple[int, int]]) -> int:
    """Rows per step after `tokens_seen` tokens: the rows of the last ``(threshold, rows)`` pair with
    ``threshold <= tokens_seen``. ``((0, 4), (50_000, 8))``: 4 rows, then 8 once 50K tokens have been seen."""
    rows = None
    for threshold, r in ramp:
        if tokens_seen >= threshold:
            rows = r
    if rows is None:
        raise ValueError(f"batch ramp {list(ramp)} has no step for {tokens_seen} tokens; start it at threshold 0")
    return rows


@torch.no_grad()
def adamw_step(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int, lr: float,
               betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
               weight_decay: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """One AdamW update (Loshchilov & Hutter), written out; `step` counts from 1. Returns new
    (param, exp_avg, exp_avg_sq). The trainer uses `torch.optim.AdamW`, which computes the same thing fused.

    decoupled decay: ``p ← p · (1 − lr·wd)``   (not ``grad + wd·p``, which Adam would rescale)
    moments:         ``m ← β1·m + (1−β1)·g``, ``v ← β2·v + (1−β2)·g²``
    bias-corrected:  ``p ← p − lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)``
    """
    beta1, beta2 = betas
    param = param * (1 - lr * weight_decay)
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = exp_avg / (1 - beta1 ** step)
    v_hat = exp_avg_sq / (1 - beta2 ** step)
    return param - lr * m_hat / (v_hat.sqrt() + eps), exp_avg, exp_avg_sq


@torch.no_grad()
def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], float]:
    """Scale all gradients by ``min(1, max_norm / (total_norm + 1e-6))``, where total_norm is the L2 norm of all of
    them together. Returns (clipped grads, total norm before clipping); what `torch.nn.utils.clip_grad_norm_` does."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    scale = min(1.0, max_norm / (total + 1e-6))
    return [g * scale for g in grads], total


def lm_loss(model: torch.nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Next-token cross-entropy in nats/token; `batch` = (inputs (b, s), targets (b, s)), targets -100 ignored."""
    inputs, targets = batch
    logits = model(inputs)  # (b, s, v)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Sequence, loss_fn: Callable = lm_loss, bf16: bool = False) -> float:
    """Mean loss over fixed batches (the model is put in eval mode and back)."""
    was_training = model.training
    model.eval()
    total = 0.0
    with torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in batches:
            total += float(loss_fn(model, batch))
    model.train(was_training)
    return total / max(len(batches), 1)


# ====================================================================== configuration
@dataclass
class TrainConfig:
    """Everything that decides a run's numbers. Saved in the checkpoint; a resumed run reuses it."""

    max_steps: int = 1000  # optimizer steps; the schedule ends here
    lr: float = 2e-3  # peak learning rate
    min_lr: float = 2e-4  # cosine floor (paper: peak/100; scaling-law runs: peak/10)
    warmup_steps: int = 50
    schedule: str = "cosine"  # "cosine" | "linear" (to zero: annealing) | "constant"
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 = off
    batch_size: int = 16  # rows per step when there is no ramp
    batch_ramp: tuple[tuple[int, int], ...] = ()  # ((tokens_seen, rows), ...), first threshold 0
    micro_batch_size: int | None = None  # rows per forward/backward (None: the whole batch); accumulation
    seq_len: int = 256
    bf16: bool = False  # autocast matmuls to bfloat16
    seed: int = 0
    eval_every: int = 100  # steps; 0 = only at the end
    ckpt_every: int = 0  # steps; 0 = only at the end
    time_limit_s: float | None = None  # stop early (with a checkpoint) after this much wall time

    def __post_init__(self):
        self.betas = tuple(self.betas)
        self.batch_ramp = tuple(tuple(int(v) for v in pair) for pair in self.batch_ramp)
        self.validate()

    @property
    def ramp(self) -> tuple[tuple[int, int], ...]:
        return self.batch_ramp or ((0, self.batch_size),)

    def validate(self) -> None:
        if self.max_steps < 1 or self.warmup_steps < 0:
            raise ValueError(f"need max_steps >= 1 and warmup_steps >= 0, got {self.max_steps}, {self.warmup_steps}")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        lr_schedule(self.warmup_steps, self.lr, self.min_lr, self.warmup_steps, self.max_steps, self.schedule)
        if self.ramp[0][0] != 0 or any(b[0] <= a[0] for a, b in zip(self.ramp, self.ramp[1:])):
            raise ValueError(f"batch_ramp {self.ramp} must start at 0 tokens with increasing thresholds")
        micro = self.micro_batch_size
        for _, rows in self.ramp:
            if rows < 1 or (micro and rows % micro):
                raise ValueError(f"batch rows {rows} must be a positive multiple of micro_batch_size={micro}; "
                                 f"change --batch-size/--micro-batch-size or the ramp")

    def lr_at(self, step: int) -> float:
        return lr_schedule(step, self.lr, self.min_lr, self.warmup_steps, self.max_steps, self.schedule)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _batch_tokens(batch) -> int:
    """Tokens of input in a batch: (inputs, targets) tuples, a tensor, or a dict with 'tokens'/first tensor."""
    if isinstance(batch, Tensor):
        return batch.numel()
    if isinstance(batch, dict):
        first = batch.get("tokens", next(v for v in batch.values() if isinstance(v, Tensor)))
        return first.numel()
    return batch[0].numel()


# ====================================================================== the trainer
class Trainer:
    """A run: model + AdamW + schedule + data position + history, one `train_step()` at a time.

    model:       a `Transformer` (or any module `loss_fn` understands).
    loader:      has ``next_batch(rows)``, ``state_dict()``, ``load_state_dict(state)`` (see `ShardLoader`).
    cfg:         `TrainConfig`.
    loss_fn:     ``loss_fn(model, batch) -> scalar tensor``; default next-token cross-entropy (`lm_loss`).
    val_batches: fixed batches for the periodic validation loss (any that `loss_fn` accepts).
    out_dir:     where ``checkpoint/`` and ``loss.png`` go (None: nothing is written).
    callbacks:   ``fn(trainer, record)`` called after every step (logging, samples, a test's sleep).
    extra_files: more files for the checkpoint folder, e.g. ``{"tokenizer.model": bytes}``.
    """

    def __init__(self, model: torch.nn.Module, loader, cfg: TrainConfig, loss_fn: Callable | None = None,
                 val_batches: Sequence | None = None, out_dir: str | os.PathLike | None = None,
                 callbacks: Sequence[Callable] = (), extra_files: dict[str, bytes] | None = None,
                 meta: dict | None = None):
        self.model, self.loader, self.cfg = model, loader, cfg
        self.loss_fn = loss_fn or lm_loss
        self.val_batches = list(val_batches or [])
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks, self.extra_files, self.meta = list(callbacks), dict(extra_files or {}), dict(meta or {})
        self.param_names, self.optimizer = self._make_optimizer()
        self.device_type = next(model.parameters()).device.type
        self.step, self.tokens_seen, self.wall_s = 0, 0, 0.0
        self.history: list[dict] = []  # one record per step: step, tokens, rows, lr, loss, grad_norm
        self.val_history: list[dict] = []  # step, tokens, val_loss
        seed = cfg.seed
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _make_optimizer(self) -> tuple[list[str], torch.optim.Optimizer]:
        """AdamW with weight decay on matrices (ndim >= 2), none on norms. Fused kernel where torch has one."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [(n, p) for n, p in named if p.ndim >= 2]
        no_decay = [(n, p) for n, p in named if p.ndim < 2]
        groups = [{"params": [p for _, p in decay], "weight_decay": self.cfg.weight_decay},
                  {"params": [p for _, p in no_decay], "weight_decay": 0.0}]
        kwargs = dict(lr=self.cfg.lr, betas=self.cfg.betas, eps=self.cfg.eps)
        try:
            opt = torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):  # an older torch without a CPU fused AdamW
            opt = torch.optim.AdamW(groups, foreach=True, **kwargs)
        return [n for n, _ in decay + no_decay], opt

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict:
        """One optimizer step: LR from the schedule, rows from the ramp, gradient accumulation, clipping."""
        cfg = self.cfg
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rows = batch_rows_at(self.tokens_seen, cfg.ramp)
        micro = cfg.micro_batch_size or rows
        n_micro = rows // micro
        loss_sum, tokens = 0.0, 0
        for _ in range(n_micro):
            batch = self.loader.next_batch(micro)
            with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = self.loss_fn(self.model, batch)
            (loss / n_micro).backward()
            loss_sum += loss.item()
            tokens += _batch_tokens(batch)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += tokens
        record = {"step": self.step, "tokens": self.tokens_seen, "rows": rows, "lr": lr,
                  "loss": loss_sum / n_micro, "grad_norm": float(grad_norm)}
        self.history.append(record)
        return record

    def validate(self) -> float | None:
        if not self.val_batches:
            return None
        val = evaluate(self.model, self.val_batches, self.loss_fn, self.cfg.bf16)
        self.val_history.append({"step": self.step, "tokens": self.tokens_seen, "val_loss": val})
        return val

    # ------------------------------------------------------------------ the loop
    def fit(self, progress: bool | None = None) -> "Trainer":
        """Train until `cfg.max_steps` (or the time limit), validating and checkpointing on schedule."""
        from minillama.utils import progress as progress_bar

        cfg = self.cfg
        bar_kwargs = {} if progress is None else {"disable": not progress}
        self.bar = bar = progress_bar(total=cfg.max_steps, initial=self.step, desc="train", unit="step", **bar_kwargs)
        start_wall, window = time.perf_counter(), (time.perf_counter(), self.tokens_seen)
        try:
            while self.step < self.cfg.max_steps:
                cfg = self.cfg  # a callback may re-plan the run (see `replan_at_warmup_end`)
                t0 = time.perf_counter()
                record = self.train_step()
                self.wall_s += time.perf_counter() - t0
                for fn in self.callbacks:
                    fn(self, record)
                last = self.step == self.cfg.max_steps
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or last:
                    self.validate()
                if self.out_dir is not None and ((cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last):
                    self.save()
                bar.update(1)
                now = time.perf_counter()
                if now - window[0] > 2.0 or last:
                    tok_s = (self.tokens_seen - window[1]) / (now - window[0])
                    window = (now, self.tokens_seen)
                    post = {"loss": f"{record['loss']:.3f}", "tok/s": f"{tok_s:,.0f}", "lr": f"{record['lr']:.1e}"}
                    if self.val_history:
                        post["val"] = f"{self.val_history[-1]['val_loss']:.3f}"
                    bar.set_postfix(post, refresh=False)
                if cfg.time_limit_s is not None and now - start_wall > cfg.time_limit_s and not last:
                    bar.write(f"time limit of {cfg.time_limit_s:.0f}s reached at step {self.step}/{cfg.max_steps}"
                              + ("; saved a checkpoint, continue with --resume" if self.out_dir else ""))
                    if self.out_dir is not None:
                        self.validate()
                        self.save()
                    break
        except KeyboardInterrupt:
            if self.out_dir is not None:
                bar.write(f"interrupted at step {self.step}; saving a checkpoint (continue with --resume)")
                self.save()
            raise
        finally:
            bar.close()
        return self

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.wall_s if self.wall_s else float("nan")

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        if self.out_dir is None:
            raise ValueError("this Trainer has no out_dir; pass out_dir= to write checkpoints")
        return self.out_dir / CHECKPOINT

    def state_files(self) -> dict[str, bytes]:
        """Everything but the model, as file contents: optimizer, RNG, trainer.json."""
        state = {"format": "minillama-trainer-v1", "train_config": self.cfg.to_dict(), "step": self.step,
                 "tokens_seen": self.tokens_seen, "wall_s": self.wall_s, "loader": self.loader.state_dict(),
                 "history": self.history, "val_history": self.val_history, "meta": self.meta,
                 "rng": {"python": _py_rng_to_json(random.getstate()), "numpy": _np_rng_to_json(np.random.get_state())}}
        moments = {}
        for name, p in zip(self.param_names, (p for g in self.optimizer.param_groups for p in g["params"])):
            for key, value in self.optimizer.state.get(p, {}).items():
                moments[f"{name}.{key}"] = value.detach().reshape(value.shape).contiguous()
        from safetensors.torch import save as save_bytes

        return {TRAINER_STATE: json.dumps(state).encode(), OPTIMIZER_STATE: save_bytes(moments),
                RNG_STATE: save_bytes({"torch": torch.get_rng_state()})}

    def save(self, folder: str | os.PathLike | None = None) -> Path:
        """Write the checkpoint folder atomically (and the loss plot beside it)."""
        folder = Path(folder) if folder is not None else self.checkpoint_dir
        save_checkpoint(self.model, folder, extra_files={**self.extra_files, **self.state_files()})
        if self.history:
            plot = folder.parent / LOSS_PLOT
            tmp = plot.with_name(f".{plot.stem}.tmp.png")
            fig = plot_loss(self.history, self.val_history, baseline=self.meta.get("unigram_entropy"))
            fig.savefig(tmp, dpi=90)
            os.replace(tmp, plot)
        return folder

    def load_state(self, folder: str | os.PathLike) -> "Trainer":
        """Restore optimizer, RNG, loader, step and history from a checkpoint folder (the model is loaded by
        `resume`). Raises CheckpointError naming the file when something is missing or corrupt."""
        folder = Path(folder)
        state = read_trainer_state(folder)
        try:
            moments = load_file(folder / OPTIMIZER_STATE)
            rng = load_file(folder / RNG_STATE)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{folder}: optimizer or RNG state is unreadable ({e}); the checkpoint is "
                                  f"truncated or corrupt, start again without --resume") from e
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for name, p in zip(self.param_names, params):
            keys = [k for k in moments if k.rsplit(".", 1)[0] == name]
            if keys:
                self.optimizer.state[p] = {k.rsplit(".", 1)[1]: moments[k].clone() for k in keys}
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.wall_s = float(state.get("wall_s", 0.0))
        self.history, self.val_history = state["history"], state["val_history"]
        self.meta.update(state.get("meta", {}))
        self.loader.load_state_dict(state["loader"])
        random.setstate(_py_rng_from_json(state["rng"]["python"]))
        np.random.set_state(_np_rng_from_json(state["rng"]["numpy"]))
        torch.set_rng_state(rng["torch"])
        return self

    @classmethod
    def resume(cls, folder: str | os.PathLike, loader, loss_fn: Callable | None = None,
               val_batches: Sequence | None = None, out_dir: str | os.PathLike | None = None,
               **kwargs) -> "Trainer":
        """A Trainer continuing the run saved in checkpoint `folder` (model, optimizer, data position, RNG)."""
        folder = Path(folder)
        state = read_trainer_state(folder)
        model = load_checkpoint(folder)
        cfg = TrainConfig.from_dict(state["train_config"])
        if out_dir is None:
            out_dir = folder.parent
        trainer = cls(model, loader, cfg, loss_fn, val_batches, out_dir, **kwargs)
        return trainer.load_state(folder)


def read_trainer_state(folder: str | os.PathLike) -> dict:
    """The trainer.json of a checkpoint folder, with a clear error when missing or corrupt."""
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not a training checkpoint (or was never completed)")
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); start again without --resume") from None
    if state.get("format") != "minillama-trainer-v1":
        raise CheckpointError(f"{path} is not a minillama trainer state (format {state.get('format')!r})")
    return state


def _py_rng_to_json(state):
    return [state[0], list(state[1]), state[2]]


def _py_rng_from_json(state):
    return (state[0], tuple(state[1]), state[2])


def _np_rng_to_json(state):
    return [state[0], state[1].tolist(), int(state[2]), int(state[3]), float(state[4])]


def _np_rng_from_json(state):
    return (state[0], np.asarray(state[1], dtype=np.uint32), state[2], state[3], state[4])


def train(model: torch.nn.Module, loader, cfg: TrainConfig, loss_fn: Callable | None = None,
          val_batches: Sequence | None = None, out_dir: str | os.PathLike | None = None, resume: bool = False,
          progress: bool | None = None, **kwargs) -> Trainer:
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


# ====================================================================== plots
def plot_loss(history: Sequence[dict], val_history: Sequence[dict] = (), ax=None, x: str = "tokens",
              label: str = "train", baseline: float | None = None):
    """Training loss (and validation points) against tokens seen; returns the figure."""
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
    xs = [r[x] for r in history]
    losses = np.array([r["loss"] for r in history])
    k = max(1, len(losses) // 50)
    ax.plot(xs, losses, lw=0.6 if k > 1 else 1.2, alpha=0.35 if k > 1 else 0.9, label=f"{label} (per step)")
    if k > 1:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(xs[k - 1:], smooth, lw=1.5, label=f"{label} (mean of {k})")
    if val_history:
        ax.plot([r[x] for r in val_history], [r["val_loss"] for r in val_history], "o-", ms=3, label="validation")
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="unigram entropy")
    ax.set_xlabel("tokens seen" if x == "tokens" else x)
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def plot_schedules(cfg: TrainConfig, seq_len: int | None = None, axes=None):
    """The learning rate and the batch size (tokens per step) over a run of `cfg`; returns the figure."""
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3))
        axes = fig.subplots(1, 2)
    seq_len = seq_len or cfg.seq_len
    steps = np.arange(cfg.max_steps)
    axes[0].plot(steps, [cfg.lr_at(int(s)) for s in steps])
    axes[0].set(xlabel="step", ylabel="learning rate", title=f"warmup {cfg.warmup_steps} + {cfg.schedule}")
    tokens, rows = 0, []
    for _ in steps:
        r = batch_rows_at(tokens, cfg.ramp)
        rows.append(r * seq_len)
        tokens += r * seq_len
    axes[1].step(steps, rows, where="post")
    axes[1].set(xlabel="step", ylabel="tokens per step", title="batch-size ramp")
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes[0].figure


def fixed_batches(loader, rows: int, max_batches: int) -> list:
    """Up to `max_batches` batches of `rows` read in order from an unshuffled loader (the validation set); fewer
    rows when the split is small. Raises ValueError when it holds no window at all."""
    if loader.n_windows == 0:
        raise ValueError("the validation split holds no full window; use more data or a shorter --seq-len")
    rows = min(rows, loader.n_windows)
    return [loader.next_batch(rows) for _ in range(min(max_batches, loader.n_windows // rows))]


def steps_for_tokens(total_tokens: int, ramp: Sequence[tuple[int, int]], seq_len: int, start_tokens: int = 0) -> int:
    """Optimizer steps needed to go from `start_tokens` to `total_tokens` seen under a batch ramp."""
    steps, tokens = 0, start_tokens
    while tokens < total_tokens:
        tokens += batch_rows_at(tokens, ramp) * seq_len
        steps += 1
    return steps


def replan_at_warmup_end(budget_s: float, clock: dict) -> Callable:
    """A callback for `--minutes` runs: when warmup ends, measure the real speed (the first guess comes from a few
    probe steps and is noisy on a busy machine) and set `max_steps` so the run fills `budget_s` seconds from
    ``clock["start"]``. The cosine only starts after warmup, so the schedule stays one smooth curve."""
    def callback(trainer: Trainer, record: dict) -> None:
        cfg = trainer.cfg
        if trainer.step != max(cfg.warmup_steps, 5) or "done" in clock:
            return
        clock["done"] = True
        elapsed = time.perf_counter() - clock["start"]
        total = trainer.tokens_seen + int(trainer.tokens_seen / elapsed * max(0.0, budget_s - elapsed))
        steps = max(trainer.step + 1, trainer.step + steps_for_tokens(total, cfg.ramp, cfg.seq_len,
                                                                        trainer.tokens_seen))
        if steps != cfg.max_steps:
            trainer.cfg = dataclasses.replace(cfg, max_steps=steps, eval_every=max(10, steps // 15),
                                              ckpt_every=max(10, steps // 10))
            bar = getattr(trainer, "bar", None)
            if bar is not None:
                bar.total = steps
            (bar.write if bar is not None else print)(f"re-planned at step {trainer.step}: {trainer.tokens_seen / elapsed:,.0f} tokens/s "
                              f"-> {steps} steps (~{total:,} tokens)")
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


# ====================================================================== command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillama pretrain", description="Pre-train a small Llama on the CPU "
                                "(paper §3.4). With no flags: the `small` preset on the standard library, 15 minutes.")
    p.add_argument("--preset", default="small", help="model preset (tiny, small, base); default small")
    p.add_argument("--data", default="stdlib", help="'stdlib' (built-in corpus), a documents.jsonl from `minillama "
                   "data build`, a text file or folder, or a shard folder made by minillama.data.shards (has meta.json)")
    p.add_argument("--minutes", type=float, default=15.0, help="training time; sets the schedule length")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --minutes; reproducible)")
    p.add_argument("--out", default=None, help="run folder (default runs/<preset>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--tokenizer", default=None, help="tokenizer file; default: the shipped course tokenizer for "
                   "'stdlib', else a new 8K BPE trained on --data")
    p.add_argument("--limit-mb", type=float, default=None, help="use at most this many MB of the corpus")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16, help="rows per step after the ramp")
    p.add_argument("--micro-batch-size", type=int, default=None, help="rows per forward (gradient accumulation)")
    p.add_argument("--no-ramp", action="store_true", help="constant batch size (no ramp)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr", type=float, default=None, help="cosine floor (default lr/10)")
    p.add_argument("--warmup", type=int, default=None, help="warmup steps (default 5%% of the steps, <= 200)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="bf16 autocast or plain fp32; auto = bf16 where the CPU computes bf16 natively (~2x faster)")
    p.add_argument("--dim", type=int, default=None, help="override the preset's dim")
    p.add_argument("--n-layers", type=int, default=None, help="override the preset's n_layers")
    p.add_argument("--n-heads", type=int, default=None, help="override the preset's n_heads")
    p.add_argument("--n-kv-heads", type=int, default=None, help="override the preset's n_kv_heads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--ckpt-every", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default MINILLAMA_THREADS or 1)")
    p.add_argument("--sample-every", type=int, default=0, help="print a greedy sample every N steps")
    p.add_argument("--prompt", default="def", help="prompt for samples (no trailing space: see chapter 01)")
    return p


def cpu_has_native_bf16() -> bool:
    """True where the CPU has bfloat16 instructions (x86 AVX512-BF16 or AMX), so bf16 autocast is a speed-up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def default_ramp(batch_size: int, seq_len: int, total_tokens: int) -> tuple[tuple[int, int], ...]:
    """The paper's shape scaled down: a quarter of the batch, then half after ~2% of the tokens, then all after
    ~10% (405B: 4M → 8M tokens/step after 252M tokens, → 16M after 2.87T of ~15.6T)."""
    quarter, half = max(1, batch_size // 4), max(1, batch_size // 2)
    ramp = [(0, quarter), (int(0.02 * total_tokens), half), (int(0.10 * total_tokens), batch_size)]
    out = []
    for thr, rows in ramp:
        if out and rows == out[-1][1]:
            continue
        out.append((thr, rows))
    return tuple(out)


def prepare_data(data: str, out: Path, tokenizer_path: str | None, vocab_size: int, limit_mb: float | None,
                 seed: int):
    """A shard folder and tokenizer for `--data`: reused from ``out/data`` when already built."""
    from minillama.data.shards import build_shards, read_meta

    if (Path(data) / "meta.json").is_file():  # already a shard folder
        folder = Path(data)
        tok_file = tokenizer_path or (folder / "tokenizer.model" if (folder / "tokenizer.model").exists() else None)
        return folder, read_meta(folder), _load_tokenizer(tok_file) if tok_file else None
    folder = out / "data"
    source = data if not limit_mb else f"{data} (first {limit_mb:g} MB)"
    if (folder / "meta.json").is_file() and read_meta(folder).get("source") == source:
        return folder, read_meta(folder), _load_tokenizer(folder / "tokenizer.model")
    from minillama.data.corpus import load_documents, load_text_files, stdlib_corpus

    limit = int(limit_mb * 1e6) if limit_mb else None
    if data == "stdlib":
        docs = stdlib_corpus("all", limit_bytes=limit, seed=seed)
    elif str(data).endswith(".jsonl") and Path(data).is_file():  # documents.jsonl from `minillama data build`
        docs = load_documents(data)
    else:
        docs = load_text_files(data)
        if limit:
            docs = [d for d, keep in zip(docs, np.cumsum([d.bytes for d in docs]) <= limit) if keep]
    shipped = _shipped_tokenizer()
    if tokenizer_path:
        tok = _load_tokenizer(tokenizer_path)
    elif data == "stdlib" and shipped is not None:
        tok = _load_tokenizer(shipped)
    else:
        from minillama.tokenizer import train_bpe

        print(f"training a {vocab_size}-id BPE tokenizer on {len(docs)} documents ...", file=sys.stderr)
        tok = train_bpe([d.text for d in docs], vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.model"))
    meta = build_shards(docs, tok, folder, val_fraction=0.05, seed=seed, extra_meta={"source": source})
    return folder, meta, tok


def _shipped_tokenizer() -> Path | None:
    from minillama.assets import assets_dir

    path = assets_dir() / SHIPPED / "tokenizer.model"
    return path if path.is_file() else None


def _load_tokenizer(path):
    from minillama.tokenizer import BPETokenizer

    return BPETokenizer.load(str(path))


def sample_text(model: Transformer, tokenizer, prompt: str = "def", max_new_tokens: int = 48) -> str:
    """A greedy continuation of `prompt` (BOS + prompt), decoded."""
    from minillama.generate import generate

    was_training = model.training
    model.eval()
    ids = tokenizer.encode(prompt, bos=True, eos=False)
    new = generate(model, [ids], max_new_tokens, temperature=0.0, stop_tokens=(tokenizer.eos_id,))[0]
    model.reset_cache()
    model.train(was_training)
    return prompt + tokenizer.decode(new)


def main(argv: list[str] | None = None) -> int:
    from minillama.model.config import ModelArgs
    from minillama.data.shards import ShardLoader
    from minillama.utils import set_threads

    parser = _parser()
    args = parser.parse_args(argv)
    cpu_presets = ("tiny", "small", "base")
    if args.preset not in cpu_presets:
        parser.error(f"--preset {args.preset!r}: pre-training on a CPU takes one of {', '.join(cpu_presets)} "
                     "(the herd's presets are for chapter 00's meta-device counts, not for training here)")
    if args.minutes <= 0 or (args.steps is not None and args.steps < 1):
        parser.error("--minutes must be > 0 and --steps >= 1")
    threads = set_threads(args.threads)
    out = Path(args.out or f"runs/{args.preset}")
    ckpt = out / CHECKPOINT
    if args.resume and not (ckpt / TRAINER_STATE).is_file():
        print(f"minillama pretrain: nothing to resume in {out} (no {ckpt / TRAINER_STATE}); run without --resume",
              file=sys.stderr)
        return 2
    if not args.resume and (ckpt / TRAINER_STATE).is_file():
        print(f"minillama pretrain: {out} already holds a run; pass --resume to continue it or --out for a new one",
              file=sys.stderr)
        return 2

    if args.resume:
        state = read_trainer_state(ckpt)
        m = state["meta"]
        data_folder, tok = Path(m["data_folder"]), None
        tok_file = ckpt / "tokenizer.model"
        tok = _load_tokenizer(tok_file) if tok_file.is_file() else None
        cfg = TrainConfig.from_dict(state["train_config"])
        from minillama.data.shards import read_meta
        meta = read_meta(data_folder)
    else:
        args_model = ModelArgs.from_preset(args.preset)
        data_folder, meta, tok = prepare_data(args.data, out, args.tokenizer, args_model.vocab_size,
                                              args.limit_mb, args.seed)
    seq_len = args.seq_len if not args.resume else cfg.seq_len
    loader = ShardLoader(data_folder, seq_len, "train", seed=args.seed if not args.resume else cfg.seed)
    val_loader = ShardLoader(data_folder, seq_len, "val", shuffle=False)
    val_batches = fixed_batches(val_loader, rows=16, max_batches=4)

    if args.resume:
        trainer = Trainer.resume(ckpt, loader, val_batches=val_batches, out_dir=out)
        cfg = trainer.cfg
        print(f"resuming {out} at step {trainer.step}/{cfg.max_steps} ({trainer.tokens_seen:,} tokens seen)")
        if trainer.step >= cfg.max_steps:
            print(f"minillama pretrain: this run already finished its {cfg.max_steps}-step schedule; --resume only "
                  "completes an interrupted run (its schedule is fixed). For more training, start a new run with a "
                  "longer --minutes or --steps and another --out.", file=sys.stderr)
    else:
        overrides = {k: v for k, v in (("dim", args.dim), ("n_layers", args.n_layers), ("n_heads", args.n_heads),
                                       ("n_kv_heads", args.n_kv_heads)) if v is not None}
        margs = ModelArgs.from_preset(args.preset, vocab_size=meta["vocab_size"], **overrides,
                                      max_seq_len=max(ModelArgs.from_preset(args.preset).max_seq_len, seq_len))
        model = Transformer(margs).init_weights(std=0.02, seed=args.seed)
        ramp = () if args.no_ramp else None
        cfg = TrainConfig(max_steps=10, lr=args.lr, min_lr=args.min_lr if args.min_lr is not None else args.lr / 10,
                          warmup_steps=0, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
                          batch_size=args.batch_size, micro_batch_size=args.micro_batch_size, seq_len=seq_len,
                          bf16=args.precision == "bf16" or (args.precision == "auto" and cpu_has_native_bf16()),
                          seed=args.seed)
        if args.steps is not None:
            steps = args.steps
            total_tokens = steps * args.batch_size * seq_len
            if ramp is None:
                ramp = default_ramp(args.batch_size, seq_len, total_tokens)
        else:  # plan the schedule from the measured speed of this machine
            tok_s = measure_tokens_per_s(model, cfg, loader)
            total_tokens = int(0.93 * args.minutes * 60 * tok_s)
            if ramp is None:
                ramp = default_ramp(args.batch_size, seq_len, total_tokens)
            steps = max(1, steps_for_tokens(total_tokens, ramp or ((0, args.batch_size),), seq_len))
            print(f"measured {tok_s:,.0f} tokens/s on {threads} thread(s): {args.minutes:g} min ≈ "
                  f"{total_tokens:,} tokens ≈ {steps} steps")
        warmup = args.warmup if args.warmup is not None else min(200, max(5, steps // 20))
        cfg = dataclasses.replace(
            cfg, max_steps=steps, warmup_steps=min(warmup, steps), batch_ramp=ramp or (),
            eval_every=args.eval_every if args.eval_every is not None else max(10, steps // 15),
            ckpt_every=args.ckpt_every if args.ckpt_every is not None else max(10, steps // 10),
            time_limit_s=args.minutes * 60 * 1.15 if args.steps is None else None)
        extra = {"tokenizer.model": (Path(data_folder) / "tokenizer.model").read_bytes()} \
            if (Path(data_folder) / "tokenizer.model").is_file() else {}
        trainer = Trainer(model, loader, cfg, val_batches=val_batches, out_dir=out, extra_files=extra,
                          meta={"data_folder": str(Path(data_folder).resolve()), "preset": args.preset,
                                "data": args.data, "unigram_entropy": meta.get("unigram_entropy")})
        n = model.num_params()
        print(f"precision: {'bf16 autocast' if cfg.bf16 else 'fp32'}; batch ramp (tokens seen, rows): {cfg.ramp}")
        print(f"model {args.preset}{' ' + str(overrides) if overrides else ''}: {n:,} parameters ({model.num_params(exclude_embeddings=True):,} without the "
              f"embedding); train {meta['splits']['train']['tokens']:,} tokens, val "
              f"{meta['splits']['val']['tokens']:,}; unigram entropy {meta.get('unigram_entropy', float('nan')):.3f} "
              f"nats/token")
        if tok is not None:
            print(f"sample before training: {sample_text(model, tok, args.prompt, 32)!r}")
    if (Path(data_folder) / "tokenizer.model").is_file() and not trainer.extra_files:
        trainer.extra_files["tokenizer.model"] = (Path(data_folder) / "tokenizer.model").read_bytes()
    clock = {}
    if not args.resume and args.steps is None:
        trainer.callbacks.append(replan_at_warmup_end(args.minutes * 60 * 0.93, clock))
    if args.sample_every and tok is not None:
        def show(tr, record):
            if tr.step % args.sample_every == 0:
                print(f"\n[step {tr.step}] {sample_text(tr.model, tok, args.prompt, 48)!r}", flush=True)
        trainer.callbacks.append(show)
    clock["start"] = time.perf_counter()
    trainer.fit()
    last_val = trainer.val_history[-1]["val_loss"] if trainer.val_history else float("nan")
    cfg = trainer.cfg
    print(f"done: step {trainer.step}/{cfg.max_steps}, {trainer.tokens_seen:,} tokens in {trainer.wall_s / 60:.1f} "
          f"min of training ({trainer.tokens_per_s:,.0f} tokens/s); validation loss {last_val:.3f} nats/token vs "
          f"unigram entropy {meta.get('unigram_entropy', float('nan')):.3f}")
    if tok is not None:
        print(f"sample after training: {sample_text(trainer.model, tok, args.prompt, 64)!r}")
    print(f"checkpoint: {ckpt}   loss plot: {out / LOSS_PLOT}")
    print(f"sample from it: minillama generate --checkpoint {ckpt} --prompt {args.prompt!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
