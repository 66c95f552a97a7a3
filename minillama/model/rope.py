"""Rotary position embeddings (RoPE) with theta 500,000 and the Llama 3.1 frequency scaling.

RoPE rotates each pair of channels (x[2i], x[2i+1]) of a query or key by the angle `pos · f_i`, with inverse
frequencies `f_i = theta^(-2i/head_dim)`. Meta's reference rotates *interleaved pairs*; Hugging Face rotates the
two *halves* (x[i], x[i + d/2]) and permutes the rows of `wq`/`wk` in its checkpoints to compensate
(see `minillama.checkpoint`):

    Meta (interleaved):  (x0 x1) (x2 x3) (x4 x5) (x6 x7)
    HF   (halves):       (x0 x4) (x1 x5) (x2 x6) (x3 x7)

Llama 3.1 scaling (paper §3.4.2; Meta's `apply_scaling`) keeps short wavelengths, stretches long ones by `factor`,
and blends between.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from minillama.model.config import ModelArgs, RopeScaling


def rope_frequencies(head_dim: int, theta: float = 500000.0) -> Tensor:
    """Inverse frequencies `theta^(-2i/head_dim)` for i in [0, head_dim/2), float64 for exactness: (head_dim/2,)."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def apply_rope_scaling(freqs: Tensor, scaling: RopeScaling) -> Tensor:
    """Llama 3.1 scaling of inverse frequencies. Shape (head_dim/2,) in, same out.

    wavelength < L/high_freq_factor: kept; wavelength > L/low_freq_factor: divided by factor;
    in between (both ends closed): `(1 - a)·f/factor + a·f` with `a = (L/wavelength - low)/(high - low)`.
    """
    L, s = scaling.original_max_seq_len, scaling.factor
    lo, hi = scaling.low_freq_factor, scaling.high_freq_factor
    wavelen = 2 * math.pi / freqs
    a = (L / wavelen - lo) / (hi - lo)
    smoothed = (1 - a) * freqs / s + a * freqs
    out = torch.where(wavelen > L / lo, freqs / s, smoothed)
    return torch.where(wavelen < L / hi, freqs, out)


def precompute_freqs_cis(args: ModelArgs, seq_len: int | None = None) -> Tensor:
    """The rotation for every position as (cos, sin) pairs. Shape (seq_len, head_dim/2, 2), float32.

    Meta's reference stores complex numbers; a real (cos, sin) table keeps the model in plain float tensors
    (complex numbers do not survive bf16 autocast or `torch.compile` well on CPU) and gives the same values.
    """
    seq_len = seq_len or 2 * args.max_seq_len
    freqs = rope_frequencies(args.head_dim, args.rope_theta)
    if args.use_scaled_rope:
        freqs = apply_rope_scaling(freqs, args.rope_scaling)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), freqs)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """Rotate interleaved channel pairs of `x` (batch, seq, heads, head_dim) by `freqs_cis` (seq, head_dim/2, 2)."""
    pairs = rearrange(x.float(), "b s h (d two) -> b s h d two", two=2)
    x0, x1 = pairs.unbind(-1)
    cos, sin = rearrange(freqs_cis, "s d two -> two s 1 d")
    rotated = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return rearrange(rotated, "b s h d two -> b s h (d two)").type_as(x)
