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
    return {"total": sum(sizes), "units": len(fsdp.units), "shard": sum(p.numel() for p in fsdp.parameters()),
            "empty_before": empty_before, "gathered_ok": gathered == sizes, "adam_state": state,
            "empty_after": all(p.numel() == 0 for p in model.parameters()),
            "grad_sizes": [u.shard.grad.numel() == u.shard_numel for u in fsdp.units]}


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
