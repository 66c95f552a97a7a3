"""Chapter 00 exercises: sizing the herd (paper §1, Table 3).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch00

or run the last cell of notebooks/00_the_herd.ipynb. Use arithmetic on the fields of `ModelArgs` (do not
build a model and do not import `minillama.herd` or `minillama.model.kv_cache`: they are the answer key).
"""

from __future__ import annotations

from minillama.model.config import ModelArgs


def count_parameters(args: ModelArgs) -> int:
    """Parameters of the Llama 3 decoder `args` describes: the embedding (vocab_size · dim), per layer the four
    attention projections, the three SwiGLU matrices (hidden size `args.ffn_hidden_dim`) and two RMSNorm
    weights, the final norm, and the output projection unless `args.tie_word_embeddings` (then it is the
    embedding and counts once)."""
    # Hints: wq and wo are dim x (n_heads·head_dim); wk and wv are dim x (n_kv_heads·head_dim) (grouped-query
    # attention); w1, w3 are dim x hidden and w2 hidden x dim; an RMSNorm has dim weights; nothing has a bias.
    # Check: Llama 3.1-8B has 8,030,261,248 parameters.
    raise NotImplementedError("Exercise 0.1: count_parameters")


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, head_dim: int, seq_len: int = 1, batch: int = 1, bytes_per_element: int = 2
) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens: K and V for every layer and key/value
    head, `head_dim` numbers each, `bytes_per_element` bytes per number (bf16: 2, fp8: 1)."""
    # Hints: two tensors (K and V) per layer; only the key/value heads are cached, not every query head.
    # Check: Llama 3.1-8B (32 layers, 8 KV heads, head_dim 128) needs 128 KiB per token in bf16.
    raise NotImplementedError("Exercise 0.2: kv_cache_bytes")
