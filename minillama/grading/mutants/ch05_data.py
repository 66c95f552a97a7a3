"""Common mistakes for the chapter 05 exercises; the grader's self-check proves the tests catch each one."""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter

import numpy as np

from minillama.grading.reference import ch05_data as ref

P = np.uint64((1 << 61) - 1)
MASK = np.uint64((1 << 32) - 1)


def _shingles(text, n=5, how=""):
    words = text.split() if how == "case-kept" else text.lower().split()
    if len(words) < n:
        return set() if how == "short-text-empty" else ({" ".join(words)} if words else set())
    stop = len(words) - n if how == "off-by-one" else len(words) - n + 1
    return {" ".join(words[i : i + n]) for i in range(stop)}


def _minhash(shingle_set, num_perm=128, seed=1, how=""):
    rng = np.random.RandomState(seed)
    if how == "all-a-then-all-b":
        a = rng.randint(1, P, size=num_perm, dtype=np.uint64)
        b = rng.randint(0, P, size=num_perm, dtype=np.uint64)
    else:
        ab = [(rng.randint(1, P, dtype=np.uint64), rng.randint(0, P, dtype=np.uint64)) for _ in range(num_perm)]
        a, b = np.array(ab, dtype=np.uint64).T
    if not shingle_set:
        return np.full(num_perm, MASK, dtype=np.uint64)
    fmt = ">I" if how == "big-endian-hash" else "<I"
    h = np.array([struct.unpack(fmt, hashlib.sha1(s.encode()).digest()[:4])[0] for s in shingle_set], dtype=np.uint64)
    permuted = h[:, None] * a + b
    permuted = permuted & MASK if how == "no-mod-prime" else (permuted % P) & MASK
    return permuted.max(axis=0) if how == "max-not-min" else permuted.min(axis=0)


def _lsh(signatures, bands, rows, how=""):
    pairs = set()
    n_bands = bands - 1 if how == "last-band-skipped" else bands
    for band in range(n_bands):
        if how == "overlapping-bands":
            cols = slice(band, band + rows)
        elif how == "strided-bands":
            cols = slice(band, band + bands * rows, bands)
        else:
            cols = slice(band * rows, (band + 1) * rows)
        if how == "whole-signature":
            cols = slice(None)
        buckets = {}
        for i, sig in enumerate(signatures):
            buckets.setdefault(sig[cols].tobytes(), []).append(i)
        for members in buckets.values():
            for x in members:
                for y in members:
                    if x < y or (how == "both-orders" and x != y):
                        pairs.add((x, y))
    return pairs


def _coverage(text, n=5, how=""):
    words = text.lower().split() if how == "lowercased" else text.split()
    if len(words) < n:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = [False] * len(words)
    seen = set()
    limit = 2 if how == "count-gt-2" else 1
    for i, g in enumerate(grams):
        if counts[g] > limit and (how != "repeats-only" or g in seen):
            for j in range(i, i + n):
                covered[j] = True
        seen.add(g)
    if how == "words-not-chars":
        return sum(covered) / len(words)
    return sum(len(w) for w, c in zip(words, covered) if c) / sum(len(w) for w in words)


def _kl(tokens, corpus_counts, corpus_total, alpha=1.0, how=""):
    if not tokens:
        return 0.0
    slots = len(corpus_counts) if how == "no-unseen-slot" else len(corpus_counts) + 1
    denom = corpus_total + alpha * slots
    log = math.log2 if how == "log2" else math.log
    total = 0.0
    for t, c in Counter(tokens).items():
        p, q = c / len(tokens), (corpus_counts.get(t, 0) + alpha) / denom
        total += q * log(q / p) if how == "reversed" else p * log(p / q)
    return total


def _with(fn, how):
    return lambda *a, **k: fn(*a, how=how, **k)


MUTANTS = {
    # lower-casing forgotten: "The" and "the" become different shingles
    "shingles-case-kept": {"shingles": _with(_shingles, "case-kept")},
    # range(len(words) - n): the last n-gram is lost
    "shingles-off-by-one": {"shingles": _with(_shingles, "off-by-one")},
    # short documents get no shingles at all, so they can never be matched
    "shingles-short-text-empty": {"shingles": _with(_shingles, "short-text-empty")},
    # max instead of min: still a sketch, but not MinHash (and not datasketch's)
    "minhash-max-not-min": {"minhash_signature": _with(_minhash, "max-not-min")},
    # the mod (2^61 - 1) step skipped
    "minhash-no-mod-prime": {"minhash_signature": _with(_minhash, "no-mod-prime")},
    # the permutation parameters drawn in a different order (all a's, then all b's)
    "minhash-all-a-then-all-b": {"minhash_signature": _with(_minhash, "all-a-then-all-b")},
    # the SHA-1 prefix read big-endian
    "minhash-big-endian-hash": {"minhash_signature": _with(_minhash, "big-endian-hash")},
    # bands start at every column instead of every `rows` columns
    "lsh-overlapping-bands": {"lsh_candidate_pairs": _with(_lsh, "overlapping-bands")},
    # band b takes every bands-th column instead of a contiguous block
    "lsh-strided-bands": {"lsh_candidate_pairs": _with(_lsh, "strided-bands")},
    # requires the whole signature to agree: no banding, so near-duplicates are missed
    "lsh-whole-signature": {"lsh_candidate_pairs": _with(_lsh, "whole-signature")},
    # every pair reported twice, as (i, j) and (j, i)
    "lsh-both-orders": {"lsh_candidate_pairs": _with(_lsh, "both-orders")},
    # range(bands - 1): the last band is never compared
    "lsh-last-band-skipped": {"lsh_candidate_pairs": _with(_lsh, "last-band-skipped")},
    # bands and rows swapped in the S-curve
    "collision-swapped": {"lsh_collision_probability": lambda s, bands, rows: 1 - (1 - s**bands) ** rows},
    # "all bands agree" instead of "at least one band agrees"
    "collision-all-bands": {"lsh_collision_probability": lambda s, bands, rows: (s**rows) ** bands},
    # fraction of words instead of characters
    "coverage-words-not-chars": {"duplicated_ngram_coverage": _with(_coverage, "words-not-chars")},
    # only the second and later occurrences marked, not the first
    "coverage-repeats-only": {"duplicated_ngram_coverage": _with(_coverage, "repeats-only")},
    # text lower-cased before counting n-grams
    "coverage-lowercased": {"duplicated_ngram_coverage": _with(_coverage, "lowercased")},
    # an n-gram must occur three times to count
    "coverage-count-gt-2": {"duplicated_ngram_coverage": _with(_coverage, "count-gt-2")},
    # KL(q || p) instead of KL(p || q)
    "kl-reversed": {"token_kl_divergence": _with(_kl, "reversed")},
    # no probability mass left for unseen tokens
    "kl-no-unseen-slot": {"token_kl_divergence": _with(_kl, "no-unseen-slot")},
    # bits instead of nats
    "kl-log2": {"token_kl_divergence": _with(_kl, "log2")},
}

assert set(ref.__dict__) >= {name for m in MUTANTS.values() for name in m}
