"""Pre-tokenization: how Llama 3 cuts text into pieces before byte-pair merging (paper §3.2).

Two steps, both exactly as Meta's reference tokenizer does them:

1. `chunks_for_encoding`: the text is cut into slices of at most 400,000 characters, and any run of more than
   25,000 consecutive whitespace or consecutive non-whitespace characters is cut every 25,000 characters
   (tiktoken issue #195: such runs make the Rust encoder slow or panic). This changes nothing for ordinary text.
2. `pretokenize`: the Llama 3 regex splits each chunk into pieces (words with their leading space, up to 3 digits,
   punctuation runs, newlines, whitespace). BPE merges never cross a piece boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import regex

#: The Llama 3 split pattern (`\p{L}` letters, `\p{N}` numbers need the `regex` module, not `re`).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_REGEX = regex.compile(LLAMA3_PATTERN)

#: Meta's limits (llama_models/llama3/tokenizer.py).
TIKTOKEN_MAX_ENCODE_CHARS = 400_000
MAX_NO_WHITESPACES_CHARS = 25_000

# A whole run of more than `limit` whitespace (or non-whitespace) characters, matched from its first character.
# `re`'s \s on str is exactly str.isspace(), which is what Meta's loop uses.
_LONG_RUN = re.compile(rf"(?<!\S)\S{{{MAX_NO_WHITESPACES_CHARS + 1},}}|(?<!\s)\s{{{MAX_NO_WHITESPACES_CHARS + 1},}}")


def pretokenize(text: str, pattern: regex.Pattern = LLAMA3_REGEX) -> list[str]:
    """The pieces of `text` under the Llama 3 regex: `"Hello world!"` -> `["Hello", " world", "!"]`."""
    return pattern.findall(text)


def _may_have_long_run(s: str, limit: int) -> bool:
    """Cheap test that is True whenever `s` has a run of more than `limit` whitespace or non-whitespace chars.

    Such a run covers a multiple `m` of `step = (limit + 1) // 2` and extends at least `width = limit + 2 - step`
    characters from there, so checking one window per `step` characters is enough (and false alarms are rare).
    """
    if len(s) <= limit:
        return False
    step = (limit + 1) // 2
    width = limit + 2 - step
    for m in range(0, len(s) - width + 1, step):
        window = s[m : m + width]
        if window.isspace():
            return True
        first = window.split(None, 1)
        if len(first) == 1 and len(first[0]) == width:  # no whitespace at all in the window
            return True
    return False


def split_long_runs(s: str, limit: int = MAX_NO_WHITESPACES_CHARS) -> list[str]:
    """Cut `s` inside every run of more than `limit` whitespace or non-whitespace characters, every `limit` chars.

    The same cuts as Meta's `_split_whitespaces_or_nonwhitespaces`, found with a regex instead of a Python loop
    over characters: `split_long_runs("a" * 60_000)` -> pieces of 25000, 25000 and 10000 characters.
    """
    if not _may_have_long_run(s, limit):
        return [s]
    pattern = (
        _LONG_RUN
        if limit == MAX_NO_WHITESPACES_CHARS
        else re.compile(rf"(?<!\S)\S{{{limit + 1},}}|(?<!\s)\s{{{limit + 1},}}")
    )
    cuts = []
    for m in pattern.finditer(s):
        cuts.extend(range(m.start() + limit, m.end(), limit))
    if not cuts:
        return [s]
    bounds = [0, *cuts, len(s)]
    return [s[a:b] for a, b in zip(bounds, bounds[1:])]


def chunks_for_encoding(text: str) -> Iterator[str]:
    """The chunks Meta's tokenizer hands to tiktoken: 400,000-character slices, each cut inside long runs."""
    if len(text) <= MAX_NO_WHITESPACES_CHARS:  # the common case: nothing to cut
        yield text
        return
    for i in range(0, len(text), TIKTOKEN_MAX_ENCODE_CHARS):
        yield from split_long_runs(text[i : i + TIKTOKEN_MAX_ENCODE_CHARS])
