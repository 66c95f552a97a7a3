"""Grading tests for exercises/ch00_the_herd.py (paper §1, Table 3): parameter counts and KV-cache bytes.

Outside references: FACTS.md §1 and §11 (computed from Meta's llama-models), and transformers'
LlamaForCausalLM built on the meta device for configurations not in the table.
"""

import pytest
import torch

from minillama import ModelArgs

CHAPTER = "ch00_the_herd"

KiB, GiB = 2**10, 2**30


# ---------------------------------------------------------------------- 0.1 parameters
@pytest.mark.points(2)
@pytest.mark.parametrize(
    "name, expected",
    [
        ("llama3.1-8b", 8_030_261_248),
        ("llama3.1-70b", 70_553_706_496),
        ("llama3.1-405b", 405_853_388_800),
    ],
)
def test_parameters_of_the_31_models(impl, name, expected):
    """The 3.1 models (untied embeddings), FACTS.md §1."""
    assert impl.count_parameters(ModelArgs.from_preset(name)) == expected


@pytest.mark.points(2)
@pytest.mark.parametrize(
    "name, tied, expected",
    [
        ("llama3.2-1b", True, 1_235_814_400),
        ("llama3.2-3b", True, 3_212_749_824),
        ("llama3.2-1b", False, 1_498_482_688),
        ("llama3.2-3b", False, 3_606_752_256),
    ],
)
def test_parameters_of_the_32_models_tied_and_untied(impl, name, tied, expected):
    """The 3.2 models tie the output projection to the embedding (counted once); untied counts, FACTS.md §1."""
    assert impl.count_parameters(ModelArgs.from_preset(name, tie_word_embeddings=tied)) == expected


@pytest.mark.points(1)
@pytest.mark.parametrize(
    "kw",
    [
        dict(dim=64, n_layers=3, n_heads=8, n_kv_heads=8, vocab_size=100, tie_word_embeddings=False),
        dict(dim=96, n_layers=2, n_heads=6, n_kv_heads=2, vocab_size=321, tie_word_embeddings=True),
    ],
)
def test_parameters_match_transformers(impl, kw):
    """Small configurations (no GQA, and GQA with tied embeddings) against transformers' LlamaForCausalLM."""
    from transformers import LlamaConfig, LlamaForCausalLM

    args = ModelArgs(multiple_of=32, ffn_dim_multiplier=None, use_scaled_rope=False, **kw)
    cfg = LlamaConfig(
        hidden_size=args.dim,
        intermediate_size=args.ffn_hidden_dim,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_kv_heads,
        vocab_size=args.vocab_size,
        tie_word_embeddings=args.tie_word_embeddings,
    )
    with torch.device("meta"):
        hf = LlamaForCausalLM(cfg)
    assert impl.count_parameters(args) == sum(p.numel() for p in hf.parameters())


# ---------------------------------------------------------------------- 0.2 KV-cache bytes
@pytest.mark.points(2)
@pytest.mark.parametrize(
    "layers, kv, hd, per_token",
    [
        (32, 8, 128, 131_072),
        (80, 8, 128, 327_680),
        (126, 8, 128, 516_096),
        (16, 8, 64, 32 * KiB),
        (28, 8, 128, 112 * KiB),
    ],
)
def test_kv_bytes_per_token_bf16(impl, layers, kv, hd, per_token):
    """bf16 bytes per token for 3.1-8B/70B/405B and 3.2-1B/3B, FACTS.md §11."""
    assert impl.kv_cache_bytes(layers, kv, hd) == per_token


@pytest.mark.points(1)
def test_kv_bytes_long_context_batch_and_fp8(impl):
    """8B at 131,072 tokens is 16 GiB (FACTS.md §11); 4 sequences take 4x; fp8 (1 byte) halves it."""
    assert impl.kv_cache_bytes(32, 8, 128, seq_len=131072) == 16 * GiB
    assert impl.kv_cache_bytes(32, 8, 128, seq_len=131072, batch=4) == 64 * GiB
    assert impl.kv_cache_bytes(32, 8, 128, seq_len=131072, bytes_per_element=1) == 8 * GiB
