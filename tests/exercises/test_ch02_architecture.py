"""Grading tests for exercises/ch02_architecture.py (paper §3.2): RMSNorm, the SwiGLU hidden size and
feed-forward, grouped-query attention, and the causal mask with a KV-cache offset.

Each test compares `impl.<function>` with an outside reference: torch builtins (`F.rms_norm`,
`F.scaled_dot_product_attention`, `torch.tril`), the transformers Llama modules, or FACTS.md numbers.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

CHAPTER = "ch02_architecture"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def close(actual, expected, atol=1e-5, rtol=1e-4):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


# ---------------------------------------------------------------------- 2.1 RMSNorm
@pytest.mark.points(2)
def test_rms_norm_matches_torch(impl):
    """rms_norm equals torch.nn.functional.rms_norm on rows of different scale and non-zero mean."""
    x = torch.randn(3, 5, 16, generator=gen()) * torch.tensor([0.5, 3.0, 20.0])[:, None, None] + 1.5
    w = torch.rand(16, generator=gen(1)) + 0.5
    close(impl.rms_norm(x, w, 1e-5), F.rms_norm(x, (16,), w, eps=1e-5))


@pytest.mark.points(2)
def test_rms_norm_eps_inside_square_root(impl):
    """Small inputs (|x| ~ 1e-3, so mean(x²) is below eps): eps belongs inside the square root, as in
    transformers' LlamaRMSNorm."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    x = torch.randn(4, 32, generator=gen(2)) * 1e-3
    w = torch.rand(32, generator=gen(3)) + 0.5
    ref = LlamaRMSNorm(32, eps=1e-5)
    ref.weight.data.copy_(w)
    with torch.no_grad():
        close(impl.rms_norm(x, w, 1e-5), ref(x))
        close(impl.rms_norm(x, w, 1e-2), F.rms_norm(x, (32,), w, eps=1e-2))


@pytest.mark.points(1)
def test_rms_norm_zero_input_and_dtype(impl):
    """An all-zero row gives zeros (not NaN), and a bfloat16 input comes back as bfloat16."""
    out = impl.rms_norm(torch.zeros(2, 8), torch.ones(8), 1e-5)
    assert torch.equal(out, torch.zeros(2, 8)), "an all-zero row must normalise to zeros (eps keeps it finite)"
    x = torch.randn(2, 8, generator=gen(4)).bfloat16()
    out = impl.rms_norm(x, torch.ones(8, dtype=torch.bfloat16), 1e-5)
    assert out.dtype == torch.bfloat16
    close(out.float(), F.rms_norm(x.float(), (8,), eps=1e-5), atol=2e-2, rtol=2e-2)


# ---------------------------------------------------------------------- 2.2 SwiGLU hidden size
@pytest.mark.points(2)
@pytest.mark.parametrize(
    "dim, multiple_of, mult, expected",
    [
        (4096, 1024, 1.3, 14336),  # 3.1-8B   (FACTS.md §1)
        (8192, 4096, 1.3, 28672),  # 3.1-70B
        (16384, 4096, 1.2, 53248),  # 3.1-405B
        (2048, 256, 1.5, 8192),  # 3.2-1B
        (3072, 256, 1.0, 8192),  # 3.2-3B
    ],
)
def test_ffn_hidden_dim_matches_the_herd(impl, dim, multiple_of, mult, expected):
    """The FFN hidden size of every Llama 3.1/3.2 model (FACTS.md §1)."""
    assert impl.ffn_hidden_dim(dim, multiple_of, mult) == expected


@pytest.mark.points(1)
def test_ffn_hidden_dim_without_multiplier(impl):
    """With no multiplier the rule is int(8·dim/3) rounded up: dim 256, multiple_of 32 -> 704; dim 100 -> 288."""
    assert impl.ffn_hidden_dim(256, 32, None) == 704
    assert impl.ffn_hidden_dim(100, 32, None) == 288  # int(266.67) = 266 -> 288


# ---------------------------------------------------------------------- 2.3 SwiGLU feed-forward
def _mlp(d=16, f=40, seed=5):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch.manual_seed(seed)
    mlp = LlamaMLP(
        LlamaConfig(
            hidden_size=d,
            intermediate_size=f,
            num_attention_heads=4,
            num_key_value_heads=4,
            hidden_act="silu",
            mlp_bias=False,
        )
    )
    return mlp, mlp.gate_proj.weight.detach(), mlp.down_proj.weight.detach(), mlp.up_proj.weight.detach()


@pytest.mark.points(2)
def test_feed_forward_matches_transformers_llama_mlp(impl):
    """feed_forward(x, w1, w2, w3) equals transformers' LlamaMLP (gate = w1, up = w3, down = w2)."""
    mlp, w1, w2, w3 = _mlp()
    x = torch.randn(2, 7, 16, generator=gen(6))
    with torch.no_grad():
        close(impl.feed_forward(x, w1, w2, w3), mlp(x))


@pytest.mark.points(1)
def test_feed_forward_at_large_and_negative_inputs(impl):
    """Large inputs (|x| ~ 30), where silu(x) = x·sigmoid(x) differs clearly from relu, sigmoid and gelu."""
    mlp, w1, w2, w3 = _mlp(seed=7)
    x = torch.randn(3, 16, generator=gen(8)) * 30
    with torch.no_grad():
        close(impl.feed_forward(x, w1, w2, w3), mlp(x), atol=1e-3, rtol=1e-4)


# ---------------------------------------------------------------------- 2.4 repeat_kv
@pytest.mark.points(2)
def test_repeat_kv_matches_transformers(impl):
    """Each K/V head repeated n_rep times in place ([A, A, B, B]), as transformers' repeat_kv does."""
    from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

    x = torch.randn(2, 5, 3, 4, generator=gen(9))  # (b, t, kv, e)
    out = impl.repeat_kv(x, 4)
    assert out.shape == (2, 5, 12, 4)
    expected = hf_repeat_kv(x.transpose(1, 2), 4).transpose(1, 2)  # HF works on (b, kv, t, e)
    close(out, expected, atol=0, rtol=0)
    close(impl.repeat_kv(x, 1), x, atol=0, rtol=0)


# ---------------------------------------------------------------------- 2.5 grouped-query attention
def _qkv(b=2, s=6, t=6, h=8, kv=2, e=16, seed=10):
    g = gen(seed)
    return (
        torch.randn(b, s, h, e, generator=g),
        torch.randn(b, t, kv, e, generator=g),
        torch.randn(b, t, kv, e, generator=g),
    )


def _sdpa(q, k, v, mask):
    """torch's own scaled_dot_product_attention with GQA, on (b, s, h, e) tensors."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True
    )
    return out.transpose(1, 2)


@pytest.mark.points(2)
def test_gqa_attention_matches_torch_sdpa(impl):
    """8 query heads sharing 2 key/value heads, causal: equals F.scaled_dot_product_attention(enable_gqa=True)."""
    q, k, v = _qkv()
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    close(impl.gqa_attention(q, k, v, mask), _sdpa(q, k, v, mask))


@pytest.mark.points(2)
def test_gqa_attention_matches_transformers_eager(impl):
    """Against transformers' eager_attention_forward (repeat_kv + softmax(q·kᵀ·scale)·v), no mask, 4 queries
    over 9 keys, 6 query heads on 3 K/V heads."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    q, k, v = _qkv(b=1, s=4, t=9, h=6, kv=3, e=8, seed=11)
    module = SimpleNamespace(num_key_value_groups=2, training=False)
    expected, _ = eager_attention_forward(
        module, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attention_mask=None, scaling=8**-0.5
    )
    close(impl.gqa_attention(q, k, v, None), expected)  # HF returns (b, s, h, e) already


@pytest.mark.points(1)
def test_gqa_attention_with_a_cache_offset_mask(impl):
    """2 new queries after 5 cached keys, mask (2, 7) from torch.tril(diagonal=5)."""
    q, k, v = _qkv(b=1, s=2, t=7, h=4, kv=1, e=8, seed=12)
    mask = torch.ones(2, 7, dtype=torch.bool).tril(diagonal=5)
    close(impl.gqa_attention(q, k, v, mask), _sdpa(q, k, v, mask))


# ---------------------------------------------------------------------- 2.6 causal mask with a cache
@pytest.mark.points(1)
def test_causal_mask_without_cache(impl):
    """start_pos 0: the lower triangle including the diagonal (each token sees itself and the past)."""
    m = impl.causal_mask(5, 0)
    assert m.dtype == torch.bool and m.shape == (5, 5)
    assert torch.equal(m, torch.ones(5, 5, dtype=torch.bool).tril())


@pytest.mark.points(2)
@pytest.mark.parametrize("seq_len, start_pos", [(3, 4), (1, 7), (4, 1)])
def test_causal_mask_with_cache_offset(impl, seq_len, start_pos):
    """seq_len new queries after start_pos cached positions: shape (seq_len, start_pos + seq_len), query i sees
    keys 0..start_pos + i, i.e. torch.tril(ones, diagonal=start_pos)."""
    m = impl.causal_mask(seq_len, start_pos)
    expected = torch.ones(seq_len, start_pos + seq_len, dtype=torch.bool).tril(diagonal=start_pos)
    assert m.shape == expected.shape, f"expected shape {tuple(expected.shape)}, got {tuple(m.shape)}"
    assert torch.equal(m.bool(), expected)
