"""Chapter 04 exercises: the KV cache, sampling and greedy decoding (paper §6).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch04

or run the last cell of notebooks/04_inference.ipynb. Do not import `minillama.generate` or
`minillama.model.kv_cache` (the answer key); the model (`minillama.model.Transformer`) is yours to call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from minillama.model import Transformer


def kv_cache_update(cache_k: Tensor, cache_v: Tensor, k: Tensor, v: Tensor, start_pos: int) -> tuple[Tensor, Tensor]:
    """Write k, v (b, s, kv, e) into the preallocated caches (max_b, max_s, kv, e) *in place* at positions
    start_pos .. start_pos+s-1 of rows 0..b-1, and return the keys and values of positions 0 .. start_pos+s-1 for
    those rows: two tensors (b, start_pos + s, kv, e)."""
    # Hints: slice assignment writes in place: cache_k[:b, start_pos:start_pos + s] = k.
    # Return slices of the caches (not the whole cache: positions after start_pos + s are not filled yet).
    raise NotImplementedError("Exercise 4.1: kv_cache_update")


def sample_top_p(probs: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Nucleus sampling: sample from the smallest set of most likely tokens whose total probability reaches p
    (the token that crosses p is included), renormalised. probs (b, v) -> token ids (b, 1), int64."""
    # Hints: torch.sort(probs, descending=True) gives probabilities and their token ids;
    # a token is kept while the mass *before* it (cumsum minus itself) is at most p;
    # zero the rest, renormalise, torch.multinomial(..., 1, generator=generator) picks a *sorted position*:
    # map it back to a token id with torch.gather.
    raise NotImplementedError("Exercise 4.2: sample_top_p")


def next_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None) -> Tensor:
    """The next token from last-position logits (b, v): argmax at temperature 0; otherwise softmax(logits /
    temperature), then top-p sampling (plain sampling from all tokens when top_p >= 1). -> (b,) int64."""
    # Hints: temperature divides the logits (T < 1 sharpens, T > 1 flattens) before the softmax;
    # top-p then works on those tempered probabilities (use your sample_top_p).
    raise NotImplementedError("Exercise 4.3: next_token")


def greedy_generate(
    model: Transformer, prompt: Sequence[int], max_new_tokens: int, stop_tokens: Sequence[int] = ()
) -> list[int]:
    """Greedy decoding of one prompt with the KV cache: prefill the prompt with one forward at start_pos 0, then
    feed one new token per step at its position. Returns the new tokens only, ending before the first stop token
    (which is not included), at most max_new_tokens of them."""
    # Hints: model.setup_cache(max_batch_size=1, max_seq_len=len(prompt) + max_new_tokens) before, and
    # model.reset_cache() after (try/finally). model(tokens, start_pos) takes a (1, s) LongTensor and returns
    # logits (1, s, vocab); the next token is the argmax at the last position. The token you just chose sits at
    # position len(prompt) + (number of tokens generated before it). Use torch.no_grad().
    raise NotImplementedError("Exercise 4.4: greedy_generate")
