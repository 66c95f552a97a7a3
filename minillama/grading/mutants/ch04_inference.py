"""Common mistakes for the chapter 04 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import torch

from minillama.grading.reference import ch04_inference as ref


def _cache(cache_k, cache_v, k, v, start_pos, how=""):
    b, s = k.shape[:2]
    if how == "not-in-place":
        return torch.cat([cache_k[:b, :start_pos], k], 1), torch.cat([cache_v[:b, :start_pos], v], 1)
    at = start_pos + 1 if how == "off-by-one" else start_pos
    cache_k[:b, at : at + s] = k
    cache_v[:b, at : at + s] = v
    if how == "whole-cache":
        return cache_k[:b], cache_v[:b]
    if how == "new-only":
        return k, v
    return cache_k[:b, : start_pos + s], cache_v[:b, : start_pos + s]


def _top_p(probs, p, generator=None, how=""):
    probs_sorted, order = torch.sort(probs, dim=-1, descending=how != "ascending")
    cum = torch.cumsum(probs_sorted, dim=-1)
    drop = cum > p if how == "one-too-few" else cum - probs_sorted > p
    probs_sorted = probs_sorted.masked_fill(drop, 0.0)
    choice = torch.multinomial(probs_sorted / probs_sorted.sum(-1, keepdim=True), 1, generator=generator)
    return choice if how == "sorted-position" else torch.gather(order, -1, choice)


def _next(logits, temperature, top_p, generator=None, how=""):
    if temperature <= 0:
        return logits.argmax(-1)
    if how == "top-p-before-temperature":
        base = torch.softmax(logits, -1)
        s, order = torch.sort(base, -1, descending=True)
        keep_sorted = (torch.cumsum(s, -1) - s) <= top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        probs = torch.softmax(logits / temperature, -1) * keep
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    scaled = logits * temperature if how == "multiplies" else logits / temperature
    probs = torch.softmax(scaled, -1)
    if top_p >= 1.0 or how == "ignores-top-p":
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return ref.sample_top_p(probs, top_p, generator).squeeze(-1)


@torch.no_grad()
def _greedy(model, prompt, max_new_tokens, stop_tokens=(), how=""):
    prompt = list(prompt)
    model.setup_cache(max_batch_size=1, max_seq_len=len(prompt) + max_new_tokens + 1)
    try:
        if how == "no-prefill":  # only the last prompt token goes in
            logits = model(torch.tensor([prompt[-1:]]), start_pos=len(prompt) - 1)
        else:
            logits = model(torch.tensor([prompt]), start_pos=0)
        out = []
        for i in range(max_new_tokens):
            tok = int(logits[0, -1].argmax())
            if tok in stop_tokens and how != "keeps-stop":
                break
            out.append(tok)
            if tok in stop_tokens:
                break
            pos = len(prompt) + i + (1 if how == "position-off-by-one" else 0)
            logits = model(torch.tensor([[tok]]), start_pos=pos)
    finally:
        model.reset_cache()
    return prompt + out if how == "returns-prompt" else out


MUTANTS = {
    # writes one position too late
    "cache-write-off-by-one": {"kv_cache_update": lambda *a: _cache(*a, how="off-by-one")},
    # returns the whole cache, including unfilled (zero) positions
    "cache-returns-whole-cache": {"kv_cache_update": lambda *a: _cache(*a, how="whole-cache")},
    # concatenates into a new tensor instead of writing the cache: the next call forgets this one
    "cache-not-in-place": {"kv_cache_update": lambda *a: _cache(*a, how="not-in-place")},
    # returns only the new keys/values: the query sees no past
    "cache-returns-new-only": {"kv_cache_update": lambda *a: _cache(*a, how="new-only")},
    # drops the token that crosses p (keeps one token too few)
    "top-p-one-too-few": {"sample_top_p": lambda probs, p, g=None: _top_p(probs, p, g, "one-too-few")},
    # sorts ascending: keeps the least likely tokens
    "top-p-ascending": {"sample_top_p": lambda probs, p, g=None: _top_p(probs, p, g, "ascending")},
    # returns the position in the sorted order, not the token id
    "top-p-sorted-position-not-id": {"sample_top_p": lambda probs, p, g=None: _top_p(probs, p, g, "sorted-position")},
    # multiplies the logits by the temperature
    "temperature-multiplies": {"next_token": lambda l, t, p, g=None: _next(l, t, p, g, "multiplies")},
    # never applies top-p
    "next-token-ignores-top-p": {"next_token": lambda l, t, p, g=None: _next(l, t, p, g, "ignores-top-p")},
    # chooses the top-p set from the untempered probabilities
    "top-p-before-temperature": {"next_token": lambda l, t, p, g=None: _next(l, t, p, g, "top-p-before-temperature")},
    # feeds only the last prompt token: the model never reads the prompt
    "greedy-no-prefill": {"greedy_generate": lambda m, pr, n, stop=(): _greedy(m, pr, n, stop, "no-prefill")},
    # each new token fed one position too far
    "greedy-position-off-by-one": {
        "greedy_generate": lambda m, pr, n, stop=(): _greedy(m, pr, n, stop, "position-off-by-one")
    },
    # returns the stop token as well
    "greedy-keeps-stop-token": {"greedy_generate": lambda m, pr, n, stop=(): _greedy(m, pr, n, stop, "keeps-stop")},
    # returns prompt + new tokens
    "greedy-returns-prompt": {"greedy_generate": lambda m, pr, n, stop=(): _greedy(m, pr, n, stop, "returns-prompt")},
}
