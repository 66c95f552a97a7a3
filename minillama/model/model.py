"""The Llama 3 decoder, one page: RMSNorm, SwiGLU feed-forward, grouped-query attention with RoPE, the block, the model.

Module and parameter names are those of Meta's reference (`llama_models/llama3/model.py`), so a `consolidated.pth`
state dict loads as is: `tok_embeddings`, `layers.{i}.attention.{wq,wk,wv,wo}`, `layers.{i}.feed_forward.{w1,w2,w3}`,
`layers.{i}.attention_norm`, `layers.{i}.ffn_norm`, `norm`, `output`.

Shapes: b batch, s sequence (this call), t positions attended (cache + this call), d dim, h heads,
k key/value heads, r = h/k query heads per key/value head, e head_dim, v vocab.

Paper: §3.2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from minillama.model.config import ModelArgs
from minillama.model.kv_cache import KVCache
from minillama.model.rope import apply_rotary_emb, precompute_freqs_cis


class RMSNorm(nn.Module):
    """`x / sqrt(mean(x²) + eps) · weight`, computed in float32 (eps inside the square root)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # (..., d) -> (..., d)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class FeedForward(nn.Module):
    """SwiGLU: `w2(silu(w1 x) · w3 x)`, hidden size from Meta's rule (`ModelArgs.ffn_hidden_dim`)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down

    def forward(self, x: Tensor) -> Tensor:  # (b, s, d) -> (b, s, d)
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def causal_mask(seq_len: int, start_pos: int, device=None) -> Tensor:
    """Boolean (s, start_pos + s) mask, True where query i (at position start_pos + i) may attend to key j."""
    q_pos = torch.arange(start_pos, start_pos + seq_len, device=device)
    k_pos = torch.arange(start_pos + seq_len, device=device)
    return k_pos[None, :] <= q_pos[:, None]


class Attention(nn.Module):
    """Multi-head attention with grouped key/value heads (GQA), RoPE, and an optional KV cache."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)
        self.cache: KVCache | None = None

    def forward(self, x: Tensor, freqs_cis: Tensor, start_pos: int = 0, mask: Tensor | None = None) -> Tensor:
        """x (b, s, d), freqs_cis (s, e/2, 2) for positions start_pos.. -> (b, s, d)."""
        q = rearrange(self.wq(x), "b s (h e) -> b s h e", e=self.head_dim)
        k = rearrange(self.wk(x), "b s (k e) -> b s k e", e=self.head_dim)
        v = rearrange(self.wv(x), "b s (k e) -> b s k e", e=self.head_dim)
        q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
        if self.cache is not None:
            k, v = self.cache.update(start_pos, k, v)  # (b, t, k, e) with t = start_pos + s
        elif start_pos != 0:
            raise ValueError("start_pos > 0 needs a KV cache: call model.setup_cache(...) first")
        q, k, v = (rearrange(t, "b s h e -> b h s e") for t in (q, k, v))
        # enable_gqa lets query head j read key/value head j // r without materialising r copies of K and V.
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and q.shape[2] > 1,
            enable_gqa=self.n_heads != self.n_kv_heads,
        )
        return self.wo(rearrange(out, "b h s e -> b s (h e)"))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: `h = x + attention(norm(x))`, `out = h + feed_forward(norm(h))`."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, args.ffn_hidden_dim)
        self.attention_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x: Tensor, freqs_cis: Tensor, start_pos: int = 0, mask: Tensor | None = None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), freqs_cis, start_pos, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    """The Llama 3 decoder: token embedding, `n_layers` blocks, a final RMSNorm and the output projection."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(i, args) for i in range(args.n_layers))
        self.norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.tie_word_embeddings:
            self.output.weight = self.tok_embeddings.weight
        # (2·max_seq_len, e/2, 2) table of (cos, sin); not a checkpoint tensor.
        self.register_buffer("freqs_cis", precompute_freqs_cis(args), persistent=False)

    def rotations(self, seq_len: int, start_pos: int = 0, positions: Tensor | None = None) -> Tensor:
        """RoPE's (cos, sin) for `seq_len` tokens at positions start_pos.., or at explicit `positions` (s,):
        (s, e/2, 2). Context parallelism holds two non-contiguous chunks of a sequence and passes their positions."""
        if positions is not None:
            return self.freqs_cis[positions.to(self.freqs_cis.device)]
        if start_pos + seq_len > self.freqs_cis.shape[0]:
            raise ValueError(
                f"positions up to {start_pos + seq_len} exceed the RoPE table "
                f"({self.freqs_cis.shape[0]}); raise ModelArgs.max_seq_len"
            )
        return self.freqs_cis[start_pos : start_pos + seq_len]

    def hidden_states(
        self, tokens: Tensor, start_pos: int = 0, mask: Tensor | None = None, positions: Tensor | None = None
    ) -> Tensor:
        """tokens (b, s) at positions start_pos.. (or at `positions` (s,)) -> final-normed hidden states (b, s, d).

        `mask` (bool, broadcastable to (b, h, s, t), True = may attend) replaces the causal default, e.g. a
        block-diagonal causal mask that keeps packed documents from seeing each other.
        """
        seq_len = tokens.shape[1]
        freqs_cis = self.rotations(seq_len, start_pos, positions)
        h = self.tok_embeddings(tokens)
        # With a cache and several new tokens, query i may see all cached keys plus new keys up to itself.
        if mask is None and start_pos > 0 and seq_len > 1:
            mask = causal_mask(seq_len, start_pos, tokens.device)
        for layer in self.layers:
            h = layer(h, freqs_cis, start_pos, mask)
        return self.norm(h)

    def forward(self, tokens: Tensor, start_pos: int = 0, mask: Tensor | None = None) -> Tensor:
        """tokens (b, s) int64 at positions start_pos.. -> logits (b, s, v): float32 (float64 for a float64 model)."""
        logits = self.output(self.hidden_states(tokens, start_pos, mask))
        return logits if logits.dtype == torch.float64 else logits.float()

    # ------------------------------------------------------------------ KV cache
    def setup_cache(
        self, max_batch_size: int | None = None, max_seq_len: int | None = None, dtype: torch.dtype | None = None
    ) -> None:
        """Give every attention layer an empty cache of (max_batch_size, max_seq_len) positions."""
        batch = max_batch_size or self.args.max_batch_size
        seq = max_seq_len or self.args.max_seq_len
        ref = self.tok_embeddings.weight
        for layer in self.layers:
            layer.attention.cache = KVCache(
                batch, seq, self.args.n_kv_heads, self.args.head_dim, dtype=dtype or ref.dtype, device=ref.device
            )

    def reset_cache(self) -> None:
        """Drop the caches (training and plain forwards run without one)."""
        for layer in self.layers:
            layer.attention.cache = None

    # ------------------------------------------------------------------ initialisation
    @torch.no_grad()
    def init_weights(self, std: float = 0.02, seed: int | None = None) -> Transformer:
        """Normal(0, std) for weights, with the residual outputs (`wo`, `w2`) scaled by 1/sqrt(2·n_layers)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                scale = 1 / math.sqrt(2 * self.args.n_layers) if name.endswith(("wo.weight", "w2.weight")) else 1
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std * scale)
        return self

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameter count (a tied output counts once)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok_embeddings.weight.numel() if exclude_embeddings else n
