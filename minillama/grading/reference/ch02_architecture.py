"""Reference answers for exercises/ch02_architecture.py: thin functional wrappers around `minillama.model`.

The package keeps these pieces as modules (`RMSNorm`, `FeedForward`, `Attention`); the exercises ask for plain
functions of tensors, so each answer here calls the package code with the given weights
(`torch.func.functional_call`) or, where the package has no separate function, is the one-liner it uses inline.

Paper: §3.2.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor
from torch.func import functional_call

from minillama.model import FeedForward, RMSNorm
from minillama.model import causal_mask as _causal_mask
from minillama.model.config import ffn_hidden_dim as _ffn_hidden_dim

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = (
    "minillama.model.model:RMSNorm",
    "minillama.model.model:FeedForward",
    "minillama.model.model:Attention",
    "minillama.model.model:causal_mask",
    "minillama.model.config:ffn_hidden_dim",
)


def rms_norm(x: Tensor, weight: Tensor, eps: float = 1e-5) -> Tensor:
    """RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · weight`. x (..., d), weight (d,) -> (..., d).

    Computed in float32 and returned in x's dtype (before multiplying by the weight), as Meta's reference does.
    """
    return functional_call(RMSNorm(x.shape[-1], eps), {"weight": weight}, (x,))


def ffn_hidden_dim(dim: int, multiple_of: int, ffn_dim_multiplier: float | None) -> int:
    """Meta's SwiGLU hidden size: `int(2·4·dim/3)`, times the multiplier (if any, then `int`), rounded *up* to a
    multiple of `multiple_of`. Llama 3.1-8B: dim 4096, multiplier 1.3, multiple_of 1024 -> 14336."""
    return _ffn_hidden_dim(dim, multiple_of, ffn_dim_multiplier)


def feed_forward(x: Tensor, w1: Tensor, w2: Tensor, w3: Tensor) -> Tensor:
    """SwiGLU feed-forward `w2(silu(w1 x) · w3 x)`. x (..., d); w1, w3 (f, d) and w2 (d, f) are `nn.Linear`
    weights (out_features, in_features). -> (..., d)."""
    ffn = FeedForward(w1.shape[1], w1.shape[0])
    return functional_call(ffn, {"w1.weight": w1, "w2.weight": w2, "w3.weight": w3}, (x,))


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head `n_rep` times for grouped-query attention: (b, t, k, e) -> (b, t, k·n_rep, e).

    Query head j reads key/value head j // n_rep, so the copies of one head must sit next to each other:
    heads [A, B] with n_rep 2 become [A, A, B, B] (not [A, B, A, B]).
    """
    return repeat(x, "b t k e -> b t (k r) e", r=n_rep)


def gqa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention with grouped key/value heads.

    q (b, s, h, e); k, v (b, t, kv, e) with h a multiple of kv; mask: bool (s, t), True where query i may attend
    to key j, or None to attend everywhere. softmax(q·kᵀ/√e) · v per head, query head j using key/value head
    j // (h/kv). -> (b, s, h, e).
    """
    q, k, v = (rearrange(t, "b s h e -> b h s e") for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])
    return rearrange(out, "b h s e -> b s h e")


def causal_mask(seq_len: int, start_pos: int, device=None) -> Tensor:
    """Boolean mask (seq_len, start_pos + seq_len) for `seq_len` new queries after `start_pos` cached positions:
    True where query i (at absolute position start_pos + i) may attend to key j, i.e. j <= start_pos + i."""
    return _causal_mask(seq_len, start_pos, device)
