"""A calculator that answers `wolfram_alpha.call(query="...")` (paper §4.3.5: Wolfram Alpha for math).

There is no network here, so the built-in `wolfram_alpha` tool is served by a small, *safe* evaluator: the query is
parsed with Python's `ast` and only numbers, arithmetic operators and a fixed set of math functions are evaluated
(no names, attributes, calls to anything else, or huge powers). Wolfram-style input is accepted: `^` for powers,
`×`/`÷`, thousands separators, and a question around the expression ("What is 12 * 34?").

`calculate(query)` returns `{"ok": True, "result": "408", "expression": "12*34"}` or `{"ok": False, "error": {...}}`.
"""

from __future__ import annotations

import ast
import math
import operator
import re

from minillama.chat_format import tool_error

__all__ = ["calculate", "evaluate", "format_number", "extract_expression", "CalculatorError"]


class CalculatorError(ValueError):
    """The query is not arithmetic this calculator can evaluate (message says what to change)."""


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "ln": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": math.factorial,
    "gcd": math.gcd,
    "min": min,
    "max": max,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 1_000
MAX_RESULT_BITS = 100_000


def extract_expression(query: str) -> str:
    """Pull the arithmetic out of a natural-language query and normalise Wolfram-style symbols."""
    text = query.strip()
    text = text.replace("×", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234,567 -> 1234567
    text = re.sub(r"(?i)^(what is|what's|compute|calculate|evaluate|how much is)\s+", "", text)
    text = re.sub(r"(?i)\s*(\?|=)\s*$", "", text)
    text = re.sub(r"(?i)\b(\d+(?:\.\d+)?)\s*% of\s*", r"\1/100*", text)
    text = re.sub(r"(?i)\bsquare root of\s+", "sqrt ", text)
    text = re.sub(r"(?i)\bsqrt\s+(\d+(?:\.\d+)?)", r"sqrt(\1)", text)
    text = re.sub(r"(?i)\b(plus)\b", "+", text)
    text = re.sub(r"(?i)\b(minus)\b", "-", text)
    text = re.sub(r"(?i)\b(times|multiplied by)\b", "*", text)
    text = re.sub(r"(?i)\b(divided by|over)\b", "/", text)
    return text.strip()


def evaluate(expression: str):
    """Evaluate an arithmetic expression safely (int, float, or raises CalculatorError)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"could not read {expression!r} as arithmetic; write e.g. (3 + 4) * 2 ^ 10") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name) and node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (
                abs(right) > MAX_EXPONENT
                or isinstance(left, int)
                and abs(left) > 1
                and abs(right) * math.log2(abs(left)) > MAX_RESULT_BITS
            ):
                raise CalculatorError(
                    f"the power is too large (exponent limit {MAX_EXPONENT}, results up to {MAX_RESULT_BITS} bits)"
                )
            return _BINARY[type(node.op)](left, right)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and not node.keywords
        ):
            args = [ev(a) for a in node.args]
            if node.func.id == "factorial" and args and args[0] > MAX_FACTORIAL:
                raise CalculatorError(f"factorial argument {args[0]} is too large (limit {MAX_FACTORIAL})")
            return _FUNCTIONS[node.func.id](*args)
        what = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
        raise CalculatorError(
            f"{what!r} is not arithmetic; use numbers, + - * / // % ^, parentheses and {', '.join(sorted(_FUNCTIONS))}"
        )

    try:
        return ev(tree)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except (ValueError, OverflowError, TypeError) as e:
        if isinstance(e, CalculatorError):
            raise
        raise CalculatorError(f"math error: {e}") from None


def format_number(value) -> str:
    """Integers exactly (up to 4000 digits); floats with up to 12 significant digits, integral floats without .0."""
    if isinstance(value, int):
        if value.bit_length() > 13_000:  # Python refuses to print ints past 4300 digits
            return f"an integer with about {int(value.bit_length() * math.log10(2)) + 1} digits"
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


def calculate(query: str) -> dict:
    """Serve one wolfram_alpha query: {"ok", "result", "expression"} or {"ok": False, "error"}."""
    expression = extract_expression(query)
    try:
        value = evaluate(expression)
    except CalculatorError as e:
        return {"ok": False, "error": tool_error("bad_query", str(e), "wolfram_alpha")}
    return {"ok": True, "result": format_number(value), "expression": expression}
