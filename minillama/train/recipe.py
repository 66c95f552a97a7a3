"""The pre-training recipe of the paper (paper §3.4.1) as pure functions and one config, scaled down to a CPU:

* **AdamW** with decoupled weight decay (the decay shrinks weights directly, it is not added to the gradient), on
  matrices only; norms are not decayed.
* **Learning rate**: linear warmup, then cosine decay to a floor (405B: peak 8e-5, 8,000 warmup steps, cosine to
  8e-7 over 1.2M steps); `schedule="linear"` goes linearly to zero instead, as the final annealing does (paper §3.4.3).
* **Batch-size ramp**: the 405B run started at 4M tokens per step and doubled to 8M after 252M tokens and to 16M
  after 2.87T: small batches early are stable and cheap, big batches later are efficient. `batch_rows_at` says how
  many rows each step takes after how many tokens. Rows are processed `micro_batch_size` at a time with **gradient
  accumulation**, so a large batch fits in little memory.
* **Gradient clipping** by global norm, optional **bf16 autocast**, everything **seeded**.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PRETRAIN_DEFAULTS",
    "cpu_has_native_bf16",
    "lr_schedule",
    "batch_rows_at",
    "steps_for_tokens",
    "tokens_after_steps",
    "default_ramp",
    "adamw_step",
    "clip_grad_norm",
    "make_adamw",
    "lm_loss",
    "evaluate",
    "TrainConfig",
]


#: The default pre-training run (`minillama pretrain` with no flags), in one place for the command line and the
#: benchmarks: the `small` preset (vocab 8,192), 16 rows x 256 tokens per step, peak learning rate 2.5e-3 with a
#: constant batch (no ramp), precision bf16 autocast where `cpu_has_native_bf16()`, else fp32. Read-only.
#: Chosen from a sweep at a fixed budget of 3.6M tokens (README "How the default recipe was chosen"): a peak LR of
#: 2-3e-3 beat 1e-3 and 5e-3; the paper's batch ramp (a quarter of the batch first) made the 3e-3 run much worse
#: (1.62 vs 1.45 bits/byte) and gave nothing at 2e-3, so short CPU runs go without it (`--ramp` turns it on).
PRETRAIN_DEFAULTS = MappingProxyType(
    {"preset": "small", "seq_len": 256, "batch_size": 16, "lr": 2.5e-3, "batch_ramp": False}
)


def lr_schedule(
    step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int, schedule: str = "cosine"
) -> float:
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
def adamw_step(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    weight_decay: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
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
    m_hat = exp_avg / (1 - beta1**step)
    v_hat = exp_avg_sq / (1 - beta2**step)
    return param - lr * m_hat / (v_hat.sqrt() + eps), exp_avg, exp_avg_sq


@torch.no_grad()
def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], float]:
    """Scale all gradients by ``min(1, max_norm / (total_norm + 1e-6))``, where total_norm is the L2 norm of all of
    them together. Returns (clipped grads, total norm before clipping); what `torch.nn.utils.clip_grad_norm_` does."""
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    scale = min(1.0, max_norm / (total + 1e-6))
    return [g * scale for g in grads], total


def make_adamw(model: torch.nn.Module, cfg: TrainConfig) -> tuple[list[str], torch.optim.Optimizer]:
    """AdamW with weight decay on matrices (ndim >= 2), none on norms; fused where torch has a CPU kernel.
    Returns (parameter names in the optimizer's order, the optimizer)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    no_decay = [(n, p) for n, p in named if p.ndim < 2]
    groups = [
        {"params": [p for _, p in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for _, p in no_decay], "weight_decay": 0.0},
    ]
    kwargs = dict(lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    try:
        opt = torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):  # an older torch without a CPU fused AdamW
        opt = torch.optim.AdamW(groups, foreach=True, **kwargs)
    return [n for n, _ in decay + no_decay], opt


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


def cpu_has_native_bf16() -> bool:
    """True where the CPU has bfloat16 instructions (x86 AVX512-BF16 or AMX), so bf16 autocast is a speed-up
    (measured 1.6-1.7x over fp32 for the `small` preset on 2 cores with AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


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
                raise ValueError(
                    f"batch rows {rows} must be a positive multiple of micro_batch_size={micro}; "
                    f"change --batch-size/--micro-batch-size or the ramp"
                )

    def lr_at(self, step: int) -> float:
        return lr_schedule(step, self.lr, self.min_lr, self.warmup_steps, self.max_steps, self.schedule)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def steps_for_tokens(total_tokens: int, ramp: Sequence[tuple[int, int]], seq_len: int, start_tokens: int = 0) -> int:
    """Optimizer steps needed to go from `start_tokens` to `total_tokens` seen under a batch ramp."""
    steps, tokens = 0, start_tokens
    while tokens < total_tokens:
        tokens += batch_rows_at(tokens, ramp) * seq_len
        steps += 1
    return steps


def tokens_after_steps(steps: int, ramp: Sequence[tuple[int, int]], seq_len: int, start_tokens: int = 0) -> int:
    """Tokens seen after `steps` optimizer steps from `start_tokens` under a batch ramp (`steps_for_tokens`'s
    inverse): the progress bar counts these, so its ETA stays honest while the batch grows."""
    tokens = start_tokens
    for _ in range(steps):
        tokens += batch_rows_at(tokens, ramp) * seq_len
    return tokens


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
