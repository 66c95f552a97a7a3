"""Grading tests for exercises/ch08_parallelism.py (paper §3.3.2): column- and row-parallel linears, the 1F1B
schedule, Llama 3's context-parallel chunks and FSDP shard/unshard.

References are outside the code under test: F.linear on the full weight, a plain step-by-step pipeline
simulation written here, counts of causal attention pairs, and the flat-padding layout written out with
torch.cat. Ranks are simulated in one process; the all-reduce runs one thread per rank.
"""

import math
import threading

import pytest
import torch
import torch.nn.functional as F

CHAPTER = "ch08_parallelism"


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def close(actual, expected, atol=1e-5, rtol=1e-4):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def run_ranks(fn, n):
    """Run fn(rank, all_reduce) on n threads; all_reduce sums a tensor over the threads (like dist.all_reduce)."""
    barrier = threading.Barrier(n, timeout=10)
    slots, results, errors = [None] * n, [None] * n, []

    def all_reduce_for(rank):
        def all_reduce(t):
            slots[rank] = t.detach().clone()
            barrier.wait()
            total = sum(slots[1:], slots[0].clone())
            barrier.wait()
            return total

        return all_reduce

    def body(rank):
        try:
            results[rank] = fn(rank, all_reduce_for(rank))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------------- 8.1 column-parallel
@pytest.mark.points(2)
@pytest.mark.parametrize("n", [2, 4])
def test_column_parallel_slices_the_output(impl, n):
    """Rank r returns output features [r·d_out/n, (r+1)·d_out/n) of F.linear(x, W); the ranks together give it all."""
    x = torch.randn(2, 3, 8, generator=gen(1))
    w = torch.randn(12, 8, generator=gen(2))
    full = F.linear(x, w)
    outs = [impl.column_parallel_linear(x, w, r, n) for r in range(n)]
    for r, out in enumerate(outs):
        assert out.shape == (2, 3, 12 // n)
        close(out, full[..., r * 12 // n : (r + 1) * 12 // n])
    close(torch.cat(outs, dim=-1), full)


@pytest.mark.points(1)
def test_column_parallel_rejects_uneven_split(impl):
    """10 output features cannot be split over 4 ranks: ValueError."""
    with pytest.raises(ValueError):
        impl.column_parallel_linear(torch.randn(2, 8), torch.randn(10, 8), 0, 4)


# ---------------------------------------------------------------------- 8.2 row-parallel
@pytest.mark.points(3)
@pytest.mark.parametrize("n", [2, 4])
def test_row_parallel_all_reduce_gives_full_output(impl, n):
    """Each rank, given its block of input features, returns F.linear(x_full, W) after the all-reduce (a sum)."""
    x = torch.randn(2, 3, 16, generator=gen(3))
    w = torch.randn(6, 16, generator=gen(4))
    full = F.linear(x, w)
    k = 16 // n
    outs = run_ranks(lambda r, ar: impl.row_parallel_linear(x[..., r * k : (r + 1) * k], w, r, n, ar), n)
    for out in outs:
        close(out, full)


@pytest.mark.points(1)
def test_column_then_row_is_the_mlp(impl):
    """Megatron's pair: column-parallel w1, then row-parallel w2 with one all-reduce, equals the unsplit
    w2(relu(w1 x)) (the nonlinearity is per feature, so it needs no communication)."""
    x = torch.randn(4, 8, generator=gen(5))
    w1, w2 = torch.randn(12, 8, generator=gen(6)), torch.randn(8, 12, generator=gen(7))
    expected = F.linear(F.relu(F.linear(x, w1)), w2)
    outs = run_ranks(
        lambda r, ar: impl.row_parallel_linear(F.relu(impl.column_parallel_linear(x, w1, r, 2)), w2, r, 2, ar), 2
    )
    close(outs[0], expected)
    close(outs[1], expected)


# ---------------------------------------------------------------------- 8.3 1F1B
def simulate(schedule, pp, m, t_f=1.0, t_b=2.0):
    """Plain pipeline simulation: each rank runs its steps in order once their inputs exist.
    Returns (makespan, peak in-flight per rank); raises AssertionError on a stuck or malformed schedule."""
    steps = [[(int(s), int(mb), str(k)) for s, mb, k in rank_steps] for rank_steps in schedule]
    assert len(steps) == pp, f"{len(steps)} step lists for {pp} ranks"
    expected = {(p, i, k) for p in range(pp) for i in range(m) for k in "FB"}
    given = [s for rank_steps in steps for s in rank_steps]
    assert sorted(given) == sorted(expected), "every (stage, micro-batch, kind) exactly once"
    assert all(s[0] == p for p, rank_steps in enumerate(steps) for s in rank_steps), "stage p runs on rank p"
    done, pos, clock = {}, [0] * pp, [0.0] * pp
    in_flight, peak = [0] * pp, [0] * pp
    while any(pos[p] < len(steps[p]) for p in range(pp)):
        moved = False
        for p in range(pp):
            while pos[p] < len(steps[p]):
                s, mb, kind = steps[p][pos[p]]
                if kind == "F":
                    deps = [(s - 1, mb, "F")] if s > 0 else []
                else:
                    deps = [(s, mb, "F")] + ([(s + 1, mb, "B")] if s < pp - 1 else [])
                if any(d not in done for d in deps):
                    break
                start = max([clock[p]] + [done[d] for d in deps])
                clock[p] = done[(s, mb, kind)] = start + (t_f if kind == "F" else t_b)
                in_flight[p] += 1 if kind == "F" else -1
                peak[p] = max(peak[p], in_flight[p])
                pos[p] += 1
                moved = True
        assert moved, "the schedule deadlocks (or runs a backward before its forward)"
    return max(clock), peak


@pytest.mark.points(1)
def test_1f1b_small_example(impl):
    """pp=2, M=3 as in the docstring: rank 0 F0 F1 B0 F2 B1 B2, rank 1 F0 B0 F1 B1 F2 B2."""
    got = [[tuple(s) for s in r] for r in impl.one_f_one_b_schedule(2, 3)]
    assert got == [
        [(0, 0, "F"), (0, 1, "F"), (0, 0, "B"), (0, 2, "F"), (0, 1, "B"), (0, 2, "B")],
        [(1, 0, "F"), (1, 0, "B"), (1, 1, "F"), (1, 1, "B"), (1, 2, "F"), (1, 2, "B")],
    ]


@pytest.mark.points(2)
@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (4, 3), (3, 7)])
def test_1f1b_runs_without_bubble_overhead(impl, pp, m):
    """Runs without deadlock, and takes (M + pp − 1)·(t_f + t_b): the pipeline bubble (pp−1)/M and no more."""
    makespan, _ = simulate(impl.one_f_one_b_schedule(pp, m), pp, m)
    assert makespan == pytest.approx((m + pp - 1) * 3.0)


@pytest.mark.points(2)
@pytest.mark.parametrize("pp,m", [(4, 8), (3, 7), (4, 2)])
def test_1f1b_memory(impl, pp, m):
    """Rank p never holds more than min(pp − p, M) micro-batches of activations (GPipe would hold all M)."""
    _, peak = simulate(impl.one_f_one_b_schedule(pp, m), pp, m)
    assert peak == [min(pp - p, m) for p in range(pp)]


# ---------------------------------------------------------------------- 8.4 context parallel
def causal_pairs(positions):
    """Work of causal attention for queries at these positions: each attends to position+1 keys."""
    return sum(int(p) + 1 for p in positions)


@pytest.mark.points(1)
def test_cp_chunks_are_i_and_mirror(impl):
    """Llama 3: rank i of CP holds chunks i and 2·CP−1−i (FACTS.md §9), e.g. CP=2: (0, 3) and (1, 2)."""
    for cp in (1, 2, 4, 8):
        for i in range(cp):
            assert tuple(impl.cp_chunk_ids(i, cp)) == (i, 2 * cp - 1 - i)


@pytest.mark.points(2)
@pytest.mark.parametrize("cp", [2, 4])
def test_cp_shard_balances_causal_work(impl, cp):
    """Splitting positions 0..S−1: the ranks' tokens cover the sequence once, in order within a rank, and each
    rank's causal-attention work (Σ (position + 1)) is the same."""
    seq = 8 * cp
    pos = torch.arange(seq)[None, :, None].expand(2, seq, 3)  # (b, s, 3): the position in every feature
    parts = [impl.cp_shard(pos, r, cp) for r in range(cp)]
    assert all(p.shape == (2, seq // cp, 3) for p in parts)
    c = seq // (2 * cp)
    for r, part in enumerate(parts):
        expected = torch.cat([torch.arange(r * c, (r + 1) * c), torch.arange((2 * cp - 1 - r) * c, (2 * cp - r) * c)])
        assert torch.equal(part[0, :, 0], expected)
    assert sorted(torch.cat([p[0, :, 0] for p in parts]).tolist()) == list(range(seq))
    work = {causal_pairs(p[0, :, 0]) for p in parts}
    assert len(work) == 1


@pytest.mark.points(1)
def test_cp_shard_rejects_bad_length(impl):
    """A sequence of 10 tokens cannot be cut into 2·CP = 4 chunks: ValueError."""
    with pytest.raises(ValueError):
        impl.cp_shard(torch.zeros(1, 10), 0, 2)


# ---------------------------------------------------------------------- 8.5 FSDP
@pytest.mark.points(2)
@pytest.mark.parametrize("shape,n", [((4, 6), 4), ((5, 3), 4), ((7,), 3), ((2, 3, 5), 8)])
def test_fsdp_shard_layout(impl, shape, n):
    """Equal shards of ceil(numel/n) elements; shard r is elements [r·k, (r+1)·k) of the flattened parameter
    followed by zero padding."""
    p = torch.randn(shape, generator=gen(8))
    k = math.ceil(p.numel() / n)
    padded = torch.cat([p.reshape(-1), torch.zeros(n * k - p.numel())])
    for r in range(n):
        s = impl.fsdp_shard(p, r, n)
        assert s.shape == (k,)
        assert torch.equal(s, padded[r * k : (r + 1) * k])


@pytest.mark.points(2)
@pytest.mark.parametrize("shape,n", [((4, 6), 4), ((5, 3), 4), ((7,), 3), ((2, 3, 5), 8)])
def test_fsdp_unshard_restores(impl, shape, n):
    """Unsharding the shards (written out here as flatten + zero-pad + split) rebuilds the parameter exactly."""
    p = torch.randn(shape, generator=gen(9))
    k = math.ceil(p.numel() / n)
    shards = list(torch.cat([p.reshape(-1), torch.zeros(n * k - p.numel())]).split(k))
    out = impl.fsdp_unshard(shards, tuple(shape))
    assert out.shape == p.shape and torch.equal(out, p)


@pytest.mark.points(1)
def test_fsdp_round_trip_and_sharded_gradient(impl):
    """shard → unshard is the identity, and summing per-rank gradients then sharding (a reduce-scatter) equals
    sharding each gradient and summing the shards."""
    p = torch.randn(3, 7, generator=gen(10))
    shards = [impl.fsdp_shard(p, r, 4) for r in range(4)]
    assert torch.equal(impl.fsdp_unshard(shards, (3, 7)), p)
    grads = [torch.randn(3, 7, generator=gen(20 + r)) for r in range(4)]
    for r in range(4):
        close(impl.fsdp_shard(sum(grads), r, 4), sum(impl.fsdp_shard(g, r, 4) for g in grads))
