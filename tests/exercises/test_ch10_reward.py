"""Grading tests for exercises/ch10_reward.py (paper §4.1.2, §4.2.2): the Bradley–Terry loss without margin, ranked
responses to pairs, pairwise accuracy, and best-of-K selection.

References: the formula −log(1/(1+e^−Δ)) written with math, itertools.combinations, and Python loops.
"""

import itertools
import math

import pytest
import torch

CHAPTER = "ch10_reward"


# ---------------------------------------------------------------------- 10.1 Bradley–Terry
@pytest.mark.points(2)
def test_bradley_terry_equals_the_formula(impl):
    """Per pair −log σ(r_c − r_r) = log(1 + e^−(r_c − r_r)), computed with math.log1p/exp; no margin."""
    c = torch.tensor([0.0, 1.0, -2.0, 3.5, 0.25], dtype=torch.float64)
    r = torch.tensor([0.0, -1.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    got = impl.bradley_terry_loss(c, r)
    assert got.shape == (5,)
    for i in range(5):
        assert float(got[i]) == pytest.approx(math.log1p(math.exp(-(float(c[i]) - float(r[i])))), rel=1e-9)


@pytest.mark.points(1)
def test_bradley_terry_is_stable_and_only_depends_on_the_gap(impl):
    """A gap of −200 gives ≈200 (no inf/NaN); shifting both rewards by a constant changes nothing."""
    got = impl.bradley_terry_loss(torch.tensor([-100.0, 5.0]), torch.tensor([100.0, 4.0]))
    assert torch.isfinite(got).all() and float(got[0]) == pytest.approx(200.0, rel=1e-4)
    shifted = impl.bradley_terry_loss(torch.tensor([-90.0, 15.0]), torch.tensor([110.0, 14.0]))
    torch.testing.assert_close(got, shifted)


# ---------------------------------------------------------------------- 10.2 pairs
@pytest.mark.points(2)
def test_three_ranked_responses_give_three_pairs(impl):
    """edited > chosen > rejected -> [(e, c), (e, r), (c, r)]."""
    assert impl.ranked_to_pairs(["edited", "chosen", "rejected"]) == [
        ("edited", "chosen"),
        ("edited", "rejected"),
        ("chosen", "rejected"),
    ]


@pytest.mark.points(1)
def test_pairs_of_any_ranking(impl):
    """Two responses give one pair; five give the 10 ordered combinations."""
    assert impl.ranked_to_pairs(["a", "b"]) == [("a", "b")]
    items = list(range(5))
    assert impl.ranked_to_pairs(items) == list(itertools.combinations(items, 2))


# ---------------------------------------------------------------------- 10.3 accuracy
@pytest.mark.points(1)
def test_pairwise_accuracy_counts_strict_wins(impl):
    """3 wins, 1 loss and 1 tie out of 5 pairs -> 0.6."""
    better = torch.tensor([1.0, 2.0, 3.0, 0.0, 5.0])
    worse = torch.tensor([0.0, 1.0, 2.0, 1.0, 5.0])
    assert impl.pairwise_accuracy(better, worse) == pytest.approx(0.6)


# ---------------------------------------------------------------------- 10.4 best of K
@pytest.mark.points(2)
def test_best_of_k_matches_a_loop(impl):
    """For every k the chosen index is the first maximum among the first k samples (checked with max/index)."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (20, 8), generator=g).float()
    for k in (1, 2, 5, 8):
        got = impl.best_of_k(scores, k).tolist()
        for row, idx in zip(scores.tolist(), got):
            assert idx == row[:k].index(max(row[:k]))


@pytest.mark.points(1)
def test_best_of_k_rejects_a_bad_k(impl):
    """k = 0 or k > K is a ValueError."""
    scores = torch.zeros(2, 4)
    for k in (0, 5):
        with pytest.raises(ValueError):
            impl.best_of_k(scores, k)
