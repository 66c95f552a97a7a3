"""Chapter 05 exercises: the data diet (paper §3.1): MinHash, LSH banding, and two heuristic filters.

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch05

or run the last cell of notebooks/05_data.ipynb. Do not import `minillama.data.dedup` or
`minillama.data.filters` (the answer key); numpy, hashlib, struct and collections are all you need.
"""

from __future__ import annotations

import hashlib  # noqa: F401
import math  # noqa: F401
import struct  # noqa: F401
from collections import Counter
from collections.abc import Sequence

import numpy as np


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of the lower-cased, whitespace-split text, each joined by one space.
    A text with fewer than `n` words gives one shingle (all its words); an empty text gives the empty set."""
    # Hints: words = text.lower().split(); a text with w >= n words has w - n + 1 n-grams (don't lose the last).
    # Near-duplicate detection compares these sets: two documents are similar when their shingle sets overlap.
    raise NotImplementedError("Exercise 5.1: shingles")


def minhash_signature(shingle_set: set[str], num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """MinHash signature (num_perm,) uint64: for k = 0..num_perm-1, the minimum over shingles s of
    ((a_k·h(s) + b_k) mod (2^61 - 1)) & (2^32 - 1), with h(s) the first 4 bytes of SHA-1 of s (UTF-8) read
    little-endian, and a_k, b_k drawn from numpy.random.RandomState(seed): for each k in turn, a_k =
    randint(1, 2^61 - 1) then b_k = randint(0, 2^61 - 1), dtype uint64, arithmetic in uint64. All 2^32 - 1 for
    an empty set."""
    # Hints: h = struct.unpack("<I", hashlib.sha1(s.encode("utf-8")).digest()[:4])[0].
    # rng = np.random.RandomState(seed); draw a_k then b_k inside one loop over k (the order of draws matters):
    # rng.randint(1, p, dtype=np.uint64) with p = np.uint64(2**61 - 1).
    # Vectorize: hashes (n, 1) * a (1, num_perm) + b, then % p, & np.uint64(2**32 - 1), then .min(axis=0).
    # The fraction of positions where two signatures agree estimates the Jaccard similarity of the two sets.
    raise NotImplementedError("Exercise 5.2: minhash_signature")


def lsh_candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, of rows of `signatures` (n, num_perm) that are equal on at least one whole band,
    band b being columns b·rows .. (b+1)·rows - 1."""
    # Hints: for each band, a dict from the band's values (e.g. signatures[i, lo:hi].tobytes()) to the rows
    # that have them; every two rows in one bucket are a candidate pair. Bands are contiguous, not overlapping.
    raise NotImplementedError("Exercise 5.3: lsh_candidate_pairs")


def lsh_collision_probability(s: float, bands: int, rows: int) -> float:
    """Probability that two documents with Jaccard similarity `s` share at least one LSH band."""
    # Hints: one row agrees with probability s; a whole band of `rows` rows with s**rows; the pair is missed
    # only if all `bands` bands disagree. Plot it over s in [0, 1]: an S-curve near (1/bands)**(1/rows).
    raise NotImplementedError("Exercise 5.4: lsh_collision_probability")


def duplicated_ngram_coverage(text: str, n: int = 5) -> float:
    """Fraction of the characters of the whitespace-split words of `text` that lie inside a word n-gram occurring
    more than once in the text; 0.0 when there are fewer than `n` words."""
    # Hints: words = text.split() (case kept); count the n-gram tuples with Counter; mark every word
    # position covered by an n-gram whose count > 1 (all of its occurrences, the first one too);
    # coverage = sum of len(word) over marked words / sum of len(word) over all words.
    raise NotImplementedError("Exercise 5.5: duplicated_ngram_coverage")


def token_kl_divergence(tokens: Sequence[str], corpus_counts: Counter, corpus_total: int, alpha: float = 1.0) -> float:
    """KL(p_doc || q) in nats: p_doc the empirical distribution of `tokens`; q(t) = (corpus_counts[t] + alpha) /
    (corpus_total + alpha·(len(corpus_counts) + 1)). 0.0 for no tokens."""
    # Hints: sum over the distinct tokens t of the document: p(t) * log(p(t) / q(t)), natural log.
    # Tokens the corpus never saw still get q(t) = alpha / (...), so the sum stays finite.
    # Large KL = many tokens that are rare in the corpus (tables, encoded blobs, another language ...).
    raise NotImplementedError("Exercise 5.6: token_kl_divergence")
