"""Reference answers for exercises/ch03_rope.py: `minillama.model.rope`, with the 3.1 scaling taking plain numbers.

Paper: §3.2 (RoPE, θ = 500,000) and §3.4.2 (long context).
"""

from __future__ import annotations

from torch import Tensor

from minillama.model.config import ModelArgs, RopeScaling
from minillama.model.rope import apply_rope_scaling as _apply_rope_scaling
from minillama.model.rope import apply_rotary_emb as _apply_rotary_emb
from minillama.model.rope import precompute_freqs_cis as _precompute_freqs_cis
from minillama.model.rope import rope_frequencies as _rope_frequencies

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = (
    "minillama.model.rope:rope_frequencies",
    "minillama.model.rope:apply_rope_scaling",
    "minillama.model.rope:precompute_freqs_cis",
    "minillama.model.rope:apply_rotary_emb",
)


def rope_frequencies(head_dim: int, theta: float = 500000.0) -> Tensor:
    """Inverse frequencies `f_i = theta^(-2i/head_dim)` for i = 0 .. head_dim/2 - 1. -> (head_dim/2,), float64."""
    return _rope_frequencies(head_dim, theta)


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
    return _apply_rope_scaling(
        freqs,
        RopeScaling(
            factor=factor,
            low_freq_factor=low_freq_factor,
            high_freq_factor=high_freq_factor,
            original_max_seq_len=original_max_seq_len,
        ),
    )


def precompute_freqs_cis(args: ModelArgs, seq_len: int | None = None) -> Tensor:
    """The rotation table for positions 0 .. seq_len-1 (default 2·args.max_seq_len): angle `pos · f_i` with the
    frequencies of `args` (scaled when `args.use_scaled_rope`), stored as (cos, sin). -> (seq_len, head_dim/2, 2),
    float32."""
    return _precompute_freqs_cis(args, seq_len)


def apply_rotary_emb(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """Rotate each interleaved channel pair (x[2i], x[2i+1]) of x (b, s, h, e) by the angle whose (cos, sin) is
    freqs_cis[pos, i] (freqs_cis: (s, e/2, 2)): (x0, x1) -> (x0·cos − x1·sin, x0·sin + x1·cos). Same dtype out."""
    return _apply_rotary_emb(x, freqs_cis)
