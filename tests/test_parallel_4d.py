"""Llama 3's 4D parallelism composed (minillama.parallel.fourd): one training step of a small Llama on meshes
up to [TP=2, CP=2, PP=2, DP=2] (16 processes), against the same step on one device."""

import torch

from minillama.cli import parallel_check as check
from tests.parallel_utils import assert_detected, assert_exact, run_mesh


def test_2x2x2x2_fsdp_float64():
    """16 ranks, [TP, CP, PP, DP] = [2, 2, 2, 2], FSDP over DP×CP, 1F1B pipeline with 2 micro-batches: loss,
    gradients and AdamW-updated weights of every shard equal the single-device step (1e-10)."""
    worst = run_mesh(tp=2, cp=2, pp=2, dp=2, batch=8, n_microbatches=2)
    assert_exact(worst)
    assert worst["n_tensors"] == 2 * 16 * 39 // 2  # each rank holds half of the 39 tensors (PP), TP-sharded


def test_tp_pp_interleaved_with_allreduce_dp_float64():
    """8 ranks, TP=2, PP=2 with the interleaved schedule (2 virtual stages, 4 micro-batches), DP=2 all-reduce."""
    assert_exact(
        run_mesh(tp=2, pp=2, dp=2, dp_mode="ddp", batch=8, schedule="interleaved", virtual_stages=2, n_microbatches=4)
    )


def test_cp_pp_gpipe_float32():
    """4 ranks, CP=2 and PP=2 with GPipe, float32 (1e-5)."""
    assert_exact(run_mesh(cp=2, pp=2, schedule="gpipe", dtype=torch.float32), torch.float32)


def test_misordered_mesh_is_detected():
    """Groups built with DP innermost while coordinates follow [TP, CP, PP, DP]: ranks of one TP group take
    different data and slices, and the check must fail."""
    assert_detected(run_mesh(tp=2, cp=2, dp=2, mutation="mesh-dp-innermost"))


def test_check_command(capsys):
    """`python -m minillama parallel-check --tp 2 --dp 2` prints the mesh and the differences, exits 0."""
    assert check.main(["--tp", "2", "--dp", "2"]) == 0
    out = capsys.readouterr().out
    assert "Mesh [TP=2, CP=1, PP=1, DP=2]" in out and ": OK" in out


def test_check_command_refuses_bad_sizes(capsys):
    """A TP size that does not divide the heads exits 2 with the reason."""
    assert check.main(["--tp", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "TP=3 must divide" in err and "TP sizes that fit this model: [1, 2]" in err  # small_args: 4/2 heads
