"""Data parallelism with bucketed, overlapped gradient all-reduce (minillama.parallel.dp) against one device."""

import torch
import torch.distributed as dist
import torch.nn.functional as F

from minillama.parallel import fourd
from minillama.parallel.dp import DataParallel, broadcast_parameters
from minillama.parallel.launch import launch
from tests.parallel_utils import assert_detected, assert_exact, run_mesh


def _buckets_job(tokens):
    """Tiny buckets (many all-reduces started from backward hooks) give the single-device gradients."""
    args = fourd.small_args()
    ref = fourd.build_model(args)
    F.cross_entropy(fourd.cp_mod.forward(ref, tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
    model = fourd.build_model(args)
    dp = DataParallel(model, dist.group.WORLD, bucket_mb=0.02)
    rows = tokens.chunk(dist.get_world_size())[dist.get_rank()]
    logits = fourd.cp_mod.forward(model, rows[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum") / tokens[:, 1:].numel()
    loss.backward()
    started_in_backward = sum(b.work is not None for b in dp.buckets)
    dp.finish()
    order = [p for b in dp.buckets for p in b.params]
    diff = max((p.grad - q.grad).abs().max().item() for p, q in zip(model.parameters(), ref.parameters()))
    return {
        "n_buckets": len(dp.buckets),
        "started_in_backward": started_in_backward,
        "diff": diff,
        "reverse_order": [id(p) for p in order] == [id(p) for p in reversed(list(model.parameters()))],
    }


def test_bucketed_all_reduce_overlaps_and_sums():
    """With 20 KB buckets the gradients form several buckets in reverse parameter order, every bucket's
    all-reduce starts during backward, and the summed gradients equal one device's (float64, 1e-12)."""
    tokens = torch.randint(0, 256, (4, 17), generator=torch.Generator().manual_seed(3))
    for r in launch(_buckets_job, 2, tokens):
        assert r["n_buckets"] > 3 and r["reverse_order"]
        assert r["started_in_backward"] == r["n_buckets"]
        assert r["diff"] < 1e-12


def test_dp_step_float64():
    """DP=2 with all-reduce: loss, gradients and AdamW-updated weights equal the single-device step (1e-10)."""
    assert_exact(run_mesh(dp=2, dp_mode="ddp"))


def test_dp_step_float32_three_ranks():
    """DP=3 (batch 6), float32 (1e-5)."""
    assert_exact(run_mesh(dp=3, dp_mode="ddp", batch=6, dtype=torch.float32), torch.float32)


def test_averaging_gradients_is_detected():
    """Averaging gradients when the loss is already divided by the global token count scales them by 1/DP:
    the check must fail."""
    assert_detected(run_mesh(dp=2, dp_mode="ddp", mutation="dp-average-instead-of-sum"))


def _broadcast_job():
    model = fourd.build_model(fourd.small_args(), seed=dist.get_rank())  # different weights on each rank
    broadcast_parameters(model, dist.group.WORLD, src=0)
    ref = fourd.build_model(fourd.small_args(), seed=0)
    return all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


def test_broadcast_parameters():
    """broadcast_parameters gives every rank rank 0's weights."""
    assert launch(_broadcast_job, 2) == [True, True]
