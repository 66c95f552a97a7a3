"""Chapter 08 exercises: the pieces of Llama 3's 4D parallelism (paper §3.3.2), one rank at a time.

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch08

or run the last cell of notebooks/08_parallelism.ipynb. Everything here runs in one process: a "rank" is just an
argument, and the grader plays the other ranks (for the all-reduce it runs one thread per rank). Use torch and
einops; do not import `minillama.parallel` (that is the answer key).

Shapes: n = world_size ranks, d_in / d_out features of a linear layer, b batch, s sequence.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F  # noqa: F401  (F.linear is allowed)
from einops import rearrange  # noqa: F401
from torch import Tensor


# ---------------------------------------------------------------------- 8.1 tensor parallel: column-parallel
def column_parallel_linear(x: Tensor, weight: Tensor, rank: int, world_size: int) -> Tensor:
    """Rank `rank`'s output of a column-parallel linear layer (Megatron; wq/wk/wv and w1/w3 in Llama).

    x (..., d_in) is the full input (every rank has it); weight (d_out, d_in) is the *full* `nn.Linear` weight.
    The rank holds the contiguous block of d_out/n output features number `rank` and returns
    x @ W_rank.T, shape (..., d_out/n). Concatenating the n ranks' outputs gives F.linear(x, weight).
    Raise ValueError if d_out is not divisible by world_size.
    """
    # Hints: an nn.Linear weight is (out_features, in_features): output features are rows (dim 0).
    # Take rows [rank·d_out/n, (rank+1)·d_out/n) (weight.chunk(n, dim=0)[rank]); not every n-th row.
    raise NotImplementedError("Exercise 8.1: column_parallel_linear")


# ---------------------------------------------------------------------- 8.2 tensor parallel: row-parallel
def row_parallel_linear(
    x_local: Tensor, weight: Tensor, rank: int, world_size: int, all_reduce: Callable[[Tensor], Tensor]
) -> Tensor:
    """Rank `rank`'s row-parallel linear layer (wo and w2 in Llama), with its all-reduce.

    x_local (..., d_in/n) is this rank's block of input features (the output of a column-parallel layer);
    weight (d_out, d_in) is the full weight. The rank multiplies by its block of input columns, which gives a
    *partial* sum (..., d_out), and `all_reduce(partial)` returns the sum of the n ranks' partials. Return that
    sum: it equals F.linear(x_full, weight) on every rank.
    """
    # Hints: the rank's weight block is the columns (dim 1) [rank·d_in/n, (rank+1)·d_in/n).
    # The all-reduce is a SUM (not an average); every rank must call it, exactly once.
    raise NotImplementedError("Exercise 8.2: row_parallel_linear")


# ---------------------------------------------------------------------- 8.3 pipeline: 1F1B schedule
def one_f_one_b_schedule(pp_size: int, n_microbatches: int) -> list[list[tuple[int, int, str]]]:
    """The 1F1B pipeline schedule: for each rank p (= stage p), its ordered steps (stage, micro-batch, kind),
    kind 'F' (forward) or 'B' (backward).

    Rank p first runs min(pp−1−p, M) forwards (warm-up), then alternates one forward and one backward until
    the forwards are done, then runs the remaining backwards. Micro-batches go in order 0, 1, …, M−1 in each
    kind. E.g. pp=2, M=3: rank 0: F0 F1 B0 F2 B1 B2 (as tuples (0, 0, 'F'), (0, 1, 'F'), (0, 0, 'B'), …);
    rank 1: F0 B0 F1 B1 F2 B2.
    """
    # Hints: the last rank has no warm-up at all; the pipeline must not deadlock (a backward of micro-batch m
    # on rank p needs the backward of m on rank p+1, a forward needs the forward on rank p−1) and rank p must
    # never hold more than pp−p micro-batches whose backward has not run (that is 1F1B's memory saving).
    raise NotImplementedError("Exercise 8.3: one_f_one_b_schedule")


# ---------------------------------------------------------------------- 8.4 context parallel: chunks
def cp_chunk_ids(cp_rank: int, cp_size: int) -> tuple[int, int]:
    """The two chunks (of 2·cp_size equal chunks of the sequence) that CP rank `cp_rank` holds in Llama 3:
    chunk i and chunk 2·cp_size−1−i, so every rank gets one early (cheap) and one late (expensive) chunk
    of causal attention."""
    # Hints: with cp_size = 2 the sequence is cut into 4 chunks: rank 0 holds (0, 3), rank 1 holds (1, 2).
    raise NotImplementedError("Exercise 8.4a: cp_chunk_ids")


def cp_shard(x: Tensor, cp_rank: int, cp_size: int) -> Tensor:
    """This CP rank's tokens of x (b, s, ...) along dim 1: its two chunks of s/(2·cp_size) tokens, in order
    (the early chunk first). -> (b, s/cp_size, ...). Raise ValueError if s is not divisible by 2·cp_size."""
    # Hints: x.chunk(2 * cp_size, dim=1) gives the chunks; torch.cat the two you hold along dim 1.
    raise NotImplementedError("Exercise 8.4b: cp_shard")


# ---------------------------------------------------------------------- 8.5 FSDP: shard and unshard
def fsdp_shard(param: Tensor, rank: int, world_size: int) -> Tensor:
    """FSDP / ZeRO-3 sharding of one parameter: flatten it, pad with zeros at the end to a multiple of
    world_size, and return rank `rank`'s contiguous 1-D shard of ceil(numel/n) elements.
    Every rank's shard has the same size (collectives need equal sizes)."""
    # Hints: param.reshape(-1); the padded length is n·ceil(numel/n); shard r is flat[r·k:(r+1)·k].
    raise NotImplementedError("Exercise 8.5a: fsdp_shard")


def fsdp_unshard(shards: list[Tensor], shape: tuple[int, ...]) -> Tensor:
    """The inverse (what the all-gather before a layer's forward rebuilds): the full parameter of `shape`
    from the n shards, in rank order, dropping the padding."""
    # Hints: torch.cat(shards), keep the first prod(shape) elements, then .view(shape) / .reshape(shape).
    raise NotImplementedError("Exercise 8.5b: fsdp_unshard")
