"""Heuristic quality filters (paper §3.1.1 "Heuristic filtering").

Llama 3 removes low-quality documents, outliers and documents with excessive repetitions with three heuristics:

* **duplicated n-gram coverage ratio** (Rae et al., 2021): the share of a document covered by n-grams that occur
  more than once in it. Logs, error dumps and boilerplate repeat themselves; ordinary prose and code rarely do.
* **"dirty word" counting** (Raffel et al., 2020): the share of words that are on a block list, to catch adult
  pages that URL block lists miss.
* **token-distribution Kullback-Leibler divergence**: documents whose token distribution is far from the corpus's
  have "excessive numbers of outlier tokens" (tables of numbers, encoded blobs, rot13 text ...).

A fourth heuristic is this course's own, for code: the **share of data-literal lines**. The standard library holds
~120 machine-generated codec tables (``encodings/cp437.py``: 256 lines of ``'\\x80'  # 0x80 -> LATIN ...``), 12%
of its bytes. The KL filter keeps them: there are so many that they shape the corpus distribution they are
measured against, a limit of any "outlier" rule. A line that is only literals, commas and brackets is easy to spot.

Each has a scoring function (one document -> a float) and a pipeline step ``(docs) -> (kept, StepReport)`` whose
report lists every score so a notebook can draw the distribution and the threshold.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from minillama.data.corpus import Document
from minillama.data.report import StepReport

__all__ = [
    "DIRTY_WORDS",
    "duplicated_ngram_coverage",
    "ngram_coverage_filter",
    "dirty_word_ratio",
    "dirty_word_filter",
    "tokenize_words",
    "token_distribution",
    "token_kl_divergence",
    "kl_filter",
    "literal_line_share",
    "table_filter",
]


# ----------------------------------------------------------------------------------------------- n-gram coverage
def duplicated_ngram_coverage(text: str, n: int = 5) -> float:
    """Fraction of the characters of the whitespace-split words that lie inside some word n-gram occurring more
    than once in the text (0.0 for texts with fewer than `n` words).

    >>> duplicated_ngram_coverage("a b c a b c", n=3)
    1.0
    >>> duplicated_ngram_coverage("one two three four", n=2)
    0.0
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    words = text.split()
    if len(words) < n:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    covered = np.zeros(len(words), dtype=bool)
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            covered[i : i + n] = True
    lengths = np.array([len(w) for w in words])
    return float(lengths[covered].sum() / lengths.sum())


def _score_step(
    docs: Sequence[Document],
    name: str,
    rule: str,
    score_fn: Callable[[Document], float],
    threshold: float,
    why: Callable[[float], str],
    **details,
) -> tuple[list[Document], StepReport]:
    """A pipeline step that scores each document and drops those scoring above `threshold`.

    Report details: ``scores`` (id -> score), ``threshold`` and any extra `details`.
    """
    report = StepReport.start(name, rule, docs)
    kept, scores = [], {}
    for doc in docs:
        score = scores[doc.id] = score_fn(doc)
        if score > threshold:
            report.remove(doc, why(score))
        else:
            kept.append(doc)
    report.details.update(threshold=threshold, scores=scores, **details)
    return kept, report.finish(kept)


def ngram_coverage_filter(
    docs: Sequence[Document], n: int = 5, max_coverage: float = 0.8
) -> tuple[list[Document], StepReport]:
    """Pipeline step: drop documents whose duplicated `n`-gram coverage exceeds `max_coverage`.

    Report details: ``scores`` (id -> coverage), n, threshold.
    """
    return _score_step(
        docs,
        "ngram_coverage",
        f"§3.1.1 duplicated {n}-gram coverage > {max_coverage}",
        lambda doc: duplicated_ngram_coverage(doc.text, n),
        max_coverage,
        lambda score: f"{score:.0%} of the text is in repeated {n}-grams",
        n=n,
    )


# ----------------------------------------------------------------------------------------------- dirty words
#: A small block list of adult-site vocabulary (lower case). Real lists (e.g. the "List of Dirty, Naughty, Obscene,
#: and Otherwise Bad Words" used for C4) are longer; pass your own with ``words=``.
DIRTY_WORDS: frozenset[str] = frozenset(
    {
        "porn",
        "porno",
        "pornography",
        "xxx",
        "nsfw",
        "nude",
        "nudes",
        "naked",
        "sex",
        "sexy",
        "erotic",
        "hentai",
        "escort",
        "escorts",
        "camgirl",
        "camgirls",
        "milf",
        "fetish",
        "stripper",
        "onlyfans",
        "hardcore",
        "playboy",
    }
)

_WORD = re.compile(r"[a-z]+")


def dirty_word_ratio(text: str, words: frozenset[str] | set[str] = DIRTY_WORDS) -> float:
    """Fraction of the lower-cased alphabetic words of `text` that are in `words` (0.0 for a text with no words).

    >>> dirty_word_ratio("Hot XXX pics here", frozenset({"xxx"}))
    0.25
    """
    tokens = _WORD.findall(text.lower())
    if not tokens:
        return 0.0
    return sum(t in words for t in tokens) / len(tokens)


def dirty_word_filter(
    docs: Sequence[Document], max_ratio: float = 0.02, words: frozenset[str] | set[str] = DIRTY_WORDS
) -> tuple[list[Document], StepReport]:
    """Pipeline step: drop documents where more than `max_ratio` of the words are dirty words.

    A ratio, not a count, so a long file whose comments say ``XXX`` a few times (a common "fix me" marker in
    the stdlib) is kept. Report details: ``scores`` (id -> ratio), threshold.
    """
    return _score_step(
        docs,
        "dirty_words",
        f"§3.1.1 dirty-word ratio > {max_ratio}",
        lambda doc: dirty_word_ratio(doc.text, words),
        max_ratio,
        lambda score: f"{score:.1%} of the words are on the block list",
    )


# ----------------------------------------------------------------------------------------------- token KL
_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize_words(text: str) -> list[str]:
    """A simple tokenizer for the KL filter: lower-cased words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


def token_distribution(
    docs: Sequence[Document], tokenize: Callable[[str], list] = tokenize_words
) -> tuple[Counter, int]:
    """Token counts over the whole corpus, and their total."""
    counts: Counter = Counter()
    for doc in docs:
        counts.update(tokenize(doc.text))
    return counts, sum(counts.values())


def token_kl_divergence(tokens: Sequence, corpus_counts: Counter, corpus_total: int, alpha: float = 1.0) -> float:
    """KL(p_doc || q_corpus) in nats: p_doc is the document's empirical token distribution, q_corpus the corpus's
    with add-`alpha` smoothing over its vocabulary plus one "unseen" slot: q(t) = (c(t) + alpha) / (N + alpha·(V+1)).

    0 when the document looks exactly like the corpus; large when its tokens are rare in the corpus.
    """
    if not tokens:
        return 0.0
    doc_counts = Counter(tokens)
    n = len(tokens)
    denom = corpus_total + alpha * (len(corpus_counts) + 1)
    kl = 0.0
    for tok, c in doc_counts.items():
        p = c / n
        q = (corpus_counts.get(tok, 0) + alpha) / denom
        kl += p * math.log(p / q)
    return kl


def kl_filter(
    docs: Sequence[Document],
    k: float = 4.0,
    min_tokens: int = 200,
    reference: Sequence[Document] | None = None,
    tokenize: Callable[[str], list] = tokenize_words,
    max_kl: float | None = None,
) -> tuple[list[Document], StepReport]:
    """Pipeline step: drop documents whose token distribution is an outlier against the corpus.

    The corpus distribution comes from `reference` (default: `docs` themselves). The threshold is `max_kl` nats
    if given, else the robust outlier rule median + k·MAD of the scores. Documents with fewer than `min_tokens`
    tokens are kept and not scored: a short text's empirical distribution is far from any corpus by chance alone.
    Report details: ``scores`` (id -> KL, scored documents only), threshold, median, mad.
    """
    rule = f"{max_kl} nats" if max_kl is not None else f"median + {k}·MAD"
    report = StepReport.start("token_kl", f"§3.1.1 token-distribution KL > {rule}", docs)
    counts, total = token_distribution(reference if reference is not None else docs, tokenize)
    scores = {}
    for doc in docs:
        tokens = tokenize(doc.text)
        if len(tokens) >= min_tokens:
            scores[doc.id] = token_kl_divergence(tokens, counts, total)
    values = np.array(list(scores.values()), dtype=np.float64)
    median = float(np.median(values)) if values.size else 0.0
    mad = float(np.median(np.abs(values - median))) if values.size else 0.0
    threshold = max_kl if max_kl is not None else median + k * mad
    kept = []
    for doc in docs:
        score = scores.get(doc.id)
        if score is not None and score > threshold:
            report.remove(doc, f"KL {score:.2f} nats > {threshold:.2f}")
        else:
            kept.append(doc)
    report.details.update(threshold=threshold, median=median, mad=mad, k=k, min_tokens=min_tokens, scores=scores)
    return kept, report.finish(kept)


# ----------------------------------------------------------------------------------------------- data tables
_ATOM = (
    r"(?:[-+]?(?:0[xX][0-9a-fA-F]+|0[oObB][0-7]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
    r"|[rbuRBU]{0,2}'(?:[^'\\\n]|\\.)*'|[rbuRBU]{0,2}\"(?:[^\"\\\n]|\\.)*\"|None|True|False)"
)
_BRACKETS = r"[\[\](){}]"
_DATA_LINE = re.compile(rf"^\s*(?:{_BRACKETS}\s*)*{_ATOM}(?:\s*(?:[:,]|{_BRACKETS})\s*(?:{_ATOM})?)*\s*(?:#.*)?$")


def literal_line_share(text: str) -> float:
    """Share of the non-blank, non-comment lines that hold only literals (numbers, strings, None/True/False),
    commas, colons and brackets, with an optional trailing comment: the rows of a generated table.

    >>> literal_line_share("TABLE = {\\n    0x80: 0x00c7,  # C WITH CEDILLA\\n    'a': None,\\n}\\n")
    0.5
    >>> literal_line_share("def f(x):\\n    return x + 1\\n")
    0.0
    """
    lines = [line for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return 0.0
    return sum(1 for line in lines if _DATA_LINE.match(line)) / len(lines)


def table_filter(docs: Sequence[Document], max_share: float = 0.5) -> tuple[list[Document], StepReport]:
    """Pipeline step: drop documents in which more than `max_share` of the lines are data literals
    (`literal_line_share`): codec maps, entity tables, generated configuration.

    Report details: ``scores`` (id -> share), threshold.
    """
    return _score_step(
        docs,
        "tables",
        f"§3.1.1 outliers: data-literal lines > {max_share:.0%}",
        lambda doc: literal_line_share(doc.text),
        max_share,
        lambda score: f"{score:.0%} of the lines are data literals (a generated table)",
    )
