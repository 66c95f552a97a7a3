"""The key/value cache: keys and values of past positions, kept so each new token costs one position of work.

Layout as in Meta's reference: (max_batch, max_seq_len, n_kv_heads, head_dim) per layer. With grouped-query
attention only the `n_kv_heads` heads are stored, which is GQA's whole memory saving (8 instead of 32 heads for 8B).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KVCache(nn.Module):
    """A preallocated cache for one attention layer."""

    def __init__(
        self,
        max_batch_size: int,
        max_seq_len: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        super().__init__()
        shape = (max_batch_size, max_seq_len, n_kv_heads, head_dim)
        self.register_buffer("cache_k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("cache_v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, start_pos: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (b, s, n_kv_heads, head_dim) at positions start_pos..start_pos+s-1.

        Returns the keys and values of positions 0..start_pos+s-1 for these b rows, (b, start_pos+s, n_kv, e).
        """
        b, s = k.shape[:2]
        max_b, max_s = self.cache_k.shape[:2]
        if b > max_b or start_pos + s > max_s:
            raise ValueError(
                f"KV cache holds {max_b} rows x {max_s} positions; asked for {b} rows up to "
                f"position {start_pos + s}. Call setup_cache with a larger size."
            )
        self.cache_k[:b, start_pos : start_pos + s] = k
        self.cache_v[:b, start_pos : start_pos + s] = v
        return self.cache_k[:b, : start_pos + s], self.cache_v[:b, : start_pos + s]


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, head_dim: int, seq_len: int = 1, batch: int = 1, bytes_per_element: int = 2
) -> int:
    """Bytes of K and V for `seq_len` tokens: 2 · layers · kv_heads · head_dim · bytes, per token (bf16: 2 bytes)."""
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_element * seq_len * batch
