"""Reference answers for exercises/ch06_pretraining.py (paper §3.4.1): the learning-rate schedule, the batch-size
ramp, packing documents with boundaries, next-token rows, the AdamW step and global-norm clipping.

Each is the function `minillama.train` / `minillama.data.shards` use (thin wrappers where names differ).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from minillama.data.shards import inputs_and_targets as _inputs_and_targets
from minillama.data.shards import pack_documents as _pack_documents
from minillama.train import adamw_step  # noqa: F401  (the exercise's signature exactly: the package function)
from minillama.train import batch_rows_at as _batch_rows_at
from minillama.train import clip_grad_norm as _clip_grad_norm
from minillama.train import lr_schedule as _lr_schedule

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.train", "minillama.data.shards")


def lr_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warmup ``max_lr·(step+1)/warmup_steps`` for ``step < warmup_steps``, then cosine from max_lr to
    min_lr over ``max_steps - warmup_steps`` steps, then min_lr."""
    return _lr_schedule(step, max_lr, min_lr, warmup_steps, max_steps, "cosine")


def batch_rows_at(tokens_seen: int, ramp: Sequence[tuple[int, int]]) -> int:
    """Rows per step: those of the last (threshold, rows) pair whose threshold <= tokens_seen."""
    return _batch_rows_at(tokens_seen, ramp)


def pack_documents(docs_tokens: Sequence[Sequence[int]], bos_id: int, eos_id: int) -> np.ndarray:
    """One uint32 stream: [bos] doc [eos] [bos] doc [eos] ..."""
    return _pack_documents(docs_tokens, bos_id, eos_id)


def inputs_and_targets(stream: np.ndarray, starts: Sequence[int], seq_len: int) -> tuple[Tensor, Tensor]:
    """int64 (rows, seq_len) inputs and the targets shifted by one, from windows of seq_len + 1 tokens."""
    return _inputs_and_targets(stream, starts, seq_len)


def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> tuple[list[Tensor], float]:
    """Scale all gradients together so their global L2 norm is at most max_norm; returns (grads, norm before)."""
    return _clip_grad_norm(grads, max_norm)
