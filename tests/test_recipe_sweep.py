"""`scripts/recipe_sweep.py` (the sweep behind the default pre-training recipe) at tiny sizes: the stored results are
those of the encoded config lists, and both modes run end to end (speed is measured by running it, not here)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "recipe_sweep.py"
TINY = dict(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, bs=4, seq=32)
RECORD_FIELDS = {"name", "params", "steps", "tokens_seen", "bpb", "nats", "secs", "curve", "device", "precision"}


def _load():
    spec = importlib.util.spec_from_file_location("recipe_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sweep = _load()


def byte_lengths() -> torch.Tensor:
    """Bytes per id of the `shards` fixture's tokenizer (tests/conftest.py): one per byte, 0 for BOS/EOS."""
    lengths = torch.ones(302, dtype=torch.int64)
    lengths[300:] = 0
    return lengths


@pytest.mark.parametrize("round_", [1, 2])
def test_stored_results_are_the_encoded_configs(round_):
    records = [json.loads(line) for line in (sweep.RESULTS / f"round{round_}.jsonl").read_text().splitlines()]
    table = sweep.configs(round_)
    assert len(records) == len(table) and {r["name"] for r in records} == set(table)
    for r in records:
        expected = dict(table[r["name"]])
        if round_ == 1:  # round 1 did not record its seed (the default, 0)
            assert expected.pop("seed") == 0 and "seed" not in r
        assert {k: r[k] for k in expected} == expected, r["name"]
        assert math.isfinite(r["bpb"]) and 1.0 < r["bpb"] < 2.5
        assert r["tokens_seen"] >= r["tokens"]


def test_quality_run_config_on_tiny_shards(shards):
    c = {**sweep.BASE_ROUND_2, **TINY, "tokens": 4096}
    rec = sweep.run_config("tiny", c, shards, token_bytes=byte_lengths(), device="cpu", precision="fp32", threads=1)
    assert RECORD_FIELDS | set(c) <= set(rec)
    assert rec["name"] == "tiny" and rec["device"] == "cpu" and rec["precision"] == "fp32"
    assert rec["steps"] == 4096 // (4 * 32) and rec["tokens_seen"] == 4096
    assert math.isfinite(rec["bpb"]) and math.isfinite(rec["nats"])
    # byte tokens: bits/byte is nats/token over ln 2, up to the BOS/EOS targets that count 0 bytes
    assert rec["bpb"] >= rec["nats"] / math.log(2)
    assert rec["curve"] and rec["curve"][0][0] == 4 * 32
    json.dumps(rec, allow_nan=False)


def test_quality_command_writes_json_lines(shards, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = ["quality", "--round", "2", "--only", "nr_lr2e-3_h4kv1", "--device", "cpu", "--precision", "fp32"]
    argv += ["--data", str(shards), "--out", str(out), "--threads", "1", "--set", "tokens=2048"]
    argv += [f"{k}={v}" for k, v in TINY.items() if k not in ("n_heads", "n_kv_heads")]
    assert sweep.main(argv) == 0
    (line,) = out.read_text().splitlines()
    rec = json.loads(line)
    assert rec["name"] == "nr_lr2e-3_h4kv1" and (rec["n_heads"], rec["n_kv_heads"], rec["lr"]) == (4, 1, 2e-3)
    assert rec["dim"] == 32 and rec["tokens"] == 2048 and rec["tokens_seen"] == 2048
    assert rec["bpb"] is None and math.isfinite(rec["nats"])  # the fixture's folder has no tokenizer: no bytes
    assert "nr_lr2e-3_h4kv1" in capsys.readouterr().out


def test_quality_list_and_bad_names(capsys):
    assert sweep.main(["quality", "--round", "1", "--list"]) == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert names == list(sweep.ROUND_1)
    with pytest.raises(SystemExit, match="unknown nope"):
        sweep.main(["quality", "--only", "nope", "--list"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        sweep.main(["quality", "--list", "--set", "colour=2"])


def test_speed_one_round_of_tiny_shapes(capsys):
    argv = ["speed", "--rounds", "1", "--steps", "1", "--threads", "1", "--precision", "fp32", "--json"]
    argv += ["--only", "h4kv1,seq128bs32", "--set", "dim=64", "n_layers=1", "bs=2", "seq=32"]
    assert sweep.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    variants = result["variants"]
    assert list(variants) == ["base", "h4kv1", "seq128bs32"]
    assert variants["base"]["ratio_paired"] == 1.0
    assert (variants["h4kv1"]["n_heads"], variants["h4kv1"]["n_kv_heads"]) == (4, 1)
    assert (variants["seq128bs32"]["rows"], variants["seq128bs32"]["seq"]) == (32, 128)
    for v in variants.values():
        assert v["tokens_per_s"] > 0 and v["ratio_paired"] > 0 and v["dim"] == 64
