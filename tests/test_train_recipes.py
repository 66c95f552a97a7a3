"""Continued pre-training recipes: branches on different mixes, annealing to LR 0, checkpoint averaging."""

import numpy as np
import pytest
import torch

from minillama.checkpoint import average_checkpoints, average_state_dicts, save_checkpoint
from minillama.data.shards import MixedLoader, ShardLoader
from minillama.model import Transformer
from minillama.model.config import ModelArgs
from minillama.train import TrainConfig
from minillama.train.recipes import anneal, continue_on_mixes

SEQ = 16


def model(seed=0):
    return Transformer(ModelArgs.from_preset("tiny", vocab_size=64, max_seq_len=32)).init_weights(seed=seed)


def pattern(offset, n=4000):
    """A 'domain': a repeating sequence of 8 ids starting at `offset`."""
    return (np.arange(n) % 8 + offset).astype(np.uint32)


def test_average_state_dicts_is_the_elementwise_mean(tmp_path):
    """Averaging equals (a + b + c) / 3 for every tensor; checkpoints of different shapes are refused."""
    ms = [model(s) for s in range(3)]
    avg = average_state_dicts([m.state_dict() for m in ms])
    for name in avg:
        expected = (ms[0].state_dict()[name] + ms[1].state_dict()[name] + ms[2].state_dict()[name]) / 3
        torch.testing.assert_close(avg[name], expected)
    folders = [save_checkpoint(m, tmp_path / f"c{i}") for i, m in enumerate(ms)]
    merged = average_checkpoints(folders)
    torch.testing.assert_close(merged.norm.weight, avg["norm.weight"])
    other = Transformer(ModelArgs.from_preset("tiny", vocab_size=64, dim=32, max_seq_len=32))
    with pytest.raises(ValueError, match="same model"):
        average_state_dicts([ms[0].state_dict(), other.state_dict()])


def test_anneal_takes_lr_linearly_to_zero_and_keeps_snapshots():
    """Annealing: no warmup, LR falls linearly from the start value to 0; the last `keep_last` weights are kept."""
    loader = ShardLoader([pattern(2)], SEQ, seed=0)
    trainer, snaps = anneal(model(), loader, steps=5, lr=1e-3, seq_len=SEQ, batch_size=2, keep_last=3, progress=False)
    assert [r["lr"] for r in trainer.history] == pytest.approx([1e-3 * (1 - s / 5) for s in range(5)])
    assert len(snaps) == 3
    torch.testing.assert_close(snaps[-1]["norm.weight"], trainer.model.norm.weight)


def test_branch_on_the_matching_mix_lowers_that_domain_loss_more():
    """Two continuations from one model: the branch trained mostly on domain A ends with a lower loss on A than
    the branch trained mostly on B, and both start from the same point."""

    def mix(weight_a):
        return MixedLoader(
            {"a": ShardLoader([pattern(2)], SEQ, seed=0), "b": ShardLoader([pattern(30)], SEQ, seed=1)},
            {"a": weight_a, "b": 1 - weight_a},
            seed=0,
        )

    eval_sets = {
        "a": [ShardLoader([pattern(2, 200)], SEQ, shuffle=False).next_batch(4)],
        "b": [ShardLoader([pattern(30, 200)], SEQ, shuffle=False).next_batch(4)],
    }
    cfg = TrainConfig(max_steps=12, lr=1e-2, min_lr=1e-3, warmup_steps=2, batch_size=4, seq_len=SEQ)
    curves = continue_on_mixes(
        model(), {"a-heavy": mix(0.9), "b-heavy": mix(0.1)}, cfg, eval_sets, eval_every=6, progress=False
    )
    assert curves["a-heavy"][0] == curves["b-heavy"][0]
    assert [r["step"] for r in curves["a-heavy"]] == [0, 6, 12]
    assert curves["a-heavy"][-1]["a"] < curves["b-heavy"][-1]["a"]
    assert curves["b-heavy"][-1]["b"] < curves["a-heavy"][-1]["b"]
