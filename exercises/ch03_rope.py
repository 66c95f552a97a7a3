"""Chapter 03 exercises: rotary position embeddings and the Llama 3.1 frequency scaling (paper §3.2, §3.4.2).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch03

or run the last cell of notebooks/03_rope_and_long_context.ipynb. Do not import `minillama.model.rope` (the answer
key); `minillama.model.config.ModelArgs` is fine.
"""

from __future__ import annotations

import math  # noqa: F401

import torch  # noqa: F401
from einops import rearrange  # noqa: F401
from torch import Tensor

from minillama.model.config import ModelArgs


def rope_frequencies(head_dim: int, theta: float = 500000.0) -> Tensor:
    """Inverse frequencies `f_i = theta^(-2i/head_dim)` for i = 0 .. head_dim/2 - 1. -> (head_dim/2,), float64."""
    # Hints: torch.arange(0, head_dim, 2, dtype=torch.float64) gives the exponents 2i; f_0 = 1 (fastest),
    # the last one is close to 1/theta (slowest).
    raise NotImplementedError("Exercise 3.1: rope_frequencies")


def apply_rope_scaling(
    freqs: Tensor,
    factor: float = 8.0,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
    original_max_seq_len: int = 8192,
) -> Tensor:
    """Llama 3.1 frequency scaling, element-wise on inverse frequencies `freqs` (n,) -> (n,).

    With wavelength `λ = 2π/f` and L = original_max_seq_len:
    λ < L/high_freq_factor: kept; λ > L/low_freq_factor: divided by `factor`; in between (both ends included):
    `(1 - a)·f/factor + a·f` with `a = (L/λ - low_freq_factor)/(high_freq_factor - low_freq_factor)`.
    """
    # Hints: compute the wavelength of every frequency, then pick per element with torch.where.
    # Short wavelengths (high frequencies, local order) stay; long ones are slowed down by `factor`.
    # Use the arguments: Llama 3.2 1B/3B use factor 32, not 8.
    raise NotImplementedError("Exercise 3.2: apply_rope_scaling")


def precompute_freqs_cis(args: ModelArgs, seq_len: int | None = None) -> Tensor:
    """The rotation table for positions 0 .. seq_len-1 (default 2·args.max_seq_len): angle `pos · f_i` with the
    frequencies of `args` (scaled when `args.use_scaled_rope`), stored as (cos, sin). -> (seq_len, head_dim/2, 2),
    float32."""
    # Hints: frequencies from your rope_frequencies(args.head_dim, args.rope_theta), scaled with
    # args.rope_scaling's fields when args.use_scaled_rope; angles = torch.outer(positions, freqs);
    # torch.stack([angles.cos(), angles.sin()], dim=-1). Compute in float64, return float32.
    raise NotImplementedError("Exercise 3.3: precompute_freqs_cis")


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """Rotate each interleaved channel pair (x[2i], x[2i+1]) of x (b, s, h, e) by the angle whose (cos, sin) is
    freqs_cis[pos, i] (freqs_cis: (s, e/2, 2)): (x0, x1) -> (x0·cos − x1·sin, x0·sin + x1·cos). Same dtype out."""
    # Hints: rearrange(x, "b s h (d two) -> b s h d two", two=2) splits the pairs (Meta's layout;
    # Hugging Face rotates the two halves instead, which is a different function of the same weights).
    # cos and sin have shape (s, e/2): give them a heads axis to broadcast, (s, 1, e/2).
    raise NotImplementedError("Exercise 3.4: apply_rotary_emb")
