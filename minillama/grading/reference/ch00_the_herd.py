"""Reference answers for exercises/ch00_the_herd.py: `minillama.herd.parameter_count` and
`minillama.model.kv_cache.kv_cache_bytes`.

Paper: §1, Table 3 (exact counts: tests/test_config.py, from llama-models).
"""

from __future__ import annotations

from minillama.herd import parameter_count
from minillama.model.config import ModelArgs
from minillama.model.kv_cache import kv_cache_bytes as _kv_cache_bytes

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.herd", "minillama.model.kv_cache:kv_cache_bytes")


def count_parameters(args: ModelArgs) -> int:
    """Parameters of the Llama 3 decoder `args` describes: the embedding (vocab_size · dim), per layer the four
    attention projections, the three SwiGLU matrices (hidden size `args.ffn_hidden_dim`) and two RMSNorm
    weights, the final norm, and the output projection unless `args.tie_word_embeddings` (then it is the
    embedding and counts once)."""
    return parameter_count(args)


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, head_dim: int, seq_len: int = 1, batch: int = 1, bytes_per_element: int = 2
) -> int:
    """Bytes of the KV cache for `batch` sequences of `seq_len` tokens: K and V for every layer and key/value
    head, `head_dim` numbers each, `bytes_per_element` bytes per number (bf16: 2, fp8: 1)."""
    return _kv_cache_bytes(n_layers, n_kv_heads, head_dim, seq_len, batch, bytes_per_element)
