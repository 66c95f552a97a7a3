"""A small model-based quality filter (paper §3.1.1 "Model-based quality filtering").

Llama 3 trains fastText to recognise text that Wikipedia would reference, and RoBERTa/DistilRoberta classifiers
on Llama 2's quality judgements, then keeps documents the classifiers score well. We have neither Wikipedia
links nor Llama 2 labels, so the labelled set is built offline from the corpus itself:

* **positive** ("good"): windows of real documents;
* **negative** ("bad"): the same kind of windows, degraded in ways web junk is bad: words shuffled (word salad),
  characters replaced by noise, a line repeated over and over (log spam), lines cut short and jumbled.

The classifier is fastText's linear model without the embedding bottleneck: logistic regression on hashed word
uni- and bi-grams. A text becomes a sparse vector x (CRC-32 of each n-gram mod ``n_buckets``, log(1 + count),
L2-normalized) and p(good | x) = σ(w·x + b). Training minimizes the mean binary cross-entropy plus
(l2/2)·‖w‖² with L-BFGS (a convex problem, so the optimum does not depend on the initialization). Be honest
with learners: this learns "looks like real text", which is much less than "is high quality".
"""

from __future__ import annotations

import random
import string
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from minillama.data.corpus import Document
from minillama.data.filters import tokenize_words
from minillama.data.report import StepReport

__all__ = ["DEGRADATIONS", "degrade", "build_quality_dataset", "hashed_features", "QualityClassifier", "quality_filter"]

DEGRADATIONS = ("shuffle_words", "char_noise", "repeat_line", "jumble_lines")


def degrade(text: str, how: str, rng: random.Random) -> str:
    """A low-quality version of `text`:

    shuffle_words: every word kept, order random (word salad); char_noise: 30% of non-space characters replaced by
    random printable ones; repeat_line: one of its lines repeated to the same length (log spam); jumble_lines:
    lines cut at a random point and shuffled (scraped fragments).
    """
    lines = [line for line in text.split("\n") if line.strip()] or [text]
    if how == "shuffle_words":
        words = text.split()
        rng.shuffle(words)
        return " ".join(words)
    if how == "char_noise":
        alphabet = string.ascii_letters + string.digits + string.punctuation
        return "".join(rng.choice(alphabet) if not c.isspace() and rng.random() < 0.3 else c for c in text)
    if how == "repeat_line":
        line = rng.choice(lines)
        return "\n".join([line] * max(2, len(text) // (len(line) + 1)))
    if how == "jumble_lines":
        cut = [line[: rng.randint(1, max(1, len(line)))] for line in lines]
        rng.shuffle(cut)
        return "\n".join(cut)
    raise ValueError(f"unknown degradation {how!r}; choose one of {DEGRADATIONS}")


def build_quality_dataset(
    docs: Sequence[Document], n_per_class: int = 400, window_chars: int = 1500, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """A balanced labelled set: `n_per_class` real windows (label 1) and as many degraded windows (label 0, the
    degradations used in turn), drawn from `docs` with `seed`. Returns (texts, labels) in a seeded order."""
    if not docs:
        raise ValueError("build_quality_dataset needs at least one document")
    rng = random.Random(seed)

    def window() -> str:
        text = rng.choice(docs).text
        start = rng.randrange(max(1, len(text) - window_chars))
        return text[start : start + window_chars]

    good = [window() for _ in range(n_per_class)]
    bad = [degrade(window(), DEGRADATIONS[i % len(DEGRADATIONS)], rng) for i in range(n_per_class)]
    texts, labels = good + bad, [1] * n_per_class + [0] * n_per_class
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], np.array([labels[i] for i in order], dtype=np.float32)


def hashed_features(text: str, n_buckets: int = 2**18, ngrams: Sequence[int] = (1, 2)) -> tuple[np.ndarray, np.ndarray]:
    """Sparse features of one text: (bucket indices int64 (k,), values float32 (k,)), indices sorted and unique.

    Each word n-gram (words from `tokenize_words`, joined by a space) goes to bucket crc32(ngram) % n_buckets;
    values are log(1 + count), scaled to unit L2 norm. An empty text gives empty arrays.
    """
    words = tokenize_words(text)
    counts: Counter = Counter()
    for n in ngrams:
        for i in range(len(words) - n + 1):
            counts[zlib.crc32(" ".join(words[i : i + n]).encode("utf-8")) % n_buckets] += 1
    if not counts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx = np.array(sorted(counts), dtype=np.int64)
    val = np.log1p(np.array([counts[i] for i in idx], dtype=np.float64))
    return idx, (val / np.linalg.norm(val)).astype(np.float32)


class QualityClassifier:
    """Logistic regression on hashed n-grams: ``p = QualityClassifier().fit(texts, labels).predict_proba(texts)``.

    n_buckets: feature dimension; ngrams: word n-gram sizes; l2: weight of (l2/2)·‖w‖² (the bias is not penalized);
    max_chars: only the first `max_chars` characters of a text are read.
    Attributes after `fit`: ``weight`` (n_buckets,) and ``bias`` (a float).
    """

    def __init__(self, n_buckets: int = 2**18, ngrams: Sequence[int] = (1, 2), l2: float = 1e-3, max_chars: int = 4000):
        self.n_buckets, self.ngrams, self.l2, self.max_chars = n_buckets, tuple(ngrams), l2, max_chars
        self.weight = np.zeros(n_buckets)
        self.bias = 0.0

    def features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The sparse matrix X (n_texts, n_buckets) as coordinates: (row int64, col int64, value float64, n_texts).
        Each text is cut to its first `max_chars` characters (as RoBERTa-style classifiers see only a prefix)."""
        rows = [hashed_features(t[: self.max_chars], self.n_buckets, self.ngrams) for t in texts]
        row = np.repeat(np.arange(len(rows)), [len(i) for i, _ in rows])
        col = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int64)
        val = np.concatenate([v for _, v in rows]).astype(np.float64) if rows else np.zeros(0)
        return row, col, val, len(rows)

    @staticmethod
    def _matvec(X, weight: np.ndarray, bias: float) -> np.ndarray:
        row, col, val, n = X
        return np.bincount(row, weights=weight[col] * val, minlength=n) + bias

    def logits(self, X) -> np.ndarray:
        """w·x + b for each row of X (from `features`): (n_texts,)."""
        return self._matvec(X, self.weight, self.bias)

    def loss(self, X, y: np.ndarray, weight: np.ndarray, bias: float) -> float:
        """Mean binary cross-entropy + (l2/2)·‖w‖²: the objective `fit` minimizes."""
        z = self._matvec(X, weight, bias)
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * self.l2 * weight.dot(weight))

    def fit(self, texts: Sequence[str], labels, max_iter: int = 200) -> QualityClassifier:
        """Minimize `loss` with L-BFGS (torch.optim.LBFGS) from zero weights; labels are 1 (good) / 0 (bad).

        Gradient, written out: with z = Xw + b and r = (σ(z) - y) / n, ∂/∂w = Xᵀr + l2·w and ∂/∂b = Σr. Only the
        buckets that occur in the training texts can become non-zero, so the optimization runs on those.
        """
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (len(texts),) or y.size == 0 or not set(np.unique(y)) <= {0.0, 1.0}:
            raise ValueError("labels must be one 0/1 value per text (and at least one text)")
        row, col, val, n = self.features(texts)
        used, inv = np.unique(col, return_inverse=True)
        Xc = (row, inv, val, n)
        params = torch.zeros(len(used) + 1, dtype=torch.float64, requires_grad=True)  # [w_used..., b]
        opt = torch.optim.LBFGS(
            [params],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def closure():
            w, b = params.detach().numpy()[:-1], float(params.detach()[-1])
            z = self._matvec(Xc, w, b)
            r = (1.0 / (1.0 + np.exp(-z)) - y) / n
            grad = np.append(np.bincount(inv, weights=val * r[row], minlength=len(used)) + self.l2 * w, r.sum())
            params.grad = torch.from_numpy(grad)
            return torch.tensor(self.loss(Xc, y, w, b), dtype=torch.float64)

        opt.step(closure)
        self.weight = np.zeros(self.n_buckets)
        self.weight[used] = params.detach().numpy()[:-1]
        self.bias = float(params.detach()[-1])
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """p(good) for each text: float64 array (n,)."""
        return 1.0 / (1.0 + np.exp(-self.logits(self.features(texts))))


def quality_filter(
    docs: Sequence[Document],
    threshold: float = 0.5,
    seed: int = 0,
    classifier: QualityClassifier | None = None,
    n_per_class: int = 400,
) -> tuple[list[Document], StepReport]:
    """Pipeline step: drop documents the quality classifier scores below `threshold`.

    Without a `classifier`, one is trained first on `build_quality_dataset(docs, n_per_class, seed=seed)`.
    Report details: ``scores`` (id -> p(good)), threshold, and the training accuracy.
    """
    report = StepReport.start("quality", f"§3.1.1 model-based quality: p(good) < {threshold}", docs)
    if classifier is None:
        texts, labels = build_quality_dataset(docs, n_per_class, seed=seed)
        classifier = QualityClassifier().fit(texts, labels)
        report.details["train_accuracy"] = float(np.mean((classifier.predict_proba(texts) > 0.5) == labels))
    probs = classifier.predict_proba([d.text for d in docs]) if docs else np.zeros(0)
    kept, scores = [], {}
    for doc, p in zip(docs, probs):
        scores[doc.id] = float(p)
        if p < threshold:
            report.remove(doc, f"quality score {p:.2f} < {threshold}")
        else:
            kept.append(doc)
    report.details.update(threshold=threshold, scores=scores)
    return kept, report.finish(kept)
