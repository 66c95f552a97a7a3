"""Common mistakes for the chapter 10 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MUTANTS = {
    # keeps Llama 2's margin term (here a margin of 1), which Llama 3 removed
    "bt-with-margin": {"bradley_terry_loss": lambda c, r: -F.logsigmoid(c - r - 1.0)},
    # sign flipped: rewards the rejected response
    "bt-sign-flip": {"bradley_terry_loss": lambda c, r: -F.logsigmoid(r - c)},
    # forgets the log: −σ(Δ) instead of −log σ(Δ)
    "bt-no-log": {"bradley_terry_loss": lambda c, r: -torch.sigmoid(c - r)},
    # only neighbours in the ranking: drops (edited, rejected)
    "pairs-adjacent-only": {"ranked_to_pairs": lambda xs: [(xs[i], xs[i + 1]) for i in range(len(xs) - 1)]},
    # pairs written (worse, better)
    "pairs-reversed": {
        "ranked_to_pairs": lambda xs: [(xs[j], xs[i]) for i in range(len(xs)) for j in range(i + 1, len(xs))]
    },
    # counts ties as right
    "accuracy-ties-count": {"pairwise_accuracy": lambda b, w: float((b >= w).float().mean())},
    # picks the lowest-scoring sample
    "best-of-k-argmin": {"best_of_k": lambda s, k: s[:, :k].argmin(dim=-1)},
    # ignores k and looks at all K samples
    "best-of-k-ignores-k": {"best_of_k": lambda s, k: s.argmax(dim=-1)},
}
