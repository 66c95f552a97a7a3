"""Megatron tensor parallelism (minillama.parallel.tp) on 2 CPU processes, against torch on one device."""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from minillama.parallel import fourd
from minillama.parallel.launch import launch
from minillama.parallel.tp import (
    ColumnParallelLinear,
    RowParallelLinear,
    VocabParallelEmbedding,
    vocab_parallel_cross_entropy,
)
from tests.parallel_utils import assert_detected, assert_exact, run_mesh


def _layers_job():
    """Each TP layer against its single-device torch counterpart, outputs and gradients (float64)."""
    torch.manual_seed(0)  # same full tensors on both ranks
    group, rank, T = dist.group.WORLD, dist.get_rank(), dist.get_world_size()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    lin = nn.Linear(8, 6, bias=False).double()
    r = torch.randn(2, 5, 6, dtype=torch.float64)  # a random upstream gradient
    diffs = {}

    # column-parallel: y_t = the rank's 3 columns of x Wᵀ; x.grad all-reduced over ranks
    x_ref = x.clone().requires_grad_()
    (F.linear(x_ref, lin.weight) * r).sum().backward()
    col, x_t = ColumnParallelLinear(lin, group), x.clone().requires_grad_()
    y_t = col(x_t)
    (y_t * r.chunk(T, -1)[rank]).sum().backward()
    diffs["column_out"] = (y_t - F.linear(x, lin.weight).chunk(T, -1)[rank]).abs().max().item()
    diffs["column_x_grad"] = (x_t.grad - x_ref.grad).abs().max().item()
    diffs["column_w_grad"] = (col.weight.grad - lin.weight.grad.chunk(T, 0)[rank]).abs().max().item()
    lin.weight.grad = None

    # row-parallel: input split along features, output all-reduced (replicated)
    row = RowParallelLinear(lin, group)
    x_ref = x.clone().requires_grad_()
    (F.linear(x_ref, lin.weight) * r).sum().backward()
    x_t = x.chunk(T, -1)[rank].clone().requires_grad_()
    y = row(x_t)
    (y * r).sum().backward()
    diffs["row_out"] = (y - F.linear(x, lin.weight)).abs().max().item()
    diffs["row_x_grad"] = (x_t.grad - x_ref.grad.chunk(T, -1)[rank]).abs().max().item()
    diffs["row_w_grad"] = (row.weight.grad - lin.weight.grad.chunk(T, 1)[rank]).abs().max().item()

    # vocab-parallel embedding
    emb = nn.Embedding(10, 4).double()
    tokens = torch.randint(0, 10, (2, 7))
    q = torch.randn(2, 7, 4, dtype=torch.float64)
    (emb(tokens) * q).sum().backward()
    vemb = VocabParallelEmbedding(emb, group)
    out = vemb(tokens)
    (out * q).sum().backward()
    diffs["embedding_out"] = (out - emb(tokens)).abs().max().item()
    diffs["embedding_grad"] = (vemb.weight.grad - emb.weight.grad.chunk(T, 0)[rank]).abs().max().item()

    # vocab-parallel cross-entropy against F.cross_entropy on the full logits
    logits = (torch.randn(3, 4, 10, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.randint(0, 10, (3, 4))
    ref = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    ref.sum().backward()
    logits_t = logits.detach().chunk(T, -1)[rank].clone().requires_grad_()
    loss = vocab_parallel_cross_entropy(logits_t, targets, group)
    loss.sum().backward()
    diffs["ce_loss"] = (loss - ref).abs().max().item()
    diffs["ce_grad"] = (logits_t.grad - logits.grad.chunk(T, -1)[rank]).abs().max().item()
    return diffs


def test_tp_layers_match_torch():
    """Column/row-parallel linears, vocab-parallel embedding and cross-entropy: outputs and gradients equal
    torch's single-device F.linear / nn.Embedding / F.cross_entropy (float64, 1e-12) on both ranks."""
    for diffs in launch(_layers_job, 2):
        assert max(diffs.values()) < 1e-12, diffs


def test_tp_step_float64():
    """TP=2: loss, gradients and AdamW-updated weights of every shard equal the single-device step (1e-10)."""
    assert_exact(run_mesh(tp=2))


def test_tp_step_tied_embeddings_float32():
    """TP=2 with the output tied to the embedding (Llama 3.2 1B/3B), float32 (1e-5)."""
    worst = run_mesh(tp=2, dtype=torch.float32, args=fourd.small_args(tie_word_embeddings=True))
    assert_exact(worst, torch.float32)


def test_forgotten_all_reduce_is_detected():
    """A row-parallel layer that returns its partial sum without the all-reduce must fail the check."""
    assert_detected(run_mesh(tp=2, mutation="row-parallel-no-all-reduce"))


def test_tp_size_must_divide_heads():
    """TP=3 with 4 heads / 2 KV heads is refused with a ValueError that names the sizes."""
    with pytest.raises(ValueError, match="TP=3 must divide n_heads=4"):
        run_mesh(tp=3)
