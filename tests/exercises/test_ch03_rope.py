"""Grading tests for exercises/ch03_rope.py (paper §3.2, §3.4.2): RoPE frequencies, the Llama 3.1 scaling,
the rotation table and the rotation itself.

Outside references: transformers' RoPE code (`LlamaRotaryEmbedding.compute_default_rope_parameters`,
`_compute_llama3_parameters`, `LlamaRotaryEmbedding`, `apply_rotary_pos_emb`), Meta's complex-number formulation
written out in the test, and the band numbers of Meta's `apply_scaling` (paper §3.4.2).
"""

import math

import pytest
import torch

from minillama.model.config import ModelArgs

CHAPTER = "ch03_rope"


def close(actual, expected, atol=1e-6, rtol=1e-5):
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol)


def hf_config(head_dim, theta, factor=None, low=1.0, high=4.0, original=8192, n_heads=2):
    from transformers import LlamaConfig

    rope = {"rope_type": "default", "rope_theta": theta}
    if factor is not None:
        rope = {
            "rope_type": "llama3",
            "rope_theta": theta,
            "factor": factor,
            "low_freq_factor": low,
            "high_freq_factor": high,
            "original_max_position_embeddings": original,
        }
    return LlamaConfig(
        hidden_size=head_dim * n_heads,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        head_dim=head_dim,
        rope_parameters=rope,
        max_position_embeddings=max(4 * original, 256),
    )


# ---------------------------------------------------------------------- 3.1 frequencies
@pytest.mark.points(2)
@pytest.mark.parametrize("head_dim, theta", [(128, 500000.0), (64, 10000.0)])
def test_rope_frequencies_match_transformers(impl, head_dim, theta):
    """theta^(-2i/head_dim), as transformers' default RoPE computes it (θ = 500,000 for Llama 3, 10,000 before)."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    expected, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(hf_config(head_dim, theta))
    out = impl.rope_frequencies(head_dim, theta)
    assert out.shape == (head_dim // 2,)
    close(out, expected)
    close(out, torch.tensor([theta ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64))


# ---------------------------------------------------------------------- 3.2 the 3.1 scaling
def freqs128():
    return torch.tensor([500000.0 ** (-2 * i / 128) for i in range(64)], dtype=torch.float64)


@pytest.mark.points(2)
def test_rope_scaling_llama31_matches_transformers(impl):
    """Llama 3.1 (factor 8, low 1, high 4, L 8192), head_dim 128: equals transformers' _compute_llama3_parameters."""
    from transformers.modeling_rope_utils import _compute_llama3_parameters

    expected, _ = _compute_llama3_parameters(hf_config(128, 500000.0, factor=8.0), "cpu")
    close(impl.apply_rope_scaling(freqs128(), 8.0, 1.0, 4.0, 8192), expected)


@pytest.mark.points(2)
def test_rope_scaling_bands_match_facts(impl):
    """The band numbers: 29 frequencies kept, 6 smoothed (f'/f = 0.828, 0.644, 0.494, 0.371, 0.271, 0.190), 29 / 8."""
    f = freqs128()
    ratio = (impl.apply_rope_scaling(f, 8.0, 1.0, 4.0, 8192) / f).tolist()
    assert all(abs(r - 1) < 1e-6 for r in ratio[:29]), "the 29 shortest wavelengths (< 2048) must be kept"
    assert [round(r, 3) for r in ratio[29:35]] == [0.828, 0.644, 0.494, 0.371, 0.271, 0.190]
    assert all(abs(r - 1 / 8) < 1e-6 for r in ratio[35:]), "the 29 longest wavelengths (> 8192) are divided by 8"


@pytest.mark.points(2)
@pytest.mark.parametrize(
    "factor, low, high, original, head_dim",
    [
        (32.0, 1.0, 4.0, 8192, 64),  # Llama 3.2 1B: factor 32 (FACTS.md §2, difference 1)
        (4.0, 2.0, 8.0, 64, 32),  # other parameters: every value must come from the arguments
    ],
)
def test_rope_scaling_reads_every_argument(impl, factor, low, high, original, head_dim):
    """Other factors, band edges and original context lengths, against transformers."""
    from transformers.modeling_rope_utils import _compute_llama3_parameters

    cfg = hf_config(head_dim, 500000.0, factor=factor, low=low, high=high, original=original)
    expected, _ = _compute_llama3_parameters(cfg, "cpu")
    freqs = torch.tensor([500000.0 ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64)
    close(impl.apply_rope_scaling(freqs, factor, low, high, original), expected)


# ---------------------------------------------------------------------- 3.3 the rotation table
def small_args(**kw):
    base = dict(
        dim=64,
        n_layers=1,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=32,
        multiple_of=16,
        max_seq_len=48,
        use_scaled_rope=True,
        rope_scaling=dict(factor=8.0, original_max_seq_len=32),
    )
    base.update(kw)
    return ModelArgs(**base)


def hf_cos_sin(args, positions):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    factor = args.rope_scaling.factor if args.use_scaled_rope else None
    cfg = hf_config(
        args.head_dim,
        args.rope_theta,
        factor=factor,
        low=args.rope_scaling.low_freq_factor,
        high=args.rope_scaling.high_freq_factor,
        original=args.rope_scaling.original_max_seq_len,
        n_heads=args.n_heads,
    )
    rope = LlamaRotaryEmbedding(cfg)
    cos, sin = rope(torch.zeros(1, dtype=torch.float32), positions[None])
    half = args.head_dim // 2  # HF repeats the frequencies for its two halves: cat(f, f)
    return cos[0, :, :half], sin[0, :, :half]


@pytest.mark.points(2)
@pytest.mark.parametrize("scaled", [True, False])
def test_rotation_table_matches_transformers(impl, scaled):
    """cos and sin of pos·f_i for positions 0..95 equal transformers' LlamaRotaryEmbedding (scaled and unscaled)."""
    args = small_args(use_scaled_rope=scaled)
    table = impl.precompute_freqs_cis(args, 96)
    assert table.shape == (96, 8, 2) and table.dtype == torch.float32
    cos, sin = hf_cos_sin(args, torch.arange(96))
    close(table[..., 0], cos, atol=1e-4, rtol=0)
    close(table[..., 1], sin, atol=1e-4, rtol=0)


@pytest.mark.points(1)
def test_rotation_table_default_length(impl):
    """Without seq_len the table covers 2·max_seq_len positions, and position 0 is no rotation (cos 1, sin 0)."""
    table = impl.precompute_freqs_cis(small_args())
    assert table.shape == (96, 8, 2)
    close(table[0], torch.stack([torch.ones(8), torch.zeros(8)], dim=-1))


# ---------------------------------------------------------------------- 3.4 the rotation
def table_for(seq_len, head_dim, theta=10000.0):
    """(cos, sin) table written out plainly: angle pos·theta^(-2i/head_dim)."""
    f = torch.tensor([theta ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64)
    ang = torch.arange(seq_len, dtype=torch.float64)[:, None] * f[None]
    return torch.stack([ang.cos(), ang.sin()], dim=-1).float()


@pytest.mark.points(2)
def test_rotary_matches_metas_complex_formulation(impl):
    """Meta's original: view interleaved pairs as complex numbers and multiply by e^{i·pos·f} (torch.polar)."""
    b, s, h, e = 2, 7, 3, 16
    x = torch.randn(b, s, h, e, generator=torch.Generator().manual_seed(0))
    table = table_for(s, e)
    rot = torch.polar(torch.ones(s, e // 2), torch.atan2(table[..., 1], table[..., 0]))
    expected = torch.view_as_real(torch.view_as_complex(x.reshape(b, s, h, e // 2, 2)) * rot[None, :, None])
    close(impl.apply_rotary_emb(x, table), expected.reshape(b, s, h, e), atol=1e-5)


@pytest.mark.points(2)
def test_rotary_matches_transformers_on_permuted_channels(impl):
    """transformers rotates halves (x[i], x[i+e/2]); moving Meta's pairs (x[2i], x[2i+1]) into halves, applying
    transformers' apply_rotary_pos_emb and moving back must give the same result."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    b, s, h, e = 1, 9, 2, 8
    x = torch.randn(b, s, h, e, generator=torch.Generator().manual_seed(1))
    table = table_for(s, e)
    to_halves = torch.cat([torch.arange(0, e, 2), torch.arange(1, e, 2)])
    cos, sin = (torch.cat([table[..., j], table[..., j]], dim=-1)[None] for j in (0, 1))  # (1, s, e)
    hf, _ = apply_rotary_pos_emb(x[..., to_halves].transpose(1, 2), x[..., to_halves].transpose(1, 2), cos, sin)
    expected = torch.empty_like(x)
    expected[..., to_halves] = hf.transpose(1, 2)
    close(impl.apply_rotary_emb(x, table), expected, atol=1e-5)


@pytest.mark.points(1)
def test_rotary_relative_position_and_dtype(impl):
    """q·k after rotation depends only on the distance between positions (here 3), and bf16 stays bf16."""
    e = 8
    q, k = torch.randn(2, e, generator=torch.Generator().manual_seed(2)).unbind(0)
    table = table_for(20, e)
    seq = torch.stack([q] * 20)[None, :, None]  # the same vector at every position
    rq, rk = (
        impl.apply_rotary_emb(seq, table)[0, :, 0],
        impl.apply_rotary_emb(torch.stack([k] * 20)[None, :, None], table)[0, :, 0],
    )
    dots = [float(rq[m] @ rk[m - 3]) for m in range(3, 20)]
    assert max(dots) - min(dots) < 1e-4, "q_m·k_n must depend only on m - n"
    assert not math.isclose(dots[0], float(q @ k), abs_tol=1e-3), "a distance of 3 must change the score"
    out = impl.apply_rotary_emb(torch.randn(1, 4, 2, e).bfloat16(), table[:4])
    assert out.dtype == torch.bfloat16
