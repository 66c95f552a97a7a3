"""Megatron tensor parallelism (TP) for the Llama 3 decoder, with plain all-reduces (paper §3.3.2).

TP splits every weight matrix of a layer across the TP group (the innermost mesh dimension: 8 GPUs on NVLink in
the paper). Two kinds of linear layer do it with one all-reduce each way per pair:

    column-parallel  W (out, in) split by rows:    y_t = x W_tᵀ        x replicated -> y split along features
    row-parallel     W (out, in) split by columns: y = Σ_t x_t W_tᵀ    x split      -> y replicated (all-reduce)

    attention:  wq, wk, wv column-parallel, split by heads (rank t holds query heads t·h/T.. and key/value heads
                t·k/T..; with GQA query head j reads key/value head j // (h/k), which stays on the same rank)
                wo row-parallel
    SwiGLU:     w1, w3 column-parallel, w2 row-parallel   (silu(w1 x)·w3 x is element-wise, so it stays local)
    embedding:  vocab-parallel (rank t holds rows t·V/T..; tokens outside its range give 0; all-reduce)
    output:     column-parallel, logits stay split over the vocabulary; `vocab_parallel_cross_entropy` computes
                the loss from the split logits with three all-reduces of (b, s) numbers instead of gathering
                (b, s, V) logits.

Two autograd functions carry the communication (Megatron's f and g):
    `copy_to_tp`:     forward identity,    backward all-reduce   (at the input of a column-parallel layer)
    `reduce_from_tp`: forward all-reduce,  backward identity     (at the output of a row-parallel layer)
Here every column-parallel layer carries its own f, so backward all-reduces the input gradient of wq, wk and wv
separately (and of w1 and w3); Megatron fuses those matrices so that one all-reduce serves each group.
Norm weights are replicated; their gradients come out identical on every TP rank, so they need no reduction.

Shapes: b batch, s sequence, d dim, v vocab, T TP size; a trailing `_t` means "this rank's 1/T share".
`TP_PLAN` names how each weight is split; `apply_tp(model, group)` rewrites a `Transformer` in place.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

#: How each weight is split over TP: dim 0 (rows: column-parallel / vocab-parallel), dim 1 (row-parallel),
#: None = replicated. Keys are the last component of the module name.
TP_PLAN = {"wq": 0, "wk": 0, "wv": 0, "wo": 1, "w1": 0, "w3": 0, "w2": 1, "tok_embeddings": 0, "output": 0}


def shard(weight: Tensor, dim: int, rank: int, size: int) -> Tensor:
    """This rank's contiguous 1/size of `weight` along `dim` (a copy)."""
    if weight.shape[dim] % size:
        raise ValueError(f"cannot split {tuple(weight.shape)} into {size} equal parts along dim {dim}")
    pattern = "(t rows) ... -> t rows ..." if dim == 0 else "out (t cols) -> t out cols"
    return rearrange(weight.detach(), pattern, t=size)[rank].clone()


def tp_slice(name: str, full: Tensor, rank: int, size: int) -> Tensor:
    """The part of the single-device tensor `name` (e.g. 'layers.0.attention.wq.weight') that TP rank holds."""
    parts = name.split(".")
    key = parts[-2] if parts[-1] == "weight" else parts[-1]
    dim = TP_PLAN.get(key)
    return full if dim is None or size == 1 else shard(full, dim, rank, size)


# ---------------------------------------------------------------------------------------- communication
class _CopyToTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)  # every rank's partial input gradient, summed
        return grad, None


class _ReduceFromTP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        x = x.contiguous().clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def copy_to_tp(x: Tensor, group) -> Tensor:
    """Megatron's f: identity forward, all-reduce of the gradient backward."""
    return _CopyToTP.apply(x, group)


def reduce_from_tp(x: Tensor, group) -> Tensor:
    """Megatron's g: all-reduce (sum of partial results) forward, identity backward."""
    return _ReduceFromTP.apply(x, group)


# ---------------------------------------------------------------------------------------- layers
class ColumnParallelLinear(nn.Module):
    """y_t = x W_tᵀ with W_t (out/T, in) the rows of this rank: (b, s, in) replicated -> (b, s, out/T)."""

    def __init__(self, full: nn.Linear, group):
        super().__init__()
        self.group, rank, size = group, dist.get_rank(group), dist.get_world_size(group)
        self.weight = nn.Parameter(shard(full.weight, 0, rank, size))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(copy_to_tp(x, self.group), self.weight)


class RowParallelLinear(nn.Module):
    """y = Σ_t x_t W_tᵀ with W_t (out, in/T) the columns of this rank: (b, s, in/T) -> (b, s, out) replicated."""

    def __init__(self, full: nn.Linear, group):
        super().__init__()
        self.group, rank, size = group, dist.get_rank(group), dist.get_world_size(group)
        self.weight = nn.Parameter(shard(full.weight, 1, rank, size))

    def forward(self, x_t: Tensor) -> Tensor:
        return reduce_from_tp(F.linear(x_t, self.weight), self.group)


class VocabParallelEmbedding(nn.Module):
    """Rows [t·V/T, (t+1)·V/T) of the embedding: tokens (b, s) -> (b, s, d), summed over the TP group."""

    def __init__(self, full: nn.Embedding, group):
        super().__init__()
        self.group, rank, size = group, dist.get_rank(group), dist.get_world_size(group)
        self.weight = nn.Parameter(shard(full.weight, 0, rank, size))
        self.vocab_start = rank * self.weight.shape[0]

    def forward(self, tokens: Tensor) -> Tensor:
        local = tokens - self.vocab_start
        mine = (local >= 0) & (local < self.weight.shape[0])
        h = F.embedding(local.clamp(0, self.weight.shape[0] - 1), self.weight) * mine.unsqueeze(-1)
        return reduce_from_tp(h, self.group)


def vocab_parallel_cross_entropy(logits_t: Tensor, targets: Tensor, group) -> Tensor:
    """Cross-entropy per token from logits split over the vocabulary: (b, s, v/T), (b, s) -> (b, s).

    loss = log Σ_v exp(z_v - m) - (z_target - m), with m the global max (an all-reduce MAX, no gradient), the sum
    of exponentials an all-reduce SUM, and z_target taken on the rank that owns the target (all-reduce SUM).
    """
    v_t = logits_t.shape[-1]
    vocab_start = dist.get_rank(group) * v_t
    m = logits_t.detach().amax(-1)
    dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
    shifted = logits_t - m.unsqueeze(-1)
    sum_exp = reduce_from_tp(shifted.exp().sum(-1), group)
    local = targets - vocab_start
    mine = (local >= 0) & (local < v_t)
    picked = shifted.gather(-1, local.clamp(0, v_t - 1).unsqueeze(-1)).squeeze(-1) * mine
    return sum_exp.log() - reduce_from_tp(picked, group)


def apply_tp(model: nn.Module, group) -> nn.Module:
    """Turn a single-device `Transformer` into its TP shard, in place (parameter names are unchanged).

    Needs n_heads, n_kv_heads, ffn hidden size and vocab divisible by the TP size (KV heads are split, never
    replicated). The output then returns split logits: use `vocab_parallel_cross_entropy`.
    """
    size = dist.get_world_size(group)
    args = model.args
    for what, n in (
        ("n_heads", args.n_heads),
        ("n_kv_heads", args.n_kv_heads),
        ("ffn hidden size", args.ffn_hidden_dim),
        ("vocab_size", args.vocab_size),
    ):
        if n % size:
            raise ValueError(f"TP size {size} must divide {what} ({n}): choose a TP size that divides it")
    layers = model.layers.values() if isinstance(model.layers, nn.ModuleDict) else model.layers
    for layer in layers:
        attn, ffn = layer.attention, layer.feed_forward
        attn.wq, attn.wk, attn.wv = (ColumnParallelLinear(m, group) for m in (attn.wq, attn.wk, attn.wv))
        attn.wo = RowParallelLinear(attn.wo, group)
        attn.n_heads, attn.n_kv_heads = attn.n_heads // size, attn.n_kv_heads // size  # local heads
        ffn.w1, ffn.w3 = ColumnParallelLinear(ffn.w1, group), ColumnParallelLinear(ffn.w3, group)
        ffn.w2 = RowParallelLinear(ffn.w2, group)
    tied = (
        getattr(model, "output", None) is not None
        and getattr(model, "tok_embeddings", None) is not None
        and model.output.weight is model.tok_embeddings.weight
    )
    if getattr(model, "tok_embeddings", None) is not None:
        model.tok_embeddings = VocabParallelEmbedding(model.tok_embeddings, group)
    if getattr(model, "output", None) is not None:
        model.output = ColumnParallelLinear(model.output, group)
        if tied:
            model.output.weight = model.tok_embeddings.weight
    return model
