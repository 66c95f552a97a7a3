"""A local search engine that answers `brave_search.call(query="...")` calls without a network (paper §4.3.5).

Llama 3.1 uses Brave Search for questions about the world. Here the "web" is the documentation installed with
Python itself: the language-reference topics of `pydoc_data.topics` (what `help("with")` shows) and the docstrings
of the built-in functions and of a few standard-library modules. Ranking is Okapi BM25 (Robertson & Zaragoza, 2009):

    score(q, d) = sum over query terms t of  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

`search(query, k)` returns a list of `{"title", "snippet", "score"}`; `brave_search(query)` the JSON text a tool
result carries.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import math
import re
from collections import Counter
from functools import lru_cache
from pydoc_data.topics import topics

__all__ = ["LocalSearch", "default_documents", "search", "brave_search", "tokenize"]

_WORD = re.compile(r"[a-z0-9_]+")
# English filler only: Python keywords such as "with", "for", "in", "is", "not" are real search terms here.
_STOP = frozenset("a an the of to what how does do can you i this that me about please show".split())
_MODULES = (
    "math",
    "statistics",
    "csv",
    "json",
    "re",
    "datetime",
    "itertools",
    "functools",
    "collections",
    "random",
    "string",
    "pathlib",
    "os.path",
)


def tokenize(text: str) -> list[str]:
    """Lower-case word pieces without stop words ("The with-statement" -> ["with", "statement"])."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def default_documents() -> list[tuple[str, str]]:
    """(title, text) pairs from the documentation installed with this Python."""
    docs: list[tuple[str, str]] = []
    try:
        docs += [(f"Python language reference: {name}", text) for name, text in sorted(topics.items())]
    except ImportError:  # some distributions strip pydoc_data
        pass
    for name in sorted(dir(builtins)):
        obj = getattr(builtins, name)
        if callable(obj) and not name.startswith("_") and obj.__doc__:
            docs.append((f"built-in {name}", inspect.getdoc(obj) or ""))
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        docs.append((f"module {module_name}", inspect.getdoc(module) or ""))
        for name, obj in sorted(vars(module).items()):
            if not name.startswith("_") and callable(obj) and getattr(obj, "__doc__", None):
                docs.append((f"{module_name}.{name}", inspect.getdoc(obj) or ""))
    return docs


class LocalSearch:
    """BM25 over a list of (title, text) documents; titles count twice so a topic's own page ranks first."""

    def __init__(self, documents: list[tuple[str, str]], k1: float = 1.5, b: float = 0.75):
        if not documents:
            raise ValueError("LocalSearch needs at least one (title, text) document")
        self.documents, self.k1, self.b = documents, k1, b
        self.term_counts = [Counter(tokenize(title) * 2 + tokenize(text)) for title, text in documents]
        self.lengths = [sum(c.values()) for c in self.term_counts]
        self.avgdl = sum(self.lengths) / len(self.lengths)
        df = Counter(t for c in self.term_counts for t in c)
        n = len(documents)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str) -> list[float]:
        terms = tokenize(query)
        out = []
        for counts, length in zip(self.term_counts, self.lengths):
            s = 0.0
            for t in terms:
                tf = counts.get(t, 0)
                if tf:
                    s += self.idf[t] * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * length / self.avgdl))
            out.append(s)
        return out

    def search(self, query: str, k: int = 3, snippet_chars: int = 300) -> list[dict]:
        scores = self.scores(query)
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        results = []
        for i in best:
            if scores[i] <= 0:
                break
            title, text = self.documents[i]
            results.append(
                {"title": title, "snippet": " ".join(text.split())[:snippet_chars], "score": round(scores[i], 3)}
            )
        return results


@lru_cache(maxsize=1)
def _engine() -> LocalSearch:
    return LocalSearch(default_documents())


def search(query: str, k: int = 3) -> list[dict]:
    """Top-k documents for `query` from the installed Python documentation."""
    return _engine().search(query, k)


def brave_search(query: str, k: int = 3) -> str:
    """The text of a brave_search tool result: JSON with the query and the top results (or a note if none)."""
    if not isinstance(query, str) or not query.strip():
        return json.dumps({"query": query, "error": "empty query; ask with a few keywords"})
    return json.dumps({"query": query, "top_k": search(query, k)}, ensure_ascii=False)
