"""The hashed n-gram logistic-regression quality classifier (§3.1.1), against scipy's optimizer on the same loss."""

import zlib
from collections import Counter

import numpy as np
import pytest

from minillama.data.corpus import stdlib_corpus, train_val_split
from minillama.data.filters import tokenize_words
from minillama.data.quality import DEGRADATIONS, QualityClassifier, build_quality_dataset, degrade, hashed_features


def test_hashed_features_by_hand():
    """Bucket = crc32(n-gram) mod n_buckets, value ∝ log(1 + count), unit L2 norm."""
    text = "a b a b c"
    idx, val = hashed_features(text, n_buckets=1024, ngrams=(1, 2))
    words = tokenize_words(text)
    grams = words + [f"{x} {y}" for x, y in zip(words, words[1:])]
    counts = Counter(zlib.crc32(g.encode()) % 1024 for g in grams)
    expected = {k: np.log1p(c) for k, c in counts.items()}
    norm = np.sqrt(sum(v * v for v in expected.values()))
    assert dict(zip(idx.tolist(), val.tolist())) == pytest.approx({k: v / norm for k, v in expected.items()})


def test_fit_reaches_the_same_optimum_as_scipy():
    """L-BFGS in `fit` and scipy.optimize.minimize on the plainly written L2-regularized logistic loss agree on the
    predicted probabilities (convex problem, so both must find the same optimum)."""
    optimize = pytest.importorskip("scipy.optimize")
    texts, labels = build_quality_dataset(stdlib_corpus("prose"), n_per_class=30, window_chars=600, seed=0)
    clf = QualityClassifier(n_buckets=2**12, l2=1e-2).fit(texts, labels)
    X = np.zeros((len(texts), 2**12))
    for i, t in enumerate(texts):
        idx, val = hashed_features(t[: clf.max_chars], 2**12, (1, 2))
        X[i, idx] = val

    def objective(params):
        w, b = params[:-1], params[-1]
        z = X @ w + b
        p = 1 / (1 + np.exp(-z))
        loss = np.mean(np.logaddexp(0, z) - labels * z) + 0.5 * 1e-2 * w @ w
        grad = np.append(X.T @ (p - labels) / len(z) + 1e-2 * w, np.mean(p - labels))
        return loss, grad

    res = optimize.minimize(
        objective,
        np.zeros(2**12 + 1),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": 1e-10, "ftol": 1e-14},
    )
    theirs = 1 / (1 + np.exp(-(X @ res.x[:-1] + res.x[-1])))
    np.testing.assert_allclose(clf.predict_proba(texts), theirs, atol=2e-3)


def test_classifier_separates_real_from_degraded_held_out():
    """Trained on part of the stdlib, on unseen documents it keeps most real text (> 70%) and flags nearly all
    character noise and log-style repetition (> 90%); it is deterministic. (Word salad is its known blind spot:
    shuffled real words keep most of their n-grams.)"""
    import random

    train, val = train_val_split(stdlib_corpus(limit_bytes=1_500_000, seed=0), 0.3, seed=0)
    X, y = build_quality_dataset(train, n_per_class=150, seed=0)
    clf = QualityClassifier().fit(X, y)
    real = [d.text[:1500] for d in val if d.bytes > 500][:40]
    assert np.mean(clf.predict_proba(real) > 0.5) > 0.7
    rng = random.Random(3)
    for how in ("char_noise", "repeat_line"):
        assert np.mean(clf.predict_proba([degrade(t, how, rng) for t in real]) < 0.5) > 0.9, how
    again = QualityClassifier().fit(X, y)
    assert np.array_equal(again.weight, clf.weight) and again.bias == clf.bias


def test_degradations_and_errors():
    """Each degradation changes the text and is seeded; unknown names and bad labels raise ValueError."""
    import random

    text = "line one here\nline two there\nline three everywhere\n"
    for how in DEGRADATIONS:
        a, b = degrade(text, how, random.Random(1)), degrade(text, how, random.Random(1))
        assert a == b and a != text
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(text, "nope", random.Random(0))
    with pytest.raises(ValueError, match="labels"):
        QualityClassifier().fit(["a", "b"], [1, 2])
