"""Shared helpers of the parallel tests: run a mesh against one device, optionally with a planted bug.

A *mutation* is a common mistake applied inside every worker before the step runs; the tests assert that the
check then fails (the comparison is able to see that kind of bug).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from minillama.parallel import cp as cp_mod
from minillama.parallel import dp as dp_mod
from minillama.parallel import fourd, fsdp
from minillama.parallel import mesh as mesh_mod
from minillama.parallel import tp as tp_mod
from minillama.parallel.launch import launch


def _row_parallel_without_all_reduce():
    tp_mod.RowParallelLinear.forward = lambda self, x: F.linear(x, self.weight)


def _cp_drop_chunk():  # rank i holds chunk i twice; chunk 2·CP−1−i is never seen
    cp_mod.cp_chunks = lambda cp_rank, cp: (cp_rank, cp_rank)


def _cp_rope_local_positions():  # RoPE rotates by 0..s−1 on every rank instead of the true positions
    original = cp_mod.forward
    cp_mod.forward = lambda model, tokens, positions=None: original(model, tokens, None)


def _mesh_dp_innermost():  # groups from a grid with DP innermost, coordinates from the paper's formula
    mesh_mod.grid = lambda tp=1, cp=1, pp=1, dp=1: (
        torch.arange(tp * cp * pp * dp).view(tp, cp, pp, dp).permute(3, 2, 1, 0)
    )


def _dp_average_instead_of_sum():  # loss already divided by the global token count: averaging divides twice
    def start(self, group):
        self.flat = torch.cat([p.grad.reshape(-1) for p in self.params])
        self.work = dist.all_reduce(self.flat, op=dist.ReduceOp.AVG, group=group, async_op=True)

    dp_mod.Bucket.start = start


def _fsdp_skip_reduce_scatter():  # each rank keeps its own shard of its own gradient, never summed
    def reduce_scatter_grad(self):
        flat = self._pad(
            torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros(s, dtype=self.dtype))
                    .reshape(-1)
                    .to(self.master_dtype)
                    for p, s in zip(self.params, self.shapes)
                ]
            )
        )
        self.shard.grad = flat.view(self.n, -1)[dist.get_rank(self.group)].clone()
        for p in self.params:
            p.grad = None

    fsdp.FlatShard.reduce_scatter_grad = reduce_scatter_grad


MUTATIONS = {
    "row-parallel-no-all-reduce": _row_parallel_without_all_reduce,
    "cp-drop-chunk": _cp_drop_chunk,
    "cp-rope-local-positions": _cp_rope_local_positions,
    "mesh-dp-innermost": _mesh_dp_innermost,
    "dp-average-instead-of-sum": _dp_average_instead_of_sum,
    "fsdp-skip-reduce-scatter": _fsdp_skip_reduce_scatter,
}


def _rank(sizes, args, tokens, reference, dtype, dp_mode, pipeline, mutation):
    if mutation:
        MUTATIONS[mutation]()
    result = fourd.train_step(sizes, args, tokens, dtype=dtype, dp_mode=dp_mode, **pipeline)
    return fourd.compare(result, reference, sizes)


def run_mesh(
    tp=1,
    cp=1,
    pp=1,
    dp=1,
    *,
    dtype=torch.float64,
    dp_mode="fsdp",
    mutation=None,
    batch=4,
    seq_len=16,
    args=None,
    schedule="1f1b",
    n_microbatches=None,
    virtual_stages=1,
    seed=0,
):
    """Worst |difference| (loss, grads, params) of one step on the mesh against the single-device step."""
    args = args or fourd.small_args()
    fourd.validate_layout(args, tp, cp, pp, dp, batch, seq_len, n_microbatches, virtual_stages)
    tokens = torch.randint(0, args.vocab_size, (batch, seq_len + 1), generator=torch.Generator().manual_seed(seed))
    reference = fourd.reference_step(args, tokens, dtype=dtype)
    sizes = {"tp": tp, "cp": cp, "pp": pp, "dp": dp}
    pipeline = dict(schedule=schedule, n_microbatches=n_microbatches, virtual_stages=virtual_stages)
    per_rank = launch(
        _rank, math.prod(sizes.values()), sizes, args, tokens, reference, dtype, dp_mode, pipeline, mutation, timeout=60
    )
    return fourd.summarize(per_rank, reference)


TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def assert_exact(worst: dict, dtype=torch.float64) -> None:
    """Loss, gradients and parameters after AdamW all within the dtype's tolerance."""
    bad = {k: worst[k] for k in ("loss", "grads", "params") if not worst[k] <= TOL[dtype]}
    assert not bad, f"differences above {TOL[dtype]:.0e}: {bad}"


def assert_detected(worst: dict) -> None:
    """A planted bug must show as a loss or gradient difference far above any rounding."""
    assert max(worst["loss"], worst["grads"]) > 1e-6, f"the bug went unnoticed: {worst}"
