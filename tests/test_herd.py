"""Chapter 00's numbers against FACTS.md §1 (parameters) and §11 (KV cache), and the plot helpers draw."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from minillama import ModelArgs
from minillama.herd import HERD, format_rows, herd_rows, parameter_count, plot_memory, where_it_fits
from tests.facts import PARAMS, UNTIED

KiB, GiB = 2**10, 2**30

# FACTS.md §11: bf16 bytes per token, and at 131,072 tokens.
KV_PER_TOKEN = {
    "llama3.1-8b": 131_072,
    "llama3.1-70b": 327_680,
    "llama3.1-405b": 516_096,
    "llama3.2-1b": 32 * KiB,
    "llama3.2-3b": 112 * KiB,
}
KV_128K = {"llama3.1-8b": 16 * GiB, "llama3.1-70b": 40 * GiB, "llama3.1-405b": 63 * GiB}


@pytest.fixture(scope="module")
def rows():
    return {r["name"]: r for r in herd_rows()}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_matches_facts(name):
    assert parameter_count(ModelArgs.from_preset(name)) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(UNTIED))
def test_untied_small_models_match_facts(name):
    assert parameter_count(ModelArgs.from_preset(name, tie_word_embeddings=False)) == UNTIED[name]


def test_parameter_count_matches_transformers_on_meta_device():
    """The 3.2-1B preset counted by transformers' LlamaForCausalLM (built on the meta device)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from minillama.checkpoint import args_to_hf_config

    args = ModelArgs.from_preset("llama3.2-1b")
    with torch.device("meta"):
        hf = LlamaForCausalLM(LlamaConfig(**args_to_hf_config(args)))
    assert sum(p.numel() for p in hf.parameters()) == parameter_count(args)


def test_rows_cover_the_herd_with_facts_numbers(rows):
    assert list(rows) == list(HERD)
    for name, r in rows.items():
        assert r["params"] == PARAMS[name]
        assert r["bf16_bytes"] == 2 * PARAMS[name] and r["fp8_bytes"] == PARAMS[name]
        assert r["kv_bytes_per_token"] == KV_PER_TOKEN[name]
        assert r["kv_bytes_at_8192"] == 8192 * KV_PER_TOKEN[name]
        if name in KV_128K:
            assert r["kv_bytes_at_131072"] == KV_128K[name]


def test_where_it_fits(rows):
    """§6: the 405B model in BF16 does not fit on one 8-GPU machine, in FP8 it does; 1B (and 8B in FP8) fit a laptop."""
    assert rows["llama3.1-405b"]["fits_bf16"].startswith("cluster")
    assert rows["llama3.1-405b"]["fits_fp8"].startswith("server")
    assert rows["llama3.2-1b"]["fits_bf16"].startswith("laptop")
    assert rows["llama3.1-8b"]["fits_fp8"].startswith("laptop")  # 8 GB + 1 GiB of cache in 90% of 16 GiB
    assert rows["llama3.1-8b"]["fits_bf16"].startswith("one GPU")  # 16.1 GB + 1 GiB does not
    assert where_it_fits(10**15).startswith("cluster")


def test_format_and_plot(rows):
    text = format_rows(list(rows.values()))
    assert "405,853,388,800" in text and "504KiB" in text
    fig = plot_memory(list(rows.values()))
    assert fig.axes and len(fig.axes[0].patches) == 2 * len(HERD)


def test_plot_helpers_return_figures():
    import matplotlib.pyplot as plt

    from minillama import plots

    figs = [
        plots.plot_rope_bands(),
        plots.plot_gqa_memory(list(PARAMS)),
        plots.plot_attention(torch.rand(5, 5).tril(), labels=list("abcde")),
        plots.plot_kv_speedup([8, 16], [0.1, 0.2], [0.2, 0.8]),
    ]
    for fig in figs:
        assert isinstance(fig, matplotlib.figure.Figure)
    # The band shading of the default (head_dim 128) plot counts FACTS.md §2's bands: 29 kept, 6 smoothed, 29 divided.
    labels = figs[0].axes[0].get_legend_handles_labels()[1]
    assert "kept (29)" in labels and "smoothed (6)" in labels and "divided by 8 (29)" in labels
    _, ax = plt.subplots()
    assert plots.plot_kv_speedup([1], [1.0], [1.0], ax=ax) is ax.figure
    plt.close("all")
