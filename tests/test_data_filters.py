"""Heuristic filters (§3.1.1) on crafted documents, cleaning, and the token-KL formula against torch's kl_div."""

import math
import random
from collections import Counter

import pytest
import torch

from minillama.data.clean import clean, normalize_text, strip_markup
from minillama.data.corpus import Document, stdlib_corpus
from minillama.data.filters import (
    dirty_word_filter,
    dirty_word_ratio,
    duplicated_ngram_coverage,
    kl_filter,
    literal_line_share,
    ngram_coverage_filter,
    table_filter,
    token_distribution,
    token_kl_divergence,
    tokenize_words,
)

PROSE = (
    "The for statement is used to iterate over the elements of a sequence such as a string tuple or list or "
    "other iterable object and the expression list is evaluated once it should yield an iterable object"
)


def _coverage_by_hand(words, n):
    """Independent statement of the rule: a word is covered if any n-gram containing it occurs twice or more."""
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    covered = [
        any(grams.count(grams[s]) > 1 for s in range(max(0, i - n + 1), min(i, len(grams) - 1) + 1))
        for i in range(len(words))
    ]
    return sum(len(w) for w, c in zip(words, covered) if c) / sum(len(w) for w in words)


def test_ngram_coverage_on_crafted_texts():
    """A log that repeats itself is almost fully covered; plain prose is not; matches a by-hand count."""
    log = " ".join(["ERROR connection refused retrying in five seconds"] * 20)
    assert duplicated_ngram_coverage(log, 5) > 0.95
    assert duplicated_ngram_coverage(PROSE, 5) == 0.0
    rng = random.Random(0)
    for _ in range(20):
        words = [rng.choice("ab cd ef gh".split()) for _ in range(rng.randint(3, 30))]
        assert duplicated_ngram_coverage(" ".join(words), 3) == pytest.approx(_coverage_by_hand(words, 3))


def test_ngram_filter_removes_repetitive_document_with_reason():
    """The step drops the log dump, keeps prose, and records a reason and a score for every document."""
    log = "\n".join(["disk full on /dev/sda1 at node seven"] * 50)
    docs = [Document(PROSE, "s", "prose"), Document(log, "s", "log")]
    kept, report = ngram_coverage_filter(docs, n=5, max_coverage=0.8)
    assert [d.id for d in kept] == ["prose"]
    assert report.removed[0][0] == "log" and "repeated 5-grams" in report.removed[0][1]
    assert set(report.details["scores"]) == {"prose", "log"}


def test_dirty_word_ratio_and_filter():
    """The ratio counts block-listed words among all words; the filter drops spam and keeps code with an XXX."""
    assert dirty_word_ratio("free porn and nude pics", frozenset({"porn", "nude"})) == pytest.approx(2 / 5)
    code = f'def f(x):\n    """{PROSE}"""\n    # XXX: handle negative numbers\n    return x * 2\n'
    spam = "hot xxx pics free porn sexy live cams click here"
    kept, report = dirty_word_filter([Document(code, "s", "code"), Document(spam, "s", "spam")], max_ratio=0.05)
    assert [d.id for d in kept] == ["code"] and report.removed[0][0] == "spam"


def test_token_kl_matches_torch_kl_div():
    """KL(p_doc || q_corpus) with add-one smoothing equals torch.nn.functional.kl_div on the same distributions."""
    corpus = [Document(PROSE, "s", "a"), Document("x = 1\nprint(x)\n" * 3, "s", "b")]
    counts, total = token_distribution(corpus)
    doc_tokens = tokenize_words("the list is a sequence of tokens zzz zzz")
    vocab = sorted(set(counts) | set(doc_tokens))
    denom = total + 1.0 * (len(counts) + 1)
    q = torch.tensor([(counts.get(t, 0) + 1.0) / denom for t in vocab], dtype=torch.float64)
    dc = Counter(doc_tokens)
    p = torch.tensor([dc.get(t, 0) / len(doc_tokens) for t in vocab], dtype=torch.float64)
    expected = torch.nn.functional.kl_div(q.log(), p, reduction="sum").item()
    assert token_kl_divergence(doc_tokens, counts, total) == pytest.approx(expected, rel=1e-9)
    assert token_kl_divergence(tokenize_words(PROSE), counts, total) < expected


def test_kl_filter_drops_the_outlier_blob():
    """Among prose-like documents a base64 blob is the KL outlier; short documents are not scored."""
    rng = random.Random(0)
    words = PROSE.split()
    docs = [Document(" ".join(rng.choice(words) for _ in range(300)), "s", f"p{i}") for i in range(12)]
    blob = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(4000))
    blob = "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
    docs.append(Document(blob, "s", "blob"))
    docs.append(Document("zzz qqq", "s", "short"))
    kept, report = kl_filter(docs, k=4.0, min_tokens=50)
    assert [r[0] for r in report.removed] == ["blob"]
    assert "short" not in report.details["scores"] and "short" in [d.id for d in kept]
    assert math.isfinite(report.details["threshold"])


def test_clean_strips_markdown_from_prose_not_code():
    """Markdown markers go from prose (keeping words and image alt text); code keeps its # comments and *."""
    md = "# Title\n\nSome **bold** and `code`, a [link](http://x.org) and ![a diagram](d.png).\n\n\n\n\nEnd  \n"
    assert strip_markup(md).split() == "Title Some bold and code, a link and a diagram. End".split()
    code = "# comment\nx = a * b * c   \r\n"
    assert normalize_text(code) == "# comment\nx = a * b * c\n"
    kept, report = clean([Document(md, "s", "md"), Document(code, "s", "py", kind="code"), Document(" \n", "s", "e")])
    assert [d.id for d in kept] == ["md", "py"] and kept[1].text.startswith("# comment")
    assert report.removed == [("e", "fewer than 1 characters after cleaning")]
    assert "\n\n\n\n" not in kept[0].text


def test_table_filter_drops_the_codec_maps_the_kl_filter_keeps():
    """The standard library's ~120 generated codec tables shape the corpus distribution, so the KL outlier rule keeps
    them; the data-literal share finds them, and keeps ordinary modules (the codec *machinery* included)."""
    docs = stdlib_corpus("code")
    by_id = {d.id: d for d in docs}
    kl_kept, _ = kl_filter(docs)
    assert "encodings/cp437.py" in {d.id for d in kl_kept}
    kept, report = table_filter(docs)
    kept_ids = {d.id for d in kept}
    removed = set(by_id) - kept_ids
    assert {"encodings/cp437.py", "encodings/mac_arabic.py", "html/entities.py"} <= removed
    assert {"json/decoder.py", "encodings/__init__.py", "encodings/utf_8.py", "argparse.py"} <= kept_ids
    codec_bytes = sum(by_id[i].bytes for i in removed if i.startswith("encodings/"))
    assert codec_bytes > 0.8 * sum(by_id[i].bytes for i in removed)
    assert report.details["scores"]["encodings/cp437.py"] > 0.9 and report.details["scores"]["argparse.py"] < 0.1


def test_literal_line_share_counts_rows_of_literals_only():
    """Rows of literals with commas, colons, brackets and a trailing comment count; code, names and comments don't."""
    text = "MAP = {\n    0x80: 0x00c7,  # C WITH CEDILLA\n    'a': (1, 2.5e3),\n    -1: None,\n}\n# comment\nx = f(1)\n"
    assert literal_line_share(text) == 3 / 6
    assert literal_line_share("") == 0.0 and literal_line_share("# only a comment\n") == 0.0
    assert literal_line_share("'\\x80'     #  0x80 -> LATIN CAPITAL LETTER C\n") == 1.0
