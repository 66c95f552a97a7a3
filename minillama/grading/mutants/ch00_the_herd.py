"""Common mistakes for the chapter 00 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

from minillama.model.config import ModelArgs


def _params(a: ModelArgs, how: str = "") -> int:
    d, e = a.dim, a.head_dim
    kv_heads = a.n_heads if how == "kv-heads-are-query-heads" else a.n_kv_heads
    hidden = 4 * d if how == "ffn-4d" else a.ffn_hidden_dim
    norms = 0 if how == "no-norms" else 2 * d
    layer = 2 * d * a.n_heads * e + 2 * d * kv_heads * e + 3 * d * hidden + norms
    output = 0 if a.tie_word_embeddings and how != "always-untied" else a.vocab_size * d
    return a.n_layers * layer + a.vocab_size * d + output + (0 if how == "no-norms" else d)


def _kv(n_layers, n_kv_heads, head_dim, seq_len=1, batch=1, bytes_per_element=2, how=""):
    kv = 1 if how == "forgets-v" else 2
    if how == "ignores-batch":
        batch = 1
    if how == "hardcoded-bf16":
        bytes_per_element = 2
    return kv * n_layers * n_kv_heads * head_dim * bytes_per_element * seq_len * batch


MUTANTS = {
    # wk and wv sized for every query head (forgets grouped-query attention)
    "params-kv-heads-are-query-heads": {"count_parameters": lambda a: _params(a, "kv-heads-are-query-heads")},
    # counts the output projection even when it is tied to the embedding
    "params-always-untied": {"count_parameters": lambda a: _params(a, "always-untied")},
    # forgets the RMSNorm weights
    "params-no-norms": {"count_parameters": lambda a: _params(a, "no-norms")},
    # FFN hidden size 4·dim instead of the SwiGLU rule
    "params-ffn-4d": {"count_parameters": lambda a: _params(a, "ffn-4d")},
    # caches K only
    "kv-forgets-v": {"kv_cache_bytes": lambda *a, **k: _kv(*a, **k, how="forgets-v")},
    # ignores the batch size
    "kv-ignores-batch": {"kv_cache_bytes": lambda *a, **k: _kv(*a, **k, how="ignores-batch")},
    # always 2 bytes per element, even for fp8
    "kv-hardcoded-bf16": {"kv_cache_bytes": lambda *a, **k: _kv(*a, **k, how="hardcoded-bf16")},
}
