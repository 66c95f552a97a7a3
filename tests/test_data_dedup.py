"""Exact, MinHash + LSH and line-level dedup (minillama.data.dedup), checked against datasketch and exact Jaccard."""

import random

import numpy as np
import pytest

datasketch = pytest.importorskip("datasketch")

from minillama.data.corpus import Document  # noqa: E402
from minillama.data.dedup import (  # noqa: E402
    exact_dedup,
    jaccard,
    line_dedup,
    lsh_candidate_pairs,
    minhash_permutations,
    minhash_signature,
    minhash_signatures,
    near_dedup,
    near_duplicate_clusters,
    optimal_lsh_params,
    shingles,
)

VOCAB = [f"w{i}" for i in range(400)]


def _family(seed=0, n_bases=6, rates=(0.0, 0.01, 0.03, 0.08, 0.2, 0.5)):
    """Texts: random bases and variants with a fraction of words replaced (a spread of true Jaccard values)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n_bases):
        base = [rng.choice(VOCAB) for _ in range(300)]
        for rate in rates:
            words = list(base)
            for i in rng.sample(range(len(words)), int(rate * len(words))):
                words[i] = rng.choice(VOCAB)
            texts.append(" ".join(words))
    return texts


def _datasketch_minhash(shingle_set, num_perm, seed):
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    m.update_batch([s.encode("utf-8") for s in shingle_set])
    return m


@pytest.mark.parametrize("num_perm,seed,n", [(16, 1, 3), (128, 7, 5), (64, 42, 1)])
def test_minhash_signature_equals_datasketch_legacy(num_perm, seed, n):
    """Same shingles, permutation count and seed: our signature equals datasketch's MinHash(scheme='legacy')
    value for value."""
    for text in _family(seed=seed, n_bases=1)[:3] + ["", "one two"]:
        sh = shingles(text, n)
        ours = minhash_signature(sh, minhash_permutations(num_perm, seed))
        assert np.array_equal(ours, _datasketch_minhash(sh, num_perm, seed).hashvalues)


def test_signature_estimates_jaccard():
    """The fraction of equal signature entries is within 0.1 of the true Jaccard (256 permutations)."""
    texts = _family(n_bases=1)
    sigs = minhash_signatures(texts, num_perm=256, ngram=3, seed=3)
    for j in range(1, len(texts)):
        true = jaccard(shingles(texts[0], 3), shingles(texts[j], 3))
        assert abs(np.mean(sigs[0] == sigs[j]) - true) < 0.1


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
@pytest.mark.parametrize("num_perm", [64, 128])
def test_lsh_params_equal_datasketch(threshold, num_perm):
    """(bands, rows) chosen for a threshold equal datasketch.MinHashLSH's choice (equal FP/FN weights)."""
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert optimal_lsh_params(threshold, num_perm) == (lsh.b, lsh.r)


@pytest.mark.parametrize("bands,rows", [(9, 13), (16, 8), (32, 4)])
def test_lsh_candidate_pairs_equal_datasketch(bands, rows):
    """Our LSH candidate pairs equal the pairs datasketch.MinHashLSH returns for the same signatures and bands."""
    texts = _family(seed=5)
    num_perm, seed = bands * rows, 11
    sets = [shingles(t, 5) for t in texts]
    sigs = np.stack([minhash_signature(s, minhash_permutations(num_perm, seed)) for s in sets])
    ours = lsh_candidate_pairs(sigs, bands, rows)
    lsh = datasketch.MinHashLSH(num_perm=num_perm, params=(bands, rows))
    mins = [_datasketch_minhash(s, num_perm, seed) for s in sets]
    for i, m in enumerate(mins):
        lsh.insert(i, m)
    theirs = {(min(i, j), max(i, j)) for i, m in enumerate(mins) for j in lsh.query(m) if j != i}
    assert ours == theirs and len(ours) > 0


def test_near_duplicates_match_jaccard_threshold_pairs():
    """Confirmed pairs are exactly those with true shingle Jaccard >= threshold, up to LSH misses near the
    threshold: every pair with J >= 0.9 is found, and no pair below the threshold is reported."""
    texts = _family(seed=9)
    threshold = 0.7
    found = near_duplicate_clusters(texts, threshold=threshold, num_perm=128, ngram=5, seed=1)
    sets = [shingles(t, 5) for t in texts]
    truth = {(i, j): jaccard(sets[i], sets[j]) for i in range(len(texts)) for j in range(i + 1, len(texts))}
    assert {p for p, s in truth.items() if s >= 0.9} <= set(found["pairs"])
    assert set(found["pairs"]) <= {p for p, s in truth.items() if s >= threshold}
    for pair, sim in found["pairs"].items():
        assert sim == pytest.approx(truth[pair], abs=1e-3)


def test_near_dedup_keeps_first_of_each_cluster_and_is_deterministic():
    """Near-dup removal keeps the first document of each cluster, reports clusters, and repeats exactly."""
    texts = _family(seed=2, n_bases=3, rates=(0.0, 0.01, 0.5))
    docs = [Document(t, "s", f"d{i}") for i, t in enumerate(texts)]
    kept, report = near_dedup(docs, threshold=0.8)
    assert [d.id for d in kept] == ["d0", "d2", "d3", "d5", "d6", "d8"]
    assert report.details["clusters"] == [["d0", "d1"], ["d3", "d4"], ["d6", "d7"]]
    assert report.docs_removed == 3 and len(report.removed) == 3
    assert near_dedup(docs, threshold=0.8)[0] == kept


def test_exact_dedup_normalizes_case_and_whitespace():
    """Exact dedup treats texts equal after case-folding and whitespace collapsing as copies; keeps the first."""
    docs = [Document("Hello  World\n", "s", "a"), Document("hello world", "s", "b"), Document("hello, world", "s", "c")]
    kept, report = exact_dedup(docs)
    assert [d.id for d in kept] == ["a", "c"]
    assert report.details["clusters"] == {"a": ["b"]}
    assert report.removed == [("b", "exact duplicate of a")]


def test_line_dedup_removes_lines_repeated_more_than_n_times_in_bucket():
    """A line seen 7 times across a bucket is removed (max_repeats=6); one seen 6 times stays; blank lines stay."""
    boiler, common = "Subscribe to our newsletter!", "shared line"
    docs = [
        Document(f"unique {chr(97 + i)}\n\n{boiler}\n" + (f"{common}\n" if i < 6 else ""), "s", str(i))
        for i in range(7)
    ]
    kept, report = line_dedup(docs, max_repeats=6, bucket_size=100)
    assert all(boiler not in d.text for d in kept)
    assert sum(common in d.text for d in kept) == 6
    assert kept[0].text == f"unique a\n\n{common}\n"
    assert report.details["lines_removed"] == 7


def test_line_dedup_counts_per_bucket_and_skips_code_by_default():
    """Counts are per bucket: 8 copies split over buckets of 4 stay; code documents are left alone by default."""
    docs = [Document(f"doc {chr(97 + i)}\nrepeated line\n", "s", str(i)) for i in range(8)]
    assert line_dedup(docs, max_repeats=6, bucket_size=4)[1].details["lines_removed"] == 0
    assert line_dedup(docs, max_repeats=6, bucket_size=8)[1].details["lines_removed"] == 8
    code = [Document(f"{chr(97 + i)} = 1\nelse:\n", "s", str(i), kind="code") for i in range(10)]
    assert line_dedup(code, max_repeats=6)[0] == code
    assert line_dedup(code, max_repeats=6, kinds=None)[1].details["lines_removed"] == 10
