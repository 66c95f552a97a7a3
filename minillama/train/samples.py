"""Do samples look like Python? The parse rate of sampled definitions (issue: "samples that parse as Python more
often than not at temperature 0.8 on `def`/`class` prompts, measured on >= 50 samples").

Protocol (`parse_rate`): each prompt (``def``, ``class``, alternating; no trailing space, see chapter 01) is sampled
at the given temperature for up to `max_new_tokens` tokens. The sample's **first top-level definition** is the text
up to the first later line that starts in column 0 (the next statement, a comment, a decorator), or up to the end of
the document (EOS). That definition counts as parsing when `ast.parse` accepts it. A definition still open when the
token budget runs out counts as *unfinished*, and as not parsing: a truncated body is never given the benefit of the
doubt, so the figure is a lower bound.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from minillama.generate import generate

__all__ = ["first_definition", "ParseRate", "parse_rate", "SAMPLE_PROMPTS"]

SAMPLE_PROMPTS = ("def", "class")


def first_definition(text: str, ended: bool) -> str | None:
    """The first top-level block of `text`: up to the first later non-blank line that starts in column 0.
    None when no such line follows and the document did not end (`ended`: the sample stopped at EOS).

    >>> first_definition("def f(x):\\n    return x\\n\\nclass A: pass\\n", ended=False)
    'def f(x):\\n    return x\\n'
    >>> first_definition("def f(x):\\n    return", ended=False) is None
    True
    """
    lines = text.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() and not line[0].isspace():
            return "\n".join(lines[:i]).rstrip("\n") + "\n"
    return text if ended else None


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte
        return False
    return True


@dataclass
class ParseRate:
    """Outcome of `parse_rate`: counts, and every sample for reading."""

    samples: int
    parsed: int
    unfinished: int
    temperature: float
    max_new_tokens: int
    prompts: tuple[str, ...]
    texts: list[str] = field(default_factory=list, repr=False)
    ended: list[bool] = field(default_factory=list, repr=False)  # per sample: stopped at EOS

    @property
    def rate(self) -> float:
        return self.parsed / self.samples if self.samples else float("nan")

    def describe(self) -> str:
        return (
            f"{self.parsed}/{self.samples} samples parse as Python ({self.rate:.0%}) at temperature "
            f"{self.temperature:g}, prompts {'/'.join(self.prompts)}, up to {self.max_new_tokens} new tokens "
            f"({self.unfinished} still open at the budget, counted as not parsing)"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("texts")
        d.pop("ended")
        return {**d, "rate": self.rate}


@torch.inference_mode()
def parse_rate(
    model,
    tokenizer,
    n: int = 50,
    temperature: float = 0.8,
    max_new_tokens: int = 256,
    prompts: Sequence[str] = SAMPLE_PROMPTS,
    seed: int = 0,
    batch_size: int = 25,
) -> ParseRate:
    """Sample `n` continuations (prompts alternating) and count first definitions that `ast.parse` accepts."""
    if n < 1 or max_new_tokens < 1 or temperature < 0:
        raise ValueError("need n >= 1, max_new_tokens >= 1 and temperature >= 0")
    stop = [tokenizer.eos_id]
    result = ParseRate(0, 0, 0, temperature, max_new_tokens, tuple(prompts))
    for start in range(0, n, batch_size):
        rows = [prompts[i % len(prompts)] for i in range(start, min(n, start + batch_size))]
        ids = [tokenizer.encode(p, bos=True) for p in rows]
        new, stops = generate(
            model, ids, max_new_tokens, temperature, stop_tokens=stop, seed=seed + start, return_stop=True
        )
        for prompt, tokens, stopped in zip(rows, new, stops):
            text = prompt + tokenizer.decode(tokens)
            block = first_definition(text, ended=stopped is not None)
            result.samples += 1
            result.unfinished += block is None
            result.parsed += block is not None and _parses(block)
            result.texts.append(text)
            result.ended.append(stopped is not None)
    return result
