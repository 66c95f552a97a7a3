"""Grading tests for exercises/ch05_data.py (paper §3.1.1): shingles, MinHash, LSH banding, duplicated n-gram
coverage and token-distribution KL.

Outside references: datasketch's MinHash (scheme="legacy") and MinHashLSH, torch.nn.functional.kl_div, and the
rules written out plainly in the tests.
"""

import random
from collections import Counter

import numpy as np
import pytest
import torch

CHAPTER = "ch05_data"
MAX32 = (1 << 32) - 1


def texts_family(seed=0, n_bases=4, rates=(0.0, 0.02, 0.1, 0.5)):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)]
    out = []
    for _ in range(n_bases):
        base = [rng.choice(vocab) for _ in range(120)]
        for rate in rates:
            words = list(base)
            for i in rng.sample(range(len(words)), int(rate * len(words))):
                words[i] = rng.choice(vocab)
            out.append(" ".join(words))
    return out


def ds_minhash(shingle_set, num_perm, seed):
    datasketch = pytest.importorskip("datasketch")
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme="legacy")
    m.update_batch([s.encode("utf-8") for s in shingle_set])
    return m


# ---------------------------------------------------------------------- 5.1 shingles
@pytest.mark.points(1)
def test_shingles(impl):
    """Lower-cased word n-grams joined by one space, all w - n + 1 of them; short texts give one shingle."""
    text = "The cat sat on The mat"
    words = text.lower().split()
    assert impl.shingles(text, 3) == {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}
    assert impl.shingles("a  B\tc", 2) == {"a b", "b c"}
    assert impl.shingles("only two", 5) == {"only two"}
    assert impl.shingles("", 5) == set()


# ---------------------------------------------------------------------- 5.2 MinHash
@pytest.mark.points(3)
@pytest.mark.parametrize("num_perm, seed", [(16, 1), (128, 7)])
def test_minhash_signature_matches_datasketch(impl, num_perm, seed):
    """The signature equals datasketch.MinHash(num_perm, seed, scheme='legacy') fed the same shingles (UTF-8)."""
    for text in texts_family(seed)[:3]:
        sh = {" ".join(text.split()[i : i + 4]) for i in range(len(text.split()) - 3)}
        out = np.asarray(impl.minhash_signature(sh, num_perm, seed))
        assert out.shape == (num_perm,)
        assert np.array_equal(out.astype(np.uint64), ds_minhash(sh, num_perm, seed).hashvalues)


@pytest.mark.points(1)
def test_minhash_empty_set_and_jaccard_estimate(impl):
    """An empty set gives all 2^32 - 1; agreement between signatures estimates Jaccard within 0.1."""
    assert np.all(np.asarray(impl.minhash_signature(set(), 8, 1)) == MAX32)
    a = {f"s{i}" for i in range(200)}
    b = {f"s{i}" for i in range(50, 250)}
    sa, sb = (np.asarray(impl.minhash_signature(x, 256, 3)) for x in (a, b))
    assert abs(np.mean(sa == sb) - len(a & b) / len(a | b)) < 0.1


# ---------------------------------------------------------------------- 5.3 LSH banding
@pytest.mark.points(3)
@pytest.mark.parametrize("bands, rows", [(8, 4), (4, 8), (5, 3)])
def test_lsh_candidate_pairs_match_datasketch(impl, bands, rows):
    """Candidate pairs equal those of datasketch.MinHashLSH(params=(bands, rows)) on the same signatures."""
    datasketch = pytest.importorskip("datasketch")
    num_perm = bands * rows + 2  # a few columns left over that no band uses
    texts = texts_family(seed=bands)
    mins = [ds_minhash({" ".join(t.split()[i : i + 3]) for i in range(len(t.split()) - 2)}, num_perm, 5) for t in texts]
    lsh = datasketch.MinHashLSH(num_perm=num_perm, params=(bands, rows))
    for i, m in enumerate(mins):
        lsh.insert(i, m)
    expected = {(min(i, j), max(i, j)) for i, m in enumerate(mins) for j in lsh.query(m) if j != i}
    sigs = np.stack([m.hashvalues for m in mins])
    assert set(impl.lsh_candidate_pairs(sigs, bands, rows)) == expected and expected


@pytest.mark.points(1)
def test_lsh_last_band_and_pair_order(impl):
    """Rows equal only on the last band are a pair; pairs are reported once, as (i, j) with i < j."""
    sigs = np.array([[1, 2, 3, 4, 5, 6], [9, 9, 9, 9, 5, 6], [1, 2, 7, 7, 7, 7]], dtype=np.uint64)
    assert set(impl.lsh_candidate_pairs(sigs, 3, 2)) == {(0, 1), (0, 2)}


@pytest.mark.points(1)
def test_lsh_collision_probability(impl):
    """1 - (1 - s^rows)^bands, the S-curve of banding."""
    for s, b, r in [(0.5, 20, 5), (0.8, 9, 13), (0.3, 2, 3), (1.0, 4, 4)]:
        assert impl.lsh_collision_probability(s, b, r) == pytest.approx(1 - (1 - s**r) ** b, abs=1e-9)


# ---------------------------------------------------------------------- 5.5 n-gram coverage
def coverage_by_hand(text, n):
    """A word is covered if some n-gram that contains it appears at least twice in the text."""
    words = text.split()
    if len(words) < n:
        return 0.0
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    chars = covered = 0
    for i, w in enumerate(words):
        chars += len(w)
        if any(counts[grams[s]] > 1 for s in range(max(0, i - n + 1), min(i, len(grams) - 1) + 1)):
            covered += len(w)
    return covered / chars


@pytest.mark.points(2)
def test_duplicated_ngram_coverage(impl):
    """Share of characters inside repeated word n-grams, case-sensitive, first occurrences included."""
    assert impl.duplicated_ngram_coverage("a b c a b c", 3) == pytest.approx(1.0)
    assert impl.duplicated_ngram_coverage("one two three", 5) == 0.0
    assert impl.duplicated_ngram_coverage("Go to It go to it", 2) == pytest.approx(0.0)
    rng = random.Random(1)
    for _ in range(30):
        text = " ".join(rng.choice(["ab", "c", "defg", "hi"]) for _ in range(rng.randint(2, 25)))
        for n in (2, 3):
            assert impl.duplicated_ngram_coverage(text, n) == pytest.approx(coverage_by_hand(text, n))


# ---------------------------------------------------------------------- 5.6 token KL
@pytest.mark.points(2)
def test_token_kl_divergence_matches_torch(impl):
    """KL(p_doc || q) with add-alpha smoothing and an unseen slot equals torch.nn.functional.kl_div, in nats."""
    corpus = Counter("the cat sat on the mat and the dog sat too".split())
    total = sum(corpus.values())
    for tokens, alpha in [("the cat sat".split(), 1.0), ("zebra zebra the".split(), 0.5), (["the"], 2.0)]:
        vocab = sorted(set(corpus) | set(tokens))
        denom = total + alpha * (len(corpus) + 1)
        q = torch.tensor([(corpus.get(t, 0) + alpha) / denom for t in vocab], dtype=torch.float64)
        dc = Counter(tokens)
        p = torch.tensor([dc.get(t, 0) / len(tokens) for t in vocab], dtype=torch.float64)
        expected = torch.nn.functional.kl_div(q.log(), p, reduction="sum").item()
        assert impl.token_kl_divergence(tokens, corpus, total, alpha) == pytest.approx(expected, rel=1e-9)
    assert impl.token_kl_divergence([], corpus, total) == 0.0
