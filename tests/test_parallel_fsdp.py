"""FSDP / ZeRO-3 (minillama.parallel.fsdp): sharded parameters, gradients and AdamW state, against one device."""

import torch
import torch.distributed as dist

from minillama.parallel import fourd
from minillama.parallel.fsdp import FullyShardedDataParallel
from minillama.parallel.launch import launch
from tests.parallel_utils import assert_detected, assert_exact, run_mesh


def _memory_job():
    model = fourd.build_model(fourd.small_args())
    sizes = [p.numel() for p in model.parameters()]
    fsdp = FullyShardedDataParallel(model, dist.group.WORLD)
    empty_before = all(p.numel() == 0 for p in model.parameters())
    opt = torch.optim.AdamW(fsdp.parameters())
    tokens = torch.randint(0, 256, (1, 9))
    logits = fourd.cp_mod.forward(model, tokens[:, :-1])  # forward pre-hooks gather every unit
    gathered = [p.numel() for p in model.parameters()]
    logits.sum().backward()
    fsdp.reduce_scatter_grads()
    opt.step()
    fsdp.reshard()
    state = sum(t.numel() for s in opt.state.values() for t in s.values() if t.dim() > 0)
    return {
        "total": sum(sizes),
        "units": len(fsdp.units),
        "shard": sum(p.numel() for p in fsdp.parameters()),
        "empty_before": empty_before,
        "gathered_ok": gathered == sizes,
        "adam_state": state,
        "empty_after": all(p.numel() == 0 for p in model.parameters()),
        "grad_sizes": [u.shard.grad.numel() == u.shard_numel for u in fsdp.units],
    }


def test_each_rank_stores_one_third():
    """On 3 ranks each rank keeps ceil(P_unit/3) of each unit (one per block + the rest), the AdamW moments only
    for its shard, the full weights only between the first forward and `reshard()`."""
    for r in launch(_memory_job, 3):
        assert r["units"] == 5 and r["empty_before"] and r["gathered_ok"] and r["empty_after"]
        assert r["total"] / 3 <= r["shard"] <= r["total"] / 3 + r["units"]
        assert r["adam_state"] == 2 * r["shard"] and all(r["grad_sizes"])


def test_fsdp_step_float64():
    """FSDP over 2 ranks: loss, gradients and AdamW-updated weights equal the single-device step (1e-10)."""
    assert_exact(run_mesh(dp=2, dp_mode="fsdp"))


def test_fsdp_step_uneven_shards_float32():
    """FSDP over 3 ranks (the flat vectors need padding), float32 (1e-5)."""
    assert_exact(run_mesh(dp=3, dp_mode="fsdp", batch=6, dtype=torch.float32), torch.float32)


def test_missing_reduce_scatter_is_detected():
    """A rank that keeps its own gradient shard without the reduce-scatter must fail the check."""
    assert_detected(run_mesh(dp=2, dp_mode="fsdp", mutation="fsdp-skip-reduce-scatter"))


def _bf16_job():
    """bf16 model: float32 master shards, bf16 all-gather, gradients summed in float32."""
    model = fourd.build_model(fourd.small_args(), dtype=torch.bfloat16)
    fsdp = FullyShardedDataParallel(model, dist.group.WORLD)
    tokens = torch.randint(0, 256, (1, 9), generator=torch.Generator().manual_seed(dist.get_rank()))
    fourd.cp_mod.forward(model, tokens).float().sum().backward()
    gathered_dtypes = {p.dtype for p in model.parameters()}
    mine = {n: p.grad.float() for n, p in model.named_parameters()}
    expected = {}
    for n, g in mine.items():  # the float32 sum over ranks of the bf16 gradients, computed here by hand
        parts = [torch.empty_like(g) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, g)
        expected[n] = sum(parts)
    fsdp.reduce_scatter_grads()
    got = fsdp.full_grads()
    return (
        {u.shard.dtype for u in fsdp.units},
        {u.shard.grad.dtype for u in fsdp.units},
        gathered_dtypes,
        max((got[n] - expected[n]).abs().max().item() for n in expected),
    )


def test_bf16_model_keeps_float32_shards_and_reduces_in_float32():
    """The paper's mixed precision: bf16 weights are gathered for compute, the shards (and AdamW) stay float32,
    and the gradient reduce-scatter runs in float32 (equal to the float32 sum of the ranks' bf16 gradients)."""
    for shard_dtypes, grad_dtypes, compute_dtypes, diff in launch(_bf16_job, 2):
        assert shard_dtypes == grad_dtypes == {torch.float32} and compute_dtypes == {torch.bfloat16}
        assert diff == 0.0
