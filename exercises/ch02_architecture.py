"""Chapter 02 exercises: the pieces of the Llama 3 decoder (paper §3.2).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch02

or run the last cell of notebooks/02_architecture.ipynb. Shapes: b batch, s queries, t keys, d model dim,
f FFN hidden size, h query heads, kv key/value heads, e head_dim. Use torch and einops; do not import
`minillama.model` (that is the answer key).
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: F401  (F.silu, F.softmax are allowed)
from einops import rearrange, repeat  # noqa: F401
from torch import Tensor


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · weight`. x (..., d), weight (d,) -> (..., d).

    Computed in float32 and returned in x's dtype (before multiplying by the weight), as Meta's reference does.
    """
    # Hints: the mean is over the last dimension only (keepdim=True so it broadcasts back);
    # eps goes *inside* the square root (torch.rsqrt(ms + eps) or 1 / torch.sqrt(ms + eps));
    # RMSNorm does not subtract the mean (that would be LayerNorm).
    raise NotImplementedError("Exercise 2.1: rms_norm")


def ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """Meta's SwiGLU hidden size: `int(2·4·dim/3)`, times the multiplier (if any, then `int`), rounded *up* to a
    multiple of `multiple_of`. Llama 3.1-8B: dim 4096, multiplier 1.3, multiple_of 1024 -> 14336."""
    # Hints: SwiGLU has three matrices instead of two, so 2/3 of the usual 4·dim keeps the parameter count;
    # apply int() after each step, and round up with math.ceil (or -(-h // multiple_of)).
    raise NotImplementedError("Exercise 2.2: ffn_hidden_dim")


def feed_forward(x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor) -> Tensor:
    """SwiGLU feed-forward `w2(silu(w1 x) · w3 x)`. x (..., d); w1, w3 (f, d) and w2 (d, f) are `nn.Linear`
    weights (out_features, in_features). -> (..., d)."""
    # Hints: F.linear(x, w) computes x @ w.T; silu(z) = z · sigmoid(z), applied to the gate w1 x only.
    raise NotImplementedError("Exercise 2.3: feed_forward")


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head `n_rep` times for grouped-query attention: (b, t, k, e) -> (b, t, k·n_rep, e).

    Query head j reads key/value head j // n_rep, so the copies of one head must sit next to each other:
    heads [A, B] with n_rep 2 become [A, A, B, B] (not [A, B, A, B]).
    """
    # Hints: einops.repeat(x, "b t k e -> b t (k r) e", r=n_rep), or torch.repeat_interleave on dim 2.
    # Tensor.repeat tiles the whole axis ([A, B, A, B]): wrong here.
    raise NotImplementedError("Exercise 2.4: repeat_kv")


def gqa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with grouped key/value heads.

    q (b, s, h, e); k, v (b, t, kv, e) with h a multiple of kv; mask: bool (s, t), True where query i may attend
    to key j, or None to attend everywhere. softmax(q·kᵀ/√e) · v per head, query head j using key/value head
    j // (h/kv). -> (b, s, h, e).
    """
    # Hints: repeat K and V to h heads (your repeat_kv), move heads before positions,
    # scores = q @ kᵀ / sqrt(e) with shape (b, h, s, t), set scores to -inf where mask is False,
    # softmax over the *key* axis (the last one), multiply by v, move heads back.
    raise NotImplementedError("Exercise 2.5: gqa_attention")


def causal_mask(seq_len: int, start_pos: int, device=None) -> Tensor:
    """Boolean mask (seq_len, start_pos + seq_len) for `seq_len` new queries after `start_pos` cached positions:
    True where query i (at absolute position start_pos + i) may attend to key j, i.e. j <= start_pos + i."""
    # Hints: compare absolute positions: queries are at start_pos..start_pos+seq_len-1, keys at
    # 0..start_pos+seq_len-1. A token may attend to itself.
    raise NotImplementedError("Exercise 2.6: causal_mask")
