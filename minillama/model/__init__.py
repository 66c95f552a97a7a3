"""The model, bottom layer of the package (paper §3.2): `config` (ModelArgs with Meta's field names, the herd's
presets), `rope` (rotary embeddings and the Llama 3.1 frequency scaling), `kv_cache`, and `model` (the decoder as
one page). Everything above imports from here; this package imports nothing else from minillama."""

from minillama.model.config import DEFAULT_PRESET, PRESETS, ModelArgs, RopeScaling, ffn_hidden_dim
from minillama.model.kv_cache import KVCache, kv_cache_bytes
from minillama.model.model import Attention, FeedForward, RMSNorm, Transformer, TransformerBlock, causal_mask
from minillama.model.rope import apply_rope_scaling, apply_rotary_emb, precompute_freqs_cis, rope_frequencies

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "ModelArgs",
    "RopeScaling",
    "ffn_hidden_dim",
    "KVCache",
    "kv_cache_bytes",
    "Attention",
    "FeedForward",
    "RMSNorm",
    "Transformer",
    "TransformerBlock",
    "causal_mask",
    "apply_rope_scaling",
    "apply_rotary_emb",
    "precompute_freqs_cis",
    "rope_frequencies",
]
