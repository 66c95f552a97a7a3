"""Chapter 06 exercises: pre-training on a CPU (paper §3.4.1).

Fill in each function, then grade your work with

    python -m minillama.grade ch06

(or run the last cell of notebooks/06_pretraining.ipynb). Each test compares your function with an outside
reference: torch's LR schedulers, `torch.optim.AdamW`, `torch.nn.utils.clip_grad_norm_`, or the formula written out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def lr_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warmup, then cosine decay to a floor.

    * ``step < warmup_steps``: ``max_lr · (step + 1) / warmup_steps`` (the first step already moves);
    * then, with ``progress = (step - warmup_steps) / (max_steps - warmup_steps)`` clipped to at most 1:
      ``min_lr + (max_lr - min_lr) · (1 + cos(π · progress)) / 2``;
    * so ``min_lr`` from ``max_steps`` on. (405B: 8e-5 peak, 8,000 warmup steps, cosine to 8e-7 over 1.2M steps.)
    """
    # Hint: three cases; math.cos and math.pi. Progress must start at 0 right after warmup, not at step 0.
    raise NotImplementedError("Exercise 06.1: the warmup + cosine learning-rate schedule")


def batch_rows_at(tokens_seen: int, ramp: Sequence[tuple[int, int]]) -> int:
    """Rows per optimizer step after `tokens_seen` tokens, for a ramp of ``(threshold, rows)`` pairs in increasing
    threshold order starting at 0: the rows of the *last* pair with ``threshold <= tokens_seen``.

    ``batch_rows_at(300, ((0, 4), (100, 8), (1000, 16))) == 8``. (405B: 4M tokens per step, 8M after 252M tokens,
    16M after 2.87T.)
    """
    # Hint: walk the pairs and keep the last one whose threshold has been reached.
    raise NotImplementedError("Exercise 06.2: the batch-size ramp")


def pack_documents(docs_tokens: Sequence[Sequence[int]], bos_id: int, eos_id: int) -> np.ndarray:
    """Pack tokenized documents into one flat ``uint32`` stream, each document as ``[bos_id] + tokens + [eos_id]``:

        [BOS] doc 1 ... [EOS] [BOS] doc 2 ... [EOS] ...

    Every document, including the first and the last (and an empty one), gets both markers.
    """
    # Hint: build a list (or a list of arrays) and convert once with np.asarray(..., dtype=np.uint32).
    raise NotImplementedError("Exercise 06.3: packing documents with boundaries")


def inputs_and_targets(stream: np.ndarray, starts: Sequence[int], seq_len: int) -> tuple[Tensor, Tensor]:
    """Rows for next-token prediction from a packed stream.

    Row r uses the ``seq_len + 1`` tokens ``stream[starts[r] : starts[r] + seq_len + 1]``: the inputs are its first
    `seq_len` tokens and the targets its last `seq_len` (``targets[r, t]`` is the token that follows
    ``inputs[r, t]``). Returns two int64 tensors of shape ``(len(starts), seq_len)``.
    """
    # Hint: one window of seq_len + 1 tokens gives both tensors: window[:-1] and window[1:].
    raise NotImplementedError("Exercise 06.4: inputs and shifted targets")


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
    """One AdamW update; `step` counts from 1. Returns the new ``(param, exp_avg, exp_avg_sq)``.

    1. decoupled weight decay: ``param ← param · (1 − lr · weight_decay)`` (not added to the gradient);
    2. moments: ``m ← β1·m + (1 − β1)·g`` and ``v ← β2·v + (1 − β2)·g²``;
    3. bias correction: ``m̂ = m / (1 − β1^step)``, ``v̂ = v / (1 − β2^step)``;
    4. ``param ← param − lr · m̂ / (sqrt(v̂) + eps)``.
    """
    # Hint: four lines of tensor arithmetic; do not modify the inputs in place, return new tensors.
    raise NotImplementedError("Exercise 06.5: the AdamW step")


@torch.no_grad()
def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], float]:
    """Clip gradients by their *global* L2 norm (all tensors together, as one long vector).

    ``total = sqrt(Σ_tensors ‖g‖²)``; every gradient is multiplied by ``min(1, max_norm / (total + 1e-6))``.
    Returns ``(clipped gradients, total as a float)``.
    """
    # Hint: torch.linalg.vector_norm of each tensor, then of the stacked norms.
    raise NotImplementedError("Exercise 06.6: gradient clipping by global norm")
