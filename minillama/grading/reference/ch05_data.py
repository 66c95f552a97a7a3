"""Reference answers for exercises/ch05_data.py: `minillama.data.dedup` and `minillama.data.filters`.

Paper: §3.1.1 (de-duplication with MinHash, heuristic filters).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from minillama.data import dedup, filters

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.data.dedup", "minillama.data.filters")


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of the lower-cased, whitespace-split text, each joined by one space.
    A text with fewer than `n` words gives one shingle (all its words); an empty text gives the empty set."""
    return dedup.shingles(text, n)


def minhash_signature(shingle_set: set[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signature (num_perm,) uint64: for k = 0..num_perm-1, the minimum over shingles s of
    ((a_k·h(s) + b_k) mod (2^61 - 1)) & (2^32 - 1), with h(s) the first 4 bytes of SHA-1 of s (UTF-8) read
    little-endian, and a_k, b_k drawn from numpy.random.RandomState(seed): for each k in turn, a_k =
    randint(1, 2^61 - 1) then b_k = randint(0, 2^61 - 1), dtype uint64, arithmetic in uint64. All 2^32 - 1 for
    an empty set."""
    return dedup.minhash_signature(shingle_set, dedup.minhash_permutations(num_perm, seed))


def lsh_candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, of rows of `signatures` (n, num_perm) that are equal on at least one whole band,
    band b being columns b·rows .. (b+1)·rows - 1."""
    return dedup.lsh_candidate_pairs(signatures, bands, rows)


def lsh_collision_probability(s: float, bands: int, rows: int) -> float:
    """Probability that two documents with Jaccard similarity `s` share at least one LSH band."""
    return float(dedup.lsh_collision_probability(s, bands, rows))


def duplicated_ngram_coverage(text: str, n: int = 5) -> float:
    """Fraction of the characters of the whitespace-split words of `text` that lie inside a word n-gram occurring
    more than once in the text; 0.0 when there are fewer than `n` words."""
    return filters.duplicated_ngram_coverage(text, n)


def token_kl_divergence(tokens: Sequence[str], corpus_counts: Counter, corpus_total: int, alpha: float = 1.0) -> float:
    """KL(p_doc || q) in nats: p_doc the empirical distribution of `tokens`; q(t) = (corpus_counts[t] + alpha) /
    (corpus_total + alpha·(len(corpus_counts) + 1)). 0.0 for no tokens."""
    return filters.token_kl_divergence(tokens, corpus_counts, corpus_total, alpha)
