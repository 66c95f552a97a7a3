"""Context parallelism as in Llama 3 (minillama.parallel.cp): 2×CP chunks, K/V all-gather, against one device."""

import pytest
import torch
import torch.distributed as dist

from minillama.parallel.cp import cp_chunks, cp_positions, gather_sequence, split_for_cp
from minillama.parallel.launch import launch
from tests.parallel_utils import assert_detected, assert_exact, run_mesh


@pytest.mark.parametrize("cp", [1, 2, 3, 4])
def test_chunk_assignment_is_the_papers(cp):
    """Rank i holds chunks i and 2·CP−1−i (FACTS §9): every position exactly once, and every rank has the same
    causal attention work (Σ over its queries of the keys they see)."""
    seq = 4 * 2 * cp
    c = seq // (2 * cp)
    held = []
    for i in range(cp):
        expected = list(range(i * c, (i + 1) * c)) + list(range((2 * cp - 1 - i) * c, (2 * cp - i) * c))
        assert cp_positions(seq, i, cp).tolist() == expected
        held += expected
    assert sorted(held) == list(range(seq))
    work = {sum(p + 1 for p in cp_positions(seq, i, cp).tolist()) for i in range(cp)}
    assert len(work) == 1


def test_chunk_errors():
    """A sequence not divisible by 2·CP, or a rank outside the group, is a ValueError."""
    with pytest.raises(ValueError, match="divisible by 2·CP"):
        cp_positions(10, 0, 3)
    with pytest.raises(ValueError):
        cp_chunks(2, 2)


def _gather_job():
    x = torch.arange(2 * 8 * 3, dtype=torch.float64).view(2, 8, 3)
    rank, cp = dist.get_rank(), dist.get_world_size()
    local = split_for_cp(x, rank, cp).requires_grad_()
    full = gather_sequence(local, dist.group.WORLD)  # pieces in rank order
    weight = torch.linspace(-1, 1, full.numel(), dtype=torch.float64).view_as(full)
    (full * weight).sum().backward()
    order = torch.cat([cp_positions(8, r, cp) for r in range(cp)])
    # every rank's copy of the loss uses this rank's piece: its gradient is the sum over the CP ranks
    expected_grad = weight[:, rank * local.shape[1] : (rank + 1) * local.shape[1]] * cp
    return (torch.equal(full, x[:, order]), torch.allclose(local.grad, expected_grad))


def test_gather_sequence_forward_and_reduce_scatter_backward():
    """The K/V all-gather returns the ranks' chunks in rank order, and its backward reduce-scatters gradients."""
    assert launch(_gather_job, 2) == [(True, True), (True, True)]


def test_cp2_step_float64():
    """CP=2: loss, gradients and AdamW-updated weights equal the single-device step (1e-10)."""
    assert_exact(run_mesh(cp=2))


def test_cp4_step_float32():
    """CP=4 (8 chunks of 4 tokens), FSDP over the 4 CP ranks, float32 (1e-5)."""
    assert_exact(run_mesh(cp=4, seq_len=32, dtype=torch.float32), torch.float32)


@pytest.mark.parametrize("mutation", ["cp-drop-chunk", "cp-rope-local-positions"])
def test_cp_bugs_are_detected(mutation):
    """Dropping a chunk (rank i holds chunk i twice) or rotating by local positions must fail the check."""
    assert_detected(run_mesh(cp=2, mutation=mutation))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_with_positions_is_the_model(dtype):
    """`cp.forward(model, tokens)` (the forward every parallel check uses, positions 0..s−1) gives exactly the
    logits of `Transformer.forward`."""
    from minillama.parallel import fourd
    from minillama.parallel.cp import forward

    model = fourd.build_model(fourd.small_args(), dtype=dtype)
    tokens = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(forward(model, tokens), model(tokens))
        # positions given explicitly: the same call
        assert torch.equal(forward(model, tokens, torch.arange(12)), forward(model, tokens))
