"""minillama's logits against `transformers.LlamaForCausalLM` on the same weights (float32, 1e-5)."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from minillama import ModelArgs, Transformer, load_hf, save_hf
from minillama.checkpoint import args_to_hf_config
from tests.hf_reference import hf_twin

CONFIGS = {
    "mha": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, use_scaled_rope=False, tie_word_embeddings=False),
    "gqa2-scaled": dict(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        use_scaled_rope=True,
        tie_word_embeddings=True,
        rope_scaling=dict(factor=8.0, original_max_seq_len=64),
    ),
    "gqa4-scaled32": dict(
        dim=96,
        n_layers=3,
        n_heads=8,
        n_kv_heads=2,
        use_scaled_rope=True,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rope_scaling=dict(factor=32.0, original_max_seq_len=32),
    ),
}


def small_model(seed=0, **kw):
    args = ModelArgs(vocab_size=97, multiple_of=16, ffn_dim_multiplier=1.3, max_seq_len=128, max_batch_size=3, **kw)
    torch.manual_seed(seed)
    model = Transformer(args).init_weights(std=0.2, seed=seed).eval()
    for n, p in model.named_parameters():  # non-trivial norm weights, so a wrong norm mapping shows
        if n.endswith("norm.weight"):
            p.data = 1 + 0.3 * torch.randn_like(p)
    return model


@pytest.mark.parametrize("name", CONFIGS)
def test_full_forward_matches_transformers(name):
    model = small_model(**CONFIGS[name])
    hf = hf_twin(model)
    tokens = torch.randint(0, 97, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    assert ours.shape == (3, 40, 97)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_decoding_matches_transformers(name):
    """Prefill 10 tokens, then one token at a time with the KV cache, against HF's full forward."""
    model = small_model(**CONFIGS[name])
    hf = hf_twin(model)
    tokens = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = hf(tokens).logits
        model.setup_cache(max_batch_size=2, max_seq_len=64)
        pieces = [model(tokens[:, :10], start_pos=0)]
        pieces += [model(tokens[:, p : p + 1], start_pos=p) for p in range(10, 20)]
        pieces.append(model(tokens[:, 20:], start_pos=20))  # several new tokens after a cache: the offset mask
        model.reset_cache()
    # The cache computes the same sums in another order (prefill, then one row at a time): with logits up to ~7.5,
    # float32 rounding reaches 1.05e-5 on one of 5,820 logits (gqa4-scaled32), so the bound here is 2e-5.
    torch.testing.assert_close(torch.cat(pieces, dim=1), reference, atol=2e-5, rtol=1e-5)


def test_positions_beyond_original_context_use_scaling():
    """Past original_max_seq_len the scaled and unscaled RoPE differ, and HF agrees with the scaled one."""
    cfg = dict(CONFIGS["gqa2-scaled"])
    model = small_model(**cfg)
    hf = hf_twin(model)
    tokens = torch.randint(0, 97, (1, 120), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(tokens)
        torch.testing.assert_close(ours, hf(tokens).logits, atol=1e-5, rtol=1e-5)
        unscaled = small_model(**{**cfg, "use_scaled_rope": False})
        assert (unscaled(tokens) - ours).abs().max() > 1e-3


def test_load_hf_from_transformers_save_pretrained(tmp_path):
    """A model created and saved by transformers itself loads into minillama with the same logits."""
    ours_args = ModelArgs(
        dim=64,
        n_layers=2,
        n_heads=8,
        n_kv_heads=2,
        vocab_size=97,
        multiple_of=16,
        max_seq_len=128,
        rope_scaling=dict(original_max_seq_len=64),
    )
    config = LlamaConfig(
        **{
            k: v
            for k, v in args_to_hf_config(ours_args).items()
            if k not in ("architectures", "model_type", "torch_dtype")
        }
    )
    torch.manual_seed(5)
    hf = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.2)
    hf.save_pretrained(tmp_path)
    model = load_hf(tmp_path)
    tokens = torch.randint(0, 97, (2, 50), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-5, rtol=1e-5)


def test_hf_roundtrip_is_exact(tmp_path):
    model = small_model(**CONFIGS["gqa4-scaled32"])
    save_hf(model, tmp_path / "hf")
    again = load_hf(tmp_path / "hf")
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n
