"""Text generation with the KV cache: greedy, temperature and top-p (nucleus) sampling, several stop tokens,
a batch of prompts of different lengths, seeded and reproducible.

How a batch of unequal prompts works (as in Meta's reference): all rows are decoded together from the shortest
prompt's end; while a row is still inside its own prompt, its prompt token overrides the sampled one. Causal
attention only ever looks back, so every row sees exactly its own tokens.

Paper: §6 (inference). Stop tokens of the Llama 3.1 chat format: `<|end_of_text|>`, `<|eom_id|>`, `<|eot_id|>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from minillama.model import Transformer


def sample_top_p(probs: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Sample from the smallest set of most likely tokens whose total probability reaches `p`. (b, v) -> (b, 1).

    A token is kept when the probability mass *before* it (in descending order) is still below p, so the token
    that crosses p is kept too.
    """
    probs_sorted, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(probs_sorted, dim=-1) - probs_sorted
    probs_sorted = probs_sorted.masked_fill(mass_before > p, 0.0)
    probs_sorted = probs_sorted / probs_sorted.sum(dim=-1, keepdim=True)
    choice = torch.multinomial(probs_sorted, num_samples=1, generator=generator)
    return torch.gather(order, -1, choice)


def next_token(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """Pick the next token from last-position logits (b, v): argmax at temperature 0, else top-p sampling. -> (b,)"""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
    return sample_top_p(probs, top_p, generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model: Transformer,
    prompt_tokens: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop_tokens: Iterable[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
    return_stop: bool = False,
) -> list[list[int]] | tuple[list[list[int]], list[int | None]]:
    """Continue each prompt by up to `max_new_tokens` tokens; returns the new tokens of each row.

    A row ends at its first stop token (not included in the output); `stop_tokens` may be any iterable, read once.
    With `return_stop=True`, also returns per row the stop token that ended it, or None when it ran out of tokens
    (for a chat model: `<|eom_id|>`, waiting for a tool, or `<|eot_id|>`, done). `seed` makes sampling
    reproducible. `use_cache=False` recomputes the whole sequence at every step (slow; for checking the cache).
    """
    stop_ids = sorted(set(stop_tokens))
    if isinstance(prompt_tokens, Tensor):
        prompt_tokens = prompt_tokens.tolist()
    if not prompt_tokens or any(len(p) == 0 for p in prompt_tokens):
        raise ValueError("every prompt needs at least one token (e.g. <|begin_of_text|>)")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    bsz = len(prompt_tokens)
    lengths = [len(p) for p in prompt_tokens]
    total_len = max(lengths) + max_new_tokens
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    limit = min(model.args.max_seq_len, model.freqs_cis.shape[0])
    if total_len > limit:
        raise ValueError(
            f"prompt ({max(lengths)} tokens) + max_new_tokens ({max_new_tokens}) = {total_len} positions exceed the "
            f"model's context (max_seq_len = {limit}); ask for at most {max(0, limit - max(lengths))} new tokens"
        )
    vocab = model.args.vocab_size
    if any(not 0 <= t < vocab for p in prompt_tokens for t in p):
        raise ValueError(f"prompt token ids must be in [0, {vocab})")

    device = model.tok_embeddings.weight.device
    stop = torch.tensor(stop_ids, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    tokens = torch.zeros((bsz, total_len), dtype=torch.long, device=device)
    is_prompt = torch.zeros((bsz, total_len), dtype=torch.bool, device=device)
    for i, p in enumerate(prompt_tokens):
        tokens[i, : len(p)] = torch.tensor(p, dtype=torch.long, device=device)
        is_prompt[i, : len(p)] = True
    finished = torch.zeros(bsz, dtype=torch.bool, device=device)

    was_training = model.training
    model.eval()
    if use_cache:
        model.setup_cache(max_batch_size=bsz, max_seq_len=total_len)
    try:
        prev = 0
        for cur in range(min(lengths), total_len):
            if use_cache:
                logits = model(tokens[:, prev:cur], start_pos=prev)
                prev = cur
            else:
                logits = model(tokens[:, :cur])
            nxt = next_token(logits[:, -1], temperature, top_p, generator)
            nxt = torch.where(is_prompt[:, cur], tokens[:, cur], nxt)
            tokens[:, cur] = nxt
            finished |= ~is_prompt[:, cur] & torch.isin(nxt, stop)
            if bool(finished.all()):
                break
    finally:
        model.reset_cache()
        model.train(was_training)

    out, ended_by = [], []
    for i, n in enumerate(lengths):
        row = tokens[i, n : n + max_new_tokens].tolist()
        cut = next((j for j, t in enumerate(row) if t in stop_ids), len(row))
        out.append(row[:cut])
        ended_by.append(row[cut] if cut < len(row) else None)
    return (out, ended_by) if return_stop else out
