"""Common mistakes for the chapter 08 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# 8.1 -------------------------------------------------------------------------------------------------
def _col_strided(x, weight, rank, world_size):
    # every n-th output feature instead of a contiguous block: the ranks' outputs interleave wrongly
    return F.linear(x, weight[rank::world_size])


def _col_input_dim(x, weight, rank, world_size):
    # splits the input features (dim 1) like a row-parallel layer and the input with it: a partial sum, not a slice
    cols = weight.shape[1] // world_size
    return F.linear(x[..., rank * cols : (rank + 1) * cols], weight[:, rank * cols : (rank + 1) * cols])


# 8.2 -------------------------------------------------------------------------------------------------
def _row_block(weight, rank, world_size):
    cols = weight.shape[1] // world_size
    return weight[:, rank * cols : (rank + 1) * cols]


def _row_no_all_reduce(x_local, weight, rank, world_size, all_reduce):
    # forgets the all-reduce: each rank returns only its partial sum
    return F.linear(x_local, _row_block(weight, rank, world_size))


def _row_mean(x_local, weight, rank, world_size, all_reduce):
    # averages instead of summing (an all-reduce AVG, as for gradients in DP)
    return all_reduce(F.linear(x_local, _row_block(weight, rank, world_size))) / world_size


def _row_rows(x_local, weight, rank, world_size, all_reduce):
    # splits the output rows (column-parallel split) and pads the result: the wrong weight block
    rows = weight.shape[0] // world_size
    w = weight[rank * rows : (rank + 1) * rows, : x_local.shape[-1]]
    out = F.linear(x_local, w)
    return all_reduce(torch.cat([out] * world_size, dim=-1))


# 8.3 -------------------------------------------------------------------------------------------------
def _merge(pp, m, rank, warmup):
    fwd = [(rank, i, "F") for i in range(m)]
    bwd = [(rank, i, "B") for i in range(m)]
    order, f, b = fwd[:warmup], warmup, 0
    while f < m:
        order += [fwd[f], bwd[b]]
        f, b = f + 1, b + 1
    return order + bwd[b:]


def _gpipe(pp_size, n_microbatches):
    # all forwards then all backwards (GPipe): correct results but every rank holds all M activations
    return [
        [(p, i, "F") for i in range(n_microbatches)] + [(p, i, "B") for i in range(n_microbatches)]
        for p in range(pp_size)
    ]


def _warmup_ignores_rank(pp_size, n_microbatches):
    # the same pp−1 warm-up forwards on every rank: later ranks hold more activations than needed
    return [_merge(pp_size, n_microbatches, p, min(pp_size - 1, n_microbatches)) for p in range(pp_size)]


def _no_warmup(pp_size, n_microbatches):
    # strict F, B alternation from the start: rank 0 waits for each micro-batch to cross the whole pipeline
    return [_merge(pp_size, n_microbatches, p, 0) for p in range(pp_size)]


def _backward_reversed(pp_size, n_microbatches):
    # backwards in reverse micro-batch order (as after GPipe): a backward comes before its own forward
    out = []
    for p in range(pp_size):
        steps = _merge(pp_size, n_microbatches, p, min(pp_size - 1 - p, n_microbatches))
        bwd = iter(reversed([s for s in steps if s[2] == "B"]))
        out.append([s if s[2] == "F" else next(bwd) for s in steps])
    return out


# 8.4 -------------------------------------------------------------------------------------------------
def _cp_contiguous(cp_rank, cp_size):
    # two neighbouring chunks: the last rank gets the most expensive part of causal attention
    return 2 * cp_rank, 2 * cp_rank + 1


def _cp_plus_cp(cp_rank, cp_size):
    # chunk i and i + CP: still unbalanced (both chunks move later with the rank)
    return cp_rank, cp_rank + cp_size


def _cp_shard_late_first(x, cp_rank, cp_size):
    # the late chunk first: tokens out of order (RoPE positions and the mask then disagree)
    chunks = x.chunk(2 * cp_size, dim=1)
    return torch.cat([chunks[2 * cp_size - 1 - cp_rank], chunks[cp_rank]], dim=1)


def _cp_shard_halves(x, cp_rank, cp_size):
    # a plain split into CP pieces (no load balancing)
    return x.chunk(cp_size, dim=1)[cp_rank]


# 8.5 -------------------------------------------------------------------------------------------------
def _shard_no_padding(param, rank, world_size):
    # torch.chunk without padding: shards of different sizes (and sometimes fewer than n)
    chunks = param.reshape(-1).chunk(world_size)
    return chunks[rank] if rank < len(chunks) else param.new_zeros(0)


def _shard_strided(param, rank, world_size):
    # every n-th element instead of a contiguous block
    k = math.ceil(param.numel() / world_size)
    flat = torch.cat([param.reshape(-1), param.new_zeros(world_size * k - param.numel())])
    return flat[rank::world_size].clone()


def _shard_pad_front(param, rank, world_size):
    # the padding at the front: the shards no longer start at element r·k
    k = math.ceil(param.numel() / world_size)
    flat = torch.cat([param.new_zeros(world_size * k - param.numel()), param.reshape(-1)])
    return flat[rank * k : (rank + 1) * k].clone()


def _unshard_keeps_padding(shards, shape):
    # forgets to drop the padding before reshaping
    return torch.cat(shards).reshape(shape)


def _unshard_reversed(shards, shape):
    # gathers the shards in reverse rank order
    return torch.cat(list(reversed(shards)))[: math.prod(shape)].reshape(shape)


MUTANTS = {
    "col-strided-rows": {"column_parallel_linear": _col_strided},
    "col-splits-input": {"column_parallel_linear": _col_input_dim},
    "row-no-all-reduce": {"row_parallel_linear": _row_no_all_reduce},
    "row-all-reduce-mean": {"row_parallel_linear": _row_mean},
    "row-splits-rows": {"row_parallel_linear": _row_rows},
    "1f1b-is-gpipe": {"one_f_one_b_schedule": _gpipe},
    "1f1b-warmup-ignores-rank": {"one_f_one_b_schedule": _warmup_ignores_rank},
    "1f1b-no-warmup": {"one_f_one_b_schedule": _no_warmup},
    "1f1b-backward-reversed": {"one_f_one_b_schedule": _backward_reversed},
    "cp-contiguous-chunks": {"cp_chunk_ids": _cp_contiguous},
    "cp-i-and-i-plus-cp": {"cp_chunk_ids": _cp_plus_cp},
    "cp-shard-late-first": {"cp_shard": _cp_shard_late_first},
    "cp-shard-halves": {"cp_shard": _cp_shard_halves},
    "fsdp-no-padding": {"fsdp_shard": _shard_no_padding},
    "fsdp-strided-shard": {"fsdp_shard": _shard_strided},
    "fsdp-pad-front": {"fsdp_shard": _shard_pad_front},
    "fsdp-unshard-keeps-padding": {"fsdp_unshard": _unshard_keeps_padding},
    "fsdp-unshard-reversed": {"fsdp_unshard": _unshard_reversed},
}
