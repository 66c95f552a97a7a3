"""Common mistakes for the chapter 03 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import math

import torch
from einops import rearrange

from minillama.grading.reference import ch03_rope as ref


def _freqs(head_dim, theta=500000.0, how=""):
    if how == "i-over-d":
        return 1.0 / theta ** (torch.arange(0, head_dim // 2, dtype=torch.float64) / head_dim)
    return 1.0 / 10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # ignores theta


def _scaling(freqs, factor=8.0, low=1.0, high=4.0, L=8192, how=""):
    if how == "hardcoded-llama31":
        factor, low, high, L = 8.0, 1.0, 4.0, 8192
    wavelen = 2 * math.pi / freqs
    a = (L / wavelen - low) / (high - low)
    slow = freqs * factor if how == "multiplies" else freqs / factor
    smooth = a * freqs / factor + (1 - a) * freqs if how == "smooth-reversed" else (1 - a) * freqs / factor + a * freqs
    if how == "bands-swapped":
        out = torch.where(wavelen < L / high, freqs / factor, smooth)
        return torch.where(wavelen > L / low, freqs, out)
    out = torch.where(wavelen > L / low, slow, smooth)
    return torch.where(wavelen < L / high, freqs, out)


def _table(args, seq_len=None, how=""):
    seq_len = seq_len or 2 * args.max_seq_len
    freqs = ref.rope_frequencies(args.head_dim, args.rope_theta)
    if args.use_scaled_rope and how != "no-scaling":
        s = args.rope_scaling
        freqs = ref.apply_rope_scaling(freqs, s.factor, s.low_freq_factor, s.high_freq_factor, s.original_max_seq_len)
    start = 1 if how == "positions-from-1" else 0
    angles = torch.outer(torch.arange(start, start + seq_len, dtype=torch.float64), freqs)
    parts = [angles.sin(), angles.cos()] if how == "sin-cos-swapped" else [angles.cos(), angles.sin()]
    return torch.stack(parts, dim=-1).float()


def _rotate(x, freqs_cis, how=""):
    if how == "halves":
        x0, x1 = x.float().chunk(2, dim=-1)
    else:
        x0, x1 = rearrange(x.float(), "b s h (d two) -> b s h d two", two=2).unbind(-1)
    cos, sin = rearrange(freqs_cis, "s d two -> two s 1 d")
    if how == "wrong-direction":
        sin = -sin
    a, b = x0 * cos - x1 * sin, x0 * sin + x1 * cos
    if how == "halves":
        return torch.cat([a, b], dim=-1).type_as(x)
    return rearrange(torch.stack([a, b], dim=-1), "b s h d two -> b s h (d two)").type_as(x)


MUTANTS = {
    # exponent i/d with i = 0..d/2-1 instead of 2i/d
    "freqs-i-over-d": {"rope_frequencies": lambda d, theta=500000.0: _freqs(d, theta, "i-over-d")},
    # hard-codes the Llama 2 base 10,000 instead of using theta
    "freqs-ignore-theta": {"rope_frequencies": lambda d, theta=500000.0: _freqs(d, theta, "ignore-theta")},
    # long wavelengths multiplied by the factor instead of divided
    "scaling-multiplies": {"apply_rope_scaling": lambda f, *a: _scaling(f, *a, how="multiplies")},
    # the high-frequency band divided and the low-frequency band kept
    "scaling-bands-swapped": {"apply_rope_scaling": lambda f, *a: _scaling(f, *a, how="bands-swapped")},
    # a and 1 - a swapped in the smooth band
    "scaling-smooth-reversed": {"apply_rope_scaling": lambda f, *a: _scaling(f, *a, how="smooth-reversed")},
    # Meta's hard-coded 3.1 constants (factor 8, L 8192): wrong for Llama 3.2 1B/3B (factor 32)
    "scaling-hardcoded-llama31": {"apply_rope_scaling": lambda f, *a: _scaling(f, *a, how="hardcoded-llama31")},
    # forgets the 3.1 scaling when args.use_scaled_rope is set
    "table-no-scaling": {"precompute_freqs_cis": lambda args, seq_len=None: _table(args, seq_len, "no-scaling")},
    # positions counted from 1
    "table-positions-from-1": {
        "precompute_freqs_cis": lambda args, seq_len=None: _table(args, seq_len, "positions-from-1")
    },
    # (sin, cos) instead of (cos, sin)
    "table-sin-cos-swapped": {
        "precompute_freqs_cis": lambda args, seq_len=None: _table(args, seq_len, "sin-cos-swapped")
    },
    # rotates the two halves (HF layout) instead of interleaved pairs (Meta layout)
    "rope-halves-not-pairs": {"apply_rotary_emb": lambda x, t: _rotate(x, t, "halves")},
    # sin sign flipped: rotates by -pos·f
    "rope-wrong-direction": {"apply_rotary_emb": lambda x, t: _rotate(x, t, "wrong-direction")},
}
