"""Common mistakes for the chapter 02 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange


def _rms(x, weight, eps, how):
    x32 = x.float()
    if how == "eps-outside":
        out = x32 / (x32.pow(2).mean(-1, keepdim=True).sqrt() + eps)
    elif how == "no-eps":
        out = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True))
    elif how == "layernorm":
        c = x32 - x32.mean(-1, keepdim=True)
        out = c * torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + eps)
    elif how == "mean-over-all":
        out = x32 * torch.rsqrt(x32.pow(2).mean() + eps)
    elif how == "no-weight":
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)
    return out.type_as(x) * weight


def _ffn_dim(dim, multiple_of, mult, how):
    h = int(2 * 4 * dim / 3) if how != "no-two-thirds" else 4 * dim
    if how == "multiplier-after-rounding":
        h = multiple_of * math.ceil(h / multiple_of)
        return int(mult * h) if mult is not None else h
    if mult is not None:
        h = int(mult * h)
    if how == "round-down":
        return multiple_of * (h // multiple_of)
    return multiple_of * math.ceil(h / multiple_of)


def _ffn(x, w1, w2, w3, how):
    a, b = F.linear(x, w1), F.linear(x, w3)
    gate = {"relu": F.relu(a), "sigmoid": torch.sigmoid(a), "gate-on-up": F.silu(b)}[how]
    return F.linear(gate * (a if how == "gate-on-up" else b), w2)


def _tile_kv(x, n_rep):
    return x.repeat(1, 1, n_rep, 1)


def _attention(q, k, v, mask=None, how=""):
    r = q.shape[2] // k.shape[2]
    if how == "repeat-not-interleave":
        k, v = _tile_kv(k, r), _tile_kv(v, r)
    else:
        k, v = k.repeat_interleave(r, dim=2), v.repeat_interleave(r, dim=2)
    q, k, v = (rearrange(t, "b s h e -> b h s e") for t in (q, k, v))
    scale = 1 / q.shape[-1] if how == "scale-by-e" else 1 / math.sqrt(q.shape[-1])
    scores = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if how == "mask-inverted" else ~mask, float("-inf"))
    weights = scores.softmax(dim=-2 if how == "softmax-over-queries" else -1)
    return rearrange(weights @ v, "b h s e -> b s h e")


def _mask(seq_len, start_pos, device=None, how=""):
    if how == "ignores-offset":
        return torch.ones(seq_len, start_pos + seq_len, dtype=torch.bool, device=device).tril()
    if how == "square":
        return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    q = torch.arange(start_pos, start_pos + seq_len, device=device)[:, None]
    k = torch.arange(start_pos + seq_len, device=device)[None, :]
    return k < q  # "strict": a token may not see itself


MUTANTS = {
    # eps added after the square root: x / (sqrt(mean x²) + eps)
    "rms-eps-outside-sqrt": {"rms_norm": lambda x, w, eps=1e-5: _rms(x, w, eps, "eps-outside")},
    # eps forgotten: NaN on an all-zero row, too large on tiny inputs
    "rms-no-eps": {"rms_norm": lambda x, w, eps=1e-5: _rms(x, w, eps, "no-eps")},
    # subtracts the mean first (LayerNorm without bias)
    "rms-is-layernorm": {"rms_norm": lambda x, w, eps=1e-5: _rms(x, w, eps, "layernorm")},
    # mean of x² over the whole tensor instead of the last dimension
    "rms-mean-over-all": {"rms_norm": lambda x, w, eps=1e-5: _rms(x, w, eps, "mean-over-all")},
    # forgets to multiply by the learned weight
    "rms-no-weight": {"rms_norm": lambda x, w, eps=1e-5: _rms(x, w, eps, "no-weight")},
    # rounds down to the multiple instead of up
    "ffn-dim-round-down": {"ffn_hidden_dim": lambda d, m, f: _ffn_dim(d, m, f, "round-down")},
    # keeps the plain 4·dim (no 2/3 for SwiGLU)
    "ffn-dim-no-two-thirds": {"ffn_hidden_dim": lambda d, m, f: _ffn_dim(d, m, f, "no-two-thirds")},
    # applies the multiplier after rounding
    "ffn-dim-multiplier-after-rounding": {
        "ffn_hidden_dim": lambda d, m, f: _ffn_dim(d, m, f, "multiplier-after-rounding")
    },
    # relu instead of silu in the gate
    "ffn-relu-not-silu": {"feed_forward": lambda x, w1, w2, w3: _ffn(x, w1, w2, w3, "relu")},
    # sigmoid(w1 x) instead of silu(w1 x) = w1 x · sigmoid(w1 x)
    "ffn-sigmoid-not-silu": {"feed_forward": lambda x, w1, w2, w3: _ffn(x, w1, w2, w3, "sigmoid")},
    # the activation on the up projection w3 instead of the gate w1
    "ffn-gate-on-up": {"feed_forward": lambda x, w1, w2, w3: _ffn(x, w1, w2, w3, "gate-on-up")},
    # Tensor.repeat tiles heads [A, B, A, B] instead of [A, A, B, B]
    "repeat-not-repeat-interleave": {"repeat_kv": _tile_kv},
    # the same mistake inside attention
    "gqa-repeat-not-interleave": {
        "gqa_attention": lambda q, k, v, mask=None: _attention(q, k, v, mask, "repeat-not-interleave")
    },
    # scores divided by e instead of sqrt(e)
    "gqa-scale-by-head-dim": {"gqa_attention": lambda q, k, v, mask=None: _attention(q, k, v, mask, "scale-by-e")},
    # softmax over the query axis
    "gqa-softmax-over-queries": {
        "gqa_attention": lambda q, k, v, mask=None: _attention(q, k, v, mask, "softmax-over-queries")
    },
    # treats True in the mask as "blocked"
    "gqa-mask-inverted": {"gqa_attention": lambda q, k, v, mask=None: _attention(q, k, v, mask, "mask-inverted")},
    # tril without the cache offset: new queries cannot see most cached keys
    "mask-ignores-cache-offset": {"causal_mask": lambda s, p, device=None: _mask(s, p, device, "ignores-offset")},
    # strict inequality: a token cannot attend to itself (off by one)
    "mask-excludes-diagonal": {"causal_mask": lambda s, p, device=None: _mask(s, p, device, "strict")},
    # (s, s) mask that forgets the cached keys
    "mask-square": {"causal_mask": lambda s, p, device=None: _mask(s, p, device, "square")},
}
