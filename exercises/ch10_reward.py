"""Chapter 10 exercises: the reward model and rejection sampling (paper §4.1.2, §4.2.2).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch10

or run the last cell of notebooks/10_reward_and_rejection_sampling.ipynb. Use torch and the standard library only;
do not import `minillama.posttrain` (that is the answer key).
"""

from __future__ import annotations

import torch.nn.functional as F  # noqa: F401  (F.logsigmoid is allowed)
from torch import Tensor


def bradley_terry_loss(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Per-pair reward-model loss −log σ(r_chosen − r_rejected), with no margin term. (n,), (n,) -> (n,)."""
    # Hints: Llama 2 subtracted a margin m(r) inside the sigmoid; Llama 3 removed it.
    # F.logsigmoid is stable where log(torch.sigmoid(x)) underflows for very negative x.
    raise NotImplementedError("Exercise 10.1: bradley_terry_loss")


def ranked_to_pairs(ranked: list) -> list[tuple]:
    """Responses ordered best first -> every (better, worse) pair, in order: [e, c, r] -> [(e, c), (e, r), (c, r)]."""
    # Hints: every response is better than every response after it, not only its neighbour;
    # itertools.combinations keeps the order.
    raise NotImplementedError("Exercise 10.2: ranked_to_pairs")


def pairwise_accuracy(better_rewards: Tensor, worse_rewards: Tensor) -> float:
    """Fraction of pairs whose better response gets a strictly higher reward."""
    # Hints: a tie is not a correct ranking. Return a Python float.
    raise NotImplementedError("Exercise 10.3: pairwise_accuracy")


def best_of_k(scores: Tensor, k: int) -> Tensor:
    """scores (n, K) -> (n,) index of the highest score among the first k samples of each prompt (first on ties)."""
    # Hints: slice the first k columns, then argmax over the sample axis. Raise ValueError when k is not in 1..K.
    raise NotImplementedError("Exercise 10.4: best_of_k")
