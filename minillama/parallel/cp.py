"""Context parallelism (CP) as in Llama 3: 2×CP chunks per sequence, K/V all-gathered (paper §3.3.2).

Long sequences (128K tokens) are split along the sequence over the CP group. Causal attention makes later tokens
more expensive (token i attends to i+1 keys), so a plain split into CP pieces would give the last rank ~2× the
average work. Llama 3 cuts the sequence into 2·CP chunks and gives rank i the chunks i and 2·CP−1−i: an early
and a late chunk, the same work on every rank.

    CP = 2, 8 tokens, chunks of 2:   [0 1][2 3][4 5][6 7]
    rank 0 holds chunks 0 and 3:     tokens 0 1 6 7
    rank 1 holds chunks 1 and 2:     tokens 2 3 4 5

Everything outside attention is per token, so it runs unchanged on the local tokens. Attention computes Q for
the local tokens only, and all-gathers K and V from the CP group (with GQA they are small: n_kv_heads of
n_heads; O(S) bytes against O(S²) compute). The mask compares true positions: local query at position p sees
every gathered key at a position ≤ p. RoPE also uses the true positions. The all-gather's backward is a
reduce-scatter: each rank's keys were used by every rank's queries, so their gradients are summed back.

Shapes: b batch, S full sequence, s = S/CP local tokens, c = S/(2·CP) chunk, h/k query/key heads, e head_dim.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from minillama.model import Attention
from minillama.model.rope import apply_rotary_emb


def cp_chunks(cp_rank: int, cp: int) -> tuple[int, int]:
    """The two chunk indices rank `cp_rank` holds out of 2·cp: (i, 2·cp − 1 − i)."""
    if not 0 <= cp_rank < cp:
        raise ValueError(f"cp_rank {cp_rank} outside a CP group of {cp}")
    return cp_rank, 2 * cp - 1 - cp_rank


def cp_positions(seq_len: int, cp_rank: int, cp: int) -> Tensor:
    """Global positions (s,) of this rank's tokens, for a full sequence of `seq_len` (divisible by 2·cp)."""
    if seq_len % (2 * cp):
        raise ValueError(f"sequence length {seq_len} must be divisible by 2·CP = {2 * cp}")
    chunks = rearrange(torch.arange(seq_len), "(n c) -> n c", n=2 * cp)
    return torch.cat([chunks[i] for i in cp_chunks(cp_rank, cp)])


def split_for_cp(x: Tensor, cp_rank: int, cp: int, dim: int = 1) -> Tensor:
    """This rank's tokens of `x` along `dim` (the sequence): (.., S, ..) -> (.., S/cp, ..)."""
    return x.index_select(dim, cp_positions(x.shape[dim], cp_rank, cp).to(x.device))


class _GatherSeq(torch.autograd.Function):
    """All-gather along the sequence (dim 1) forward; reduce-scatter of the gradient backward."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx, grad):
        parts = [p.contiguous() for p in grad.chunk(dist.get_world_size(ctx.group), dim=1)]
        out = torch.empty_like(parts[0])
        dist.reduce_scatter(out, parts, group=ctx.group)
        return out, None


def gather_sequence(x: Tensor, group) -> Tensor:
    """(b, s, ...) local -> (b, CP·s, ...), ranks' pieces concatenated in CP-rank order (differentiable)."""
    return _GatherSeq.apply(x, group)


class ContextParallelAttention(nn.Module):
    """The model's attention (same wq/wk/wv/wo modules) with K/V all-gathered over the CP group.

    forward(x (b, s, d), freqs_cis (s, e/2, 2) at the local positions) -> (b, s, d).
    """

    def __init__(self, attention: Attention, group, seq_len: int):
        super().__init__()
        self.wq, self.wk, self.wv, self.wo = attention.wq, attention.wk, attention.wv, attention.wo
        self.n_heads, self.n_kv_heads, self.head_dim = attention.n_heads, attention.n_kv_heads, attention.head_dim
        self.group, cp = group, dist.get_world_size(group)
        self.q_pos = cp_positions(seq_len, dist.get_rank(group), cp)  # (s,)
        self.k_pos = torch.cat([cp_positions(seq_len, r, cp) for r in range(cp)])  # (S,) gathered order

    def forward(self, x: Tensor, freqs_cis: Tensor, start_pos: int = 0, mask: Tensor | None = None) -> Tensor:
        q = rearrange(self.wq(x), "b s (h e) -> b s h e", e=self.head_dim)
        k = rearrange(self.wk(x), "b s (k e) -> b s k e", e=self.head_dim)
        v = rearrange(self.wv(x), "b s (k e) -> b s k e", e=self.head_dim)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
        k, v = gather_sequence(k, self.group), gather_sequence(v, self.group)  # (b, S, k, e)
        causal = self.k_pos[None, :].to(x.device) <= self.q_pos[:, None].to(x.device)  # (s, S)
        q, k, v = (rearrange(t, "b s h e -> b h s e") for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, enable_gqa=self.n_heads != self.n_kv_heads)
        return self.wo(rearrange(out, "b h s e -> b s (h e)"))


def apply_cp(model: nn.Module, group, seq_len: int) -> nn.Module:
    """Give every block of `model` context-parallel attention for sequences of `seq_len` tokens, in place.

    Parameter names are unchanged. Run the model with `forward(model, local_tokens, cp_positions(...))`.
    """
    cp = dist.get_world_size(group)
    if seq_len % (2 * cp):
        raise ValueError(f"sequence length {seq_len} must be divisible by 2·CP = {2 * cp}: pad or change CP")
    layers = model.layers.values() if isinstance(model.layers, nn.ModuleDict) else model.layers
    for layer in layers:
        layer.attention = ContextParallelAttention(layer.attention, group, seq_len)
    return model


def forward(model: nn.Module, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
    """`Transformer.forward` for tokens (b, s) at any positions (s,).

    With positions 0..s−1 on one device this is exactly `model(tokens)`; under CP pass
    `cp_positions(S, cp_rank, cp)` so that RoPE rotates each token by its true position.
    """
    return model.output(model.hidden_states(tokens, positions=positions))  # no float32 cast: float64 stays exact
