"""Reference answers for exercises/ch08_parallelism.py: thin wrappers around `minillama.parallel`.

Tensor parallel slices with `minillama.parallel.tp.shard` (the split `apply_tp` uses), the 1F1B schedule is
`minillama.parallel.schedules.one_f_one_b` as tuples, the CP chunks are `minillama.parallel.cp`'s, and the FSDP
flat shard follows `minillama.parallel.fsdp.FlatShard`'s layout (flatten, zero-pad to n·ceil(P/n), cut in n).

Paper: §3.3.2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from minillama.parallel.cp import cp_chunks, split_for_cp
from minillama.parallel.schedules import one_f_one_b
from minillama.parallel.tp import shard as _tp_shard

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.parallel",)


def column_parallel_linear(x: Tensor, weight: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank `rank`'s output of a column-parallel linear layer (Megatron; wq/wk/wv and w1/w3 in Llama).

    x (..., d_in) is the full input (every rank has it); weight (d_out, d_in) is the *full* `nn.Linear` weight.
    The rank holds the contiguous block of d_out/n output features number `rank` and returns
    x @ W_rank.T, shape (..., d_out/n). Concatenating the n ranks' outputs gives F.linear(x, weight).
    Raise ValueError if d_out is not divisible by world_size.
    """
    return F.linear(x, _tp_shard(weight, 0, rank, world_size))


def row_parallel_linear(
    x_local: Tensor, weight: Tensor, rank: int, world_size: int, all_reduce: Callable[[Tensor], Tensor]
) -> Tensor:
    """Rank `rank`'s row-parallel linear layer (wo and w2 in Llama), with its all-reduce.

    x_local (..., d_in/n) is this rank's block of input features (the output of a column-parallel layer);
    weight (d_out, d_in) is the full weight. The rank multiplies by its block of input columns, which gives a
    *partial* sum (..., d_out), and `all_reduce(partial)` returns the sum of the n ranks' partials. Return that
    sum: it equals F.linear(x_full, weight) on every rank.
    """
    return all_reduce(F.linear(x_local, _tp_shard(weight, 1, rank, world_size)))


def one_f_one_b_schedule(pp_size: int, n_microbatches: int) -> list[list[tuple[int, int, str]]]:
    """The 1F1B pipeline schedule: for each rank p (= stage p), its ordered steps (stage, micro-batch, kind),
    kind 'F' (forward) or 'B' (backward).

    Rank p first runs min(pp−1−p, M) forwards (warm-up), then alternates one forward and one backward until
    the forwards are done, then runs the remaining backwards. Micro-batches go in order 0, 1, …, M−1 in each
    kind. E.g. pp=2, M=3: rank 0: F0 F1 B0 F2 B1 B2 (as tuples (0, 0, 'F'), (0, 1, 'F'), (0, 0, 'B'), …);
    rank 1: F0 B0 F1 B1 F2 B2.
    """
    return [[tuple(step) for step in steps] for steps in one_f_one_b(pp_size, n_microbatches).steps]


def cp_chunk_ids(cp_rank: int, cp_size: int) -> tuple[int, int]:
    """The two chunks (of 2·cp_size equal chunks of the sequence) that CP rank `cp_rank` holds in Llama 3:
    chunk i and chunk 2·cp_size−1−i, so every rank gets one early (cheap) and one late (expensive) chunk
    of causal attention."""
    return cp_chunks(cp_rank, cp_size)


def cp_shard(x: Tensor, cp_rank: int, cp_size: int) -> Tensor:
    """This CP rank's tokens of x (b, s, ...) along dim 1: its two chunks of s/(2·cp_size) tokens, in order
    (the early chunk first). -> (b, s/cp_size, ...). Raise ValueError if s is not divisible by 2·cp_size."""
    return split_for_cp(x, cp_rank, cp_size, dim=1)


def fsdp_shard(param: Tensor, rank: int, world_size: int) -> Tensor:
    """FSDP / ZeRO-3 sharding of one parameter: flatten it, pad with zeros at the end to a multiple of
    world_size, and return rank `rank`'s contiguous 1-D shard of ceil(numel/n) elements.
    Every rank's shard has the same size (collectives need equal sizes)."""
    k = math.ceil(param.numel() / world_size)
    flat = torch.cat([param.reshape(-1), param.new_zeros(world_size * k - param.numel())])
    return rearrange(flat, "(n k) -> n k", n=world_size)[rank].clone()


def fsdp_unshard(shards: list[Tensor], shape: tuple[int, ...]) -> Tensor:
    """The inverse (what the all-gather before a layer's forward rebuilds): the full parameter of `shape`
    from the n shards, in rank order, dropping the padding."""
    return torch.cat(shards)[: math.prod(shape)].reshape(shape)
