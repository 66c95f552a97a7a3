"""Checkpoint formats: own safetensors folder, Meta consolidated, and clear errors for damaged or foreign files."""

import json

import pytest
import torch

from minillama import ModelArgs, Transformer
from minillama.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_hf,
    load_meta,
    save_checkpoint,
    save_hf,
    save_meta,
)


def tiny(tied=True):
    args = ModelArgs(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=50,
        multiple_of=16,
        max_seq_len=32,
        use_scaled_rope=False,
        tie_word_embeddings=tied,
    )
    return Transformer(args).init_weights(seed=0)


@pytest.mark.parametrize("tied", [True, False])
def test_own_and_meta_roundtrips_are_exact(tmp_path, tied):
    model = tiny(tied)
    x = torch.randint(0, 50, (1, 10))
    for save, load in ((save_checkpoint, load_checkpoint), (save_meta, load_meta), (save_hf, load_hf)):
        folder = save(model, tmp_path / save.__name__)
        again = load(folder)
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
        if tied and save is not save_meta:  # Meta's params.json has no tying flag: it stores both (equal) tensors
            assert again.output.weight is again.tok_embeddings.weight


def test_overwrite_is_atomic_and_leaves_no_temp_folders(tmp_path):
    model = tiny()
    save_checkpoint(model, tmp_path / "ck")
    model.norm.weight.data += 1
    save_checkpoint(model, tmp_path / "ck")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert torch.equal(load_checkpoint(tmp_path / "ck").norm.weight, model.norm.weight)


def test_truncated_file_gives_a_clear_error(tmp_path):
    folder = save_checkpoint(tiny(), tmp_path / "ck")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(folder)


def test_shape_mismatch_names_the_first_bad_tensor(tmp_path):
    folder = save_checkpoint(tiny(), tmp_path / "ck")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["n_kv_heads"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"layers\.0\.attention\.wk\.weight.*shape"):
        load_checkpoint(folder)


def test_missing_and_foreign_tensors(tmp_path):
    model = tiny()
    folder = save_hf(model, tmp_path / "hf")
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state.pop("model.layers.1.mlp.up_proj.weight")
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"layers\.1\.feed_forward\.w3\.weight.*missing"):
        load_hf(folder)
    state["model.layers.0.self_attn.q_norm.weight"] = torch.ones(8)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        load_hf(folder)


def test_bad_config_json(tmp_path):
    folder = save_checkpoint(tiny(), tmp_path / "ck")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
