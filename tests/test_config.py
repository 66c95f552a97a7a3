"""ModelArgs: the herd's exact parameter counts (FACTS.md §1) on the meta device, and clear errors for bad configs."""

import pytest
import torch

from minillama import ModelArgs, Transformer
from minillama.model.config import PRESETS
from tests.facts import PARAMS, UNTIED

FFN = {"llama3.1-8b": 14336, "llama3.1-70b": 28672, "llama3.1-405b": 53248, "llama3.2-1b": 8192, "llama3.2-3b": 8192}


@pytest.mark.parametrize("name", PARAMS)
def test_preset_parameter_count_on_meta_device(name):
    with torch.device("meta"):
        model = Transformer(ModelArgs.from_preset(name))
    assert model.num_params() == PARAMS[name]
    assert all(p.is_meta for p in model.parameters())  # nothing allocated
    assert model.args.ffn_hidden_dim == FFN[name]


def test_untied_small_models_match_torchtitan_counts():
    """FACTS.md §1: counted untied, 3.2-1B/3B come to 1,498,482,688 and 3,606,752,256."""
    for name, n in UNTIED.items():
        with torch.device("meta"):
            model = Transformer(ModelArgs.from_preset(name, tie_word_embeddings=False))
        assert model.num_params() == n


def test_rope_scaling_factors_per_family():
    assert ModelArgs.from_preset("llama3.1-8b").rope_scaling.factor == 8.0
    assert ModelArgs.from_preset("llama3.2-1b").rope_scaling.factor == 32.0
    assert ModelArgs.from_preset("llama3.1-405b").rope_theta == 500000.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dim=100, n_heads=3), "not divisible by n_heads"),
        (dict(dim=64, n_heads=4, n_kv_heads=3), "not divisible by n_kv_heads"),
        (dict(dim=60, n_heads=4, n_kv_heads=4), "odd"),
        (dict(dim=64, n_heads=4, n_kv_heads=2, vocab_size=0), "vocab_size must be a positive integer"),
        (dict(dim=64, n_heads=4, n_kv_heads=2, norm_eps=0.0), "norm_eps"),
        (
            dict(dim=64, n_heads=4, n_kv_heads=2, rope_scaling=dict(low_freq_factor=4, high_freq_factor=1)),
            "low_freq_factor < high_freq_factor",
        ),
    ],
)
def test_invalid_configs_say_what_to_change(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArgs(**kwargs)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown preset"):
        ModelArgs.from_preset("llama9-1t")
    with pytest.raises(ValueError, match="unknown ModelArgs fields"):
        ModelArgs.from_dict({"dim": 64, "hidden_size": 64})


def test_cpu_presets_are_valid_and_small():
    for name in ("tiny", "small", "base"):
        with torch.device("meta"):
            n = Transformer(PRESETS[name]).num_params()
        assert n < 20_000_000
