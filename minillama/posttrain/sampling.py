"""Sampling from a policy and measuring it, shared by every post-training stage (paper §4.1–4.2): K responses per
prompt from the KV-cache generator, greedy answers, and the held-out exact-match accuracy each stage reports."""

from __future__ import annotations

import torch

from minillama.generate import generate
from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.utils import progress

__all__ = ["sample_responses", "greedy_responses", "evaluate_accuracy"]


@torch.no_grad()
def sample_responses(
    model: Transformer,
    chat_format,
    tasks: list[T.Task],
    k: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 24,
    seed: int = 0,
    batch_size: int = 64,
    desc: str = "sampling",
) -> list[list[str]]:
    """K responses per task (a list of K strings each), decoded until eot/eom or `max_new_tokens`."""
    model.eval()
    prompts = [chat_format.encode_dialog_prompt(t.messages(system=False)) for t in tasks]
    flat = [p for p in prompts for _ in range(k)]
    stops = (chat_format.eot_id, chat_format.eom_id)
    texts: list[str] = []
    for i in progress(range(0, len(flat), batch_size), desc=desc):
        outs = generate(
            model,
            flat[i : i + batch_size],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop_tokens=stops,
            seed=seed + i,
        )
        texts += [chat_format.tokenizer.decode(o) for o in outs]
    model.reset_cache()
    return [texts[j * k : (j + 1) * k] for j in range(len(tasks))]


def greedy_responses(
    model: Transformer, chat_format, tasks: list[T.Task], max_new_tokens: int = 24, batch_size: int = 64
) -> list[str]:
    """One greedy response per task."""
    return [
        r[0]
        for r in sample_responses(
            model,
            chat_format,
            tasks,
            1,
            temperature=0.0,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            desc="greedy",
        )
    ]


def evaluate_accuracy(model: Transformer, chat_format, tasks: list[T.Task], **kwargs) -> dict:
    """Held-out exact-match accuracy of greedy answers, overall and per task kind."""
    responses = greedy_responses(model, chat_format, tasks, **kwargs)
    per_kind = {}
    for kind in T.KINDS:
        pairs = [(t, r) for t, r in zip(tasks, responses) if t.kind == kind]
        if pairs:
            per_kind[kind] = sum(T.check(t, r) for t, r in pairs) / len(pairs)
    return {"accuracy": T.accuracy(tasks, responses), "per_kind": per_kind, "examples": responses[:4]}
