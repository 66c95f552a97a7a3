"""Local documentation search (served for brave_search): BM25 as written in the textbook formula, and sensible
hits on the Python documentation installed with the interpreter."""

import json
import math
from collections import Counter

import pytest

from minillama.tooluse.tools.search import LocalSearch, brave_search, search, tokenize


def test_bm25_matches_the_formula():
    docs = [("alpha", "the cat sat on the mat"), ("beta", "dogs and cats and more dogs"), ("gamma", "mat mat cat")]
    engine = LocalSearch(docs, k1=1.2, b=0.75)
    bags = [Counter(tokenize(t) * 2 + tokenize(x)) for t, x in docs]
    avgdl = sum(sum(b.values()) for b in bags) / len(bags)
    n = len(docs)
    for query in ["cat mat", "dogs", "alpha cat", "nothing here"]:
        want = []
        for bag in bags:
            s = 0.0
            for t in tokenize(query):
                df = sum(t in b for b in bags)
                if bag[t]:
                    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                    s += idf * bag[t] * 2.2 / (bag[t] + 1.2 * (0.25 + 0.75 * sum(bag.values()) / avgdl))
            want.append(s)
        assert engine.scores(query) == pytest.approx(want)


@pytest.mark.parametrize(
    "query,title",
    [
        ("with statement context manager", "Python language reference: with"),
        ("lambda expressions", "Python language reference: lambda"),
        ("median of data", "statistics.median"),
        ("sorted key reverse", "built-in sorted"),
    ],
)
def test_finds_the_right_page(query, title):
    assert title in [r["title"] for r in search(query, k=3)]


def test_brave_search_result_is_json():
    out = json.loads(brave_search("python for loop"))
    assert out["query"] == "python for loop" and out["top_k"] and set(out["top_k"][0]) == {"title", "snippet", "score"}
    assert "error" in json.loads(brave_search("  "))
    with pytest.raises(ValueError):
        LocalSearch([])
