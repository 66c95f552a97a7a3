"""The parse-rate protocol of `minillama.train.samples`: what counts as a finished, parsing definition."""

import ast

import pytest

from minillama.train import samples
from minillama.train.recipes import load_shipped
from minillama.train.samples import first_definition, parse_rate


@pytest.mark.parametrize(
    "text, ended, want",
    [
        ("def f(x):\n    return x\n\ndef g(): pass\n", False, "def f(x):\n    return x\n"),
        ("class A:\n    x = 1\n# a comment\n", False, "class A:\n    x = 1\n"),
        ("def f(x):\n    return x\n", True, "def f(x):\n    return x\n"),  # the document ended (EOS)
        ("def f(x):\n    return x\n", False, None),  # the budget ran out inside the body
        ("def f(x):\n\n    y = 1\n\n", False, None),  # blank lines do not end a block
    ],
)
def test_first_definition_ends_at_the_next_column_0_line_or_eos(text, ended, want):
    assert first_definition(text, ended) == want


class _Tok:
    """Characters as token ids; EOS is 0."""

    eos_id = 0

    def encode(self, text, bos=False):
        return [1] * bos + [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_parse_rate_counts_parsed_broken_and_unfinished(monkeypatch):
    """Four canned samples: one parses, one is a syntax error, one is cut by the budget, one ended at EOS."""
    tails = {
        0: (" f(x):\n    return x\nprint(1)\n", None),  # ends at a column-0 line: parses
        1: ("oo A:\n    pass\nx\n", None),  # "classoo A:": a syntax error
        2: (" g(y):\n    return (y +", None),  # still open at the budget
        3: (" B:\n    x = [1, 2]\n", 0),  # ended at EOS
    }
    calls = []

    def fake_generate(model, ids, max_new_tokens, temperature, stop_tokens, seed, return_stop):
        calls.append((len(ids), temperature, list(stop_tokens), seed))
        i0 = len(calls[:-1]) and sum(c[0] for c in calls[:-1])
        out = [tails[i0 + i] for i in range(len(ids))]
        return [[ord(c) for c in t] for t, _ in out], [s for _, s in out]

    monkeypatch.setattr(samples, "generate", fake_generate)
    r = parse_rate(None, _Tok(), n=4, temperature=0.8, max_new_tokens=64, batch_size=2)
    assert (r.samples, r.parsed, r.unfinished) == (4, 2, 1) and r.rate == 0.5
    assert [c[1:] for c in calls] == [(0.8, [0], 0), (0.8, [0], 2)]  # seeded per batch, EOS stops
    assert [t.split()[0] for t in r.texts] == ["def", "classoo", "def", "class"]
    assert "2/4 samples parse" in r.describe() and r.to_dict()["rate"] == 0.5


def test_parse_rate_runs_the_shipped_model():
    """On a real model: seeded (the same twice), every text starts with its prompt, counts add up."""
    model, tok = load_shipped()
    a = parse_rate(model, tok, n=4, max_new_tokens=24, seed=3)
    b = parse_rate(model, tok, n=4, max_new_tokens=24, seed=3)
    assert a.texts == b.texts and [t[:3] for t in a.texts] == ["def", "cla", "def", "cla"]
    blocks = [first_definition(t, e) for t, e in zip(a.texts, a.ended)]
    assert a.unfinished == sum(b is None for b in blocks)
    assert a.parsed == sum(b is not None and _parses(b) for b in blocks)


def _parses(code):
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True
