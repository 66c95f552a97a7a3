"""Rejection sampling: K samples per prompt, the reward model keeps the best as new SFT data (paper §4.2.2).

Llama 3 samples K (typically 10–30) outputs per prompt from its latest policy, lets the reward model pick the best,
and fine-tunes on those picks in the next round. Here every prompt is repeated K times in one batch of the KV-cache
generator (`minillama.generate.generate`), each sample is scored by the reward model and, separately, by the task
checker, and we measure:

* best-of-K accuracy: how often the reward model's pick among the first K samples is right, for K = 1, 2, 4, ...;
* pass@K (oracle): how often *any* of the first K samples is right (what a perfect reward model would reach).

`minillama rejection-sample --policy CKPT --reward RM --out DIR` (`minillama.cli.posttrain`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from minillama.model import Transformer
from minillama.posttrain import tasks as T
from minillama.posttrain.reward import score_responses
from minillama.posttrain.sampling import sample_responses


def best_of_k(scores: Tensor, k: int) -> Tensor:
    """Index of the highest-scoring sample among the first k of each prompt. scores (n, K) -> (n,) (first on ties)."""
    if not 1 <= k <= scores.shape[-1]:
        raise ValueError(f"k must be in 1..{scores.shape[-1]}, got {k}")
    return scores[:, :k].argmax(dim=-1)


def best_of_k_curve(rm_scores: Tensor, correct: Tensor, ks: list[int]) -> dict[str, list[float]]:
    """Accuracy of the RM's pick and the oracle pass@k for each k. rm_scores, correct (n, K) -> lists over ks."""
    picked, oracle = [], []
    for k in ks:
        idx = best_of_k(rm_scores, k)
        picked.append(float(correct.float().gather(1, idx[:, None]).mean()))
        oracle.append(float(correct[:, :k].any(dim=1).float().mean()))
    return {"k": list(ks), "rm_best_of_k": picked, "pass_at_k": oracle}


def rejection_sample(
    policy: Transformer,
    rm,
    chat_format,
    tasks: list[T.Task],
    k: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """Sample K per task, score with the RM and the checker; the RM's best of each task is the new SFT data.

    Returns `{"samples", "rm_scores" (n, K), "correct" (n, K), "best" (list of (task, response))}`.
    """
    samples = sample_responses(
        policy,
        chat_format,
        tasks,
        k,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        desc="rejection sampling",
    )
    flat_tasks = [t for t in tasks for _ in range(k)]
    flat = [r for rs in samples for r in rs]
    rm_scores = score_responses(rm, chat_format, flat_tasks, flat).view(len(tasks), k)
    correct = torch.tensor([[T.check(t, r) for r in rs] for t, rs in zip(tasks, samples)])
    idx = best_of_k(rm_scores, k)
    best = [(t, rs[i]) for t, rs, i in zip(tasks, samples, idx.tolist())]
    return {"samples": samples, "rm_scores": rm_scores, "correct": correct, "best": best}


def plot_best_of_k(curve: dict, ax=None):
    """Best-of-K accuracy (RM pick) and pass@K (oracle) against K; returns the figure."""
    # matplotlib only when drawing: importing pyplot is slow
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(curve["k"], curve["rm_best_of_k"], "o-", label="reward model's pick")
    ax.plot(curve["k"], curve["pass_at_k"], "s--", label="any sample right (pass@K)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("K samples per prompt")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Best-of-K")
    ax.legend()
    return ax.figure
