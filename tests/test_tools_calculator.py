"""The wolfram_alpha calculator: right answers (checked against Python's own arithmetic), refusals for anything
that is not arithmetic, and Wolfram-style input."""

import math

import pytest

from minillama.tooluse.tools.calculator import calculate, evaluate, extract_expression

EXPRESSIONS = [
    "1234 * 5678",
    "(3 + 4) * 2 ** 10",
    "7 - 10 / 4",
    "17 // 5 + 17 % 5",
    "-3 ** 2",
    "2 ** -2",
    "1e3 * 1.5",
    "((1))",
    "123456789 * 987654321",
    "0.1 + 0.2",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_matches_python(expr):
    assert evaluate(expr) == eval(expr)  # trusted test strings: Python is the reference


@pytest.mark.parametrize(
    "query,expected",
    [
        ("What is 1234 * 5678?", 7006652),
        ("2^10", 1024),
        ("1,234 + 1", 1235),
        ("15% of 80", 12),
        ("12 × 3 ÷ 4", 9),
        ("sqrt(2)", math.sqrt(2)),
        ("square root of 81", 9),
        ("7 times 6", 42),
        ("100 divided by 8", 12.5),
        ("factorial(10)", math.factorial(10)),
        ("log(e)", 1.0),
        ("sin(pi/2)", 1.0),
    ],
)
def test_queries(query, expected):
    out = calculate(query)
    assert out["ok"], out
    assert float(out["result"]) == pytest.approx(expected, rel=1e-11)


@pytest.mark.parametrize(
    "query",
    [
        "__import__('os').system('ls')",
        "open('x')",
        "x + 1",
        "(lambda: 1)()",
        "[1, 2]",
        "2 ** 100000",
        "9 ** 9999 ** 2",
        "factorial(100000)",
        "1 / 0",
        "sqrt(-1)",
        "",
        "hello there",
        "True + 1",
    ],
)
def test_refuses_non_arithmetic(query):
    out = calculate(query)
    assert not out["ok"] and out["error"]["type"] == "bad_query" and out["error"]["message"]


def test_extract_expression():
    assert extract_expression("Calculate 3 + 4?") == "3 + 4"
    assert extract_expression("What's 2^8") == "2**8"
