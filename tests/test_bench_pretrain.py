"""`python -m minillama.bench pretrain` at tiny sizes: every variant is there, the numbers are consistent and the MFU
formula counts what a hand count does (speed itself is measured by running the bench, not by tests)."""

import contextlib
import io
import json

import pytest
import torch

from minillama.bench import pretrain
from minillama.bench.__main__ import available
from minillama.model import ModelArgs, Transformer

TINY = ["--preset", "tiny", "--batch", "2", "--seq", "32", "--rounds", "1", "--steps", "1", "--json"]
FAST = ["--threads", "1", "--matmul-size", "128"]


def run_json(capsys, argv) -> dict:
    assert pretrain.main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def result():
    """One run shared by the tests below (a module fixture cannot use capsys)."""
    pytest.importorskip("transformers")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert pretrain.main(TINY + FAST) == 0
    return json.loads(out.getvalue())


def test_listed():
    assert "pretrain" in available()


def test_every_variant_with_positive_rates_and_consistent_ratios(result):
    variants = result["variants"]
    assert set(variants) == set(pretrain.VARIANTS)
    ref = variants["transformers fp32"]["tokens_per_s"]
    for v in variants.values():
        assert v["tokens_per_s"] > 0 and v["tokens_per_s_best"] >= v["tokens_per_s"]
        assert v["ratio"] == pytest.approx(v["tokens_per_s"] / ref, rel=1e-12)
        ref_seconds = variants["transformers fp32"]["seconds"]
        assert v["ratio_paired"] == pytest.approx(ref_seconds[0] / v["seconds"][0])  # one round: its own ratio
        assert v["mfu"] == pytest.approx(
            result["flops_per_token"]["total"] * v["tokens_per_s"] / result["peak"][v["mfu_peak"]]["flops_per_s"]
        )
        assert v["mfu"] > 0
    assert variants["transformers fp32"]["ratio"] == 1.0
    assert result["reference"] == "transformers fp32" and result["tokens_per_call"] == 2 * 32 * 1
    assert result["peak"]["bf16"]["flops_per_s"] > 0 and result["peak"]["fp32"]["flops_per_s"] > 0
    assert "measured matmul peak" in result["peak"]["note"]
    recipe = "bf16 autocast" if result["native_bf16"] else "fp32"
    assert result["recipe"]["precision"] == variants["minillama recipe"]["precision"] == recipe
    assert variants["transformers recipe"]["precision"] == recipe
    assert variants["minillama fp32"]["precision"] == variants["transformers fp32"]["precision"] == "fp32"


def test_same_weights_same_first_step_loss(result):
    """Apples to apples: in fp32 the two models compute the same logits and the same first two losses (so the
    weights, the gradients and AdamW agree); the recipe variants agree to bf16 precision."""
    p, v = result["parity"], result["variants"]
    assert p["ok"] and p["max_logit_diff"] <= 1e-4 and p["logit_std"] > 1e-2  # non-trivial logits
    assert v["minillama fp32"]["first_losses"][0] == pytest.approx(v["transformers fp32"]["first_losses"][0], abs=1e-4)
    assert p["fp32_loss_diff"] <= 1e-4
    assert p["recipe_loss_diff"] <= 2e-2
    assert v["minillama fp32"]["first_losses"][1] < v["minillama fp32"]["first_losses"][0]  # the step trains


def test_flops_per_token_is_palm_6n_plus_attention_by_hand():
    """tiny: dim 64, 2 layers, 4 heads of 16, 2 kv heads, FFN hidden 192 (int(2*4*64/3) = 170 rounded up to a
    multiple of 32), vocab 8192, tied output (the output layer is a matmul: it counts; the embedding lookup not)."""
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 192  # wq, wk + wv, wo, w1 + w2 + w3
    n = 2 * per_layer + 8192 * 64
    assert n == 622_592
    flops = pretrain.model_flops_per_token(ModelArgs.from_preset("tiny"), seq_len=32)
    assert flops["matmul_params"] == n
    assert flops["total"] == 6 * n + 12 * 2 * 64 * 32 == 3_784_704
    # the same N from the model itself: every nn.Linear weight (the tied output included)
    model = Transformer(ModelArgs.from_preset("tiny"))
    assert sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) == n


def test_runs_without_transformers(capsys, monkeypatch):
    def missing(model):
        raise ImportError("No module named 'transformers'")

    monkeypatch.setattr(pretrain, "hf_twin", missing)
    r = run_json(capsys, TINY + FAST)
    assert set(r["variants"]) == {"minillama recipe", "minillama fp32"}
    assert r["reference"] is None
    assert all(v["ratio"] is None and v["ratio_paired"] is None for v in r["variants"].values())
    assert "not importable" in r["note"] and r["parity"] == {}
    assert pretrain.main([a for a in TINY + FAST if a != "--json"]) == 0
    assert "not importable" in capsys.readouterr().out
