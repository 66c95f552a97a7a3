"""Reference answers for exercises/ch10_reward.py: wrappers around `minillama.posttrain` (paper §4.1.2, §4.2.2)."""

from __future__ import annotations

from torch import Tensor

from minillama.posttrain import losses as _losses
from minillama.posttrain import rejection as _rejection
from minillama.posttrain import reward as _reward

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.posttrain",)


def bradley_terry_loss(chosen_rewards: Tensor, rejected_rewards: Tensor) -> Tensor:
    """Per-pair reward-model loss −log σ(r_chosen − r_rejected), with no margin term. (n,), (n,) -> (n,)."""
    return _losses.bradley_terry_loss(chosen_rewards, rejected_rewards)


def ranked_to_pairs(ranked: list) -> list[tuple]:
    """Responses ordered best first -> every (better, worse) pair, in order: [e, c, r] -> [(e, c), (e, r), (c, r)]."""
    return _reward.ranked_to_pairs(ranked)


def pairwise_accuracy(better_rewards: Tensor, worse_rewards: Tensor) -> float:
    """Fraction of pairs whose better response gets a strictly higher reward."""
    return _reward.pairwise_accuracy(better_rewards, worse_rewards)


def best_of_k(scores: Tensor, k: int) -> Tensor:
    """scores (n, K) -> (n,) index of the highest score among the first k samples of each prompt (first on ties)."""
    return _rejection.best_of_k(scores, k)
