"""Reference answers for exercises/ch04_inference.py: `minillama.model.kv_cache` and `minillama.generate`.

Paper: §6 (inference). The cache exercise is functional (tensors in, tensors out); the answer puts the given
tensors into a `KVCache` and calls its `update`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from minillama.generate import generate
from minillama.generate import next_token as _next_token
from minillama.generate import sample_top_p as _sample_top_p
from minillama.model import Transformer
from minillama.model.kv_cache import KVCache

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.generate", "minillama.model.kv_cache:KVCache")


def kv_cache_update(cache_k: Tensor, cache_v: Tensor, k: Tensor, v: Tensor, start_pos: int) -> tuple[Tensor, Tensor]:
    """Write k, v (b, s, kv, e) into the preallocated caches (max_b, max_s, kv, e) *in place* at positions
    start_pos .. start_pos+s-1 of rows 0..b-1, and return the keys and values of positions 0 .. start_pos+s-1 for
    those rows: two tensors (b, start_pos + s, kv, e)."""
    cache = KVCache(1, 1, 1, 1)
    cache.cache_k, cache.cache_v = cache_k, cache_v  # the module uses the caller's tensors as its buffers
    return cache.update(start_pos, k, v)


def sample_top_p(probs: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Nucleus sampling: sample from the smallest set of most likely tokens whose total probability reaches p
    (the token that crosses p is included), renormalised. probs (b, v) -> token ids (b, 1), int64."""
    return _sample_top_p(probs, p, generator)


def next_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None) -> Tensor:
    """The next token from last-position logits (b, v): argmax at temperature 0; otherwise softmax(logits /
    temperature), then top-p sampling (plain sampling from all tokens when top_p >= 1). -> (b,) int64."""
    return _next_token(logits, temperature, top_p, generator)


def greedy_generate(
    model: Transformer, prompt: Sequence[int], max_new_tokens: int, stop_tokens: Sequence[int] = ()
) -> list[int]:
    """Greedy decoding of one prompt with the KV cache: prefill the prompt with one forward at start_pos 0, then
    feed one new token per step at its position. Returns the new tokens only, ending before the first stop token
    (which is not included), at most max_new_tokens of them."""
    return generate(model, [list(prompt)], max_new_tokens, temperature=0.0, stop_tokens=stop_tokens)[0]
