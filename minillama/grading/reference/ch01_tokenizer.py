"""Reference answers for exercises/ch01_tokenizer.py: thin wrappers around `minillama.tokenizer` (paper §3.2)."""

from __future__ import annotations

import warnings

from minillama.tokenizer import bpe_merge, train_bpe
from minillama.tokenizer import count_pairs as _count_pairs
from minillama.tokenizer import merge_pair as _merge_pair
from minillama.tokenizer import pretokenize as _pretokenize

# What a learner's file must not call (the grader's worker blocks it): modules, or "module:name".
ANSWER_KEY = ("minillama.tokenizer",)

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def pretokenize(text: str) -> list[str]:
    """Split `text` into pieces with the Llama 3 pattern: "Hello world!" -> ["Hello", " world", "!"].
    Joining the pieces gives back `text` exactly."""
    return _pretokenize(text)


def count_pairs(words: dict[tuple[int, ...], int]) -> dict[tuple[int, int], int]:
    """`{word: count}` -> `{(left id, right id): number of times the pair occurs}`, where a pair occurring k times in a
    word that appears c times counts k * c. Pairs never cross from one word into the next."""
    return _count_pairs(words)


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right without overlaps:
    merge_pair([5, 5, 5], (5, 5), 9) -> [9, 5]; merge_pair([1, 2, 3, 1, 2], (1, 2), 7) -> [7, 3, 7]."""
    return _merge_pair(list(ids), tuple(pair), new_id)


def train_merges(text: str, n_merges: int) -> list[tuple[int, int]]:
    """Learn up to `n_merges` BPE merges from `text`: pre-tokenize, start from each piece's UTF-8 bytes (ids 0..255),
    then repeatedly merge the most frequent adjacent pair into a new id 256, 257, ... Ties go to the smallest pair
    (compare (left, right) tuples). Stop early when no pair is left. Returns the merged pairs in order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # running out of pairs is allowed here
        return train_bpe(text, 256 + n_merges, special_tokens=()).merges


def encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Encode one pre-tokenized piece with a rank table (tiktoken's algorithm): start from single bytes; while some
    adjacent pair's concatenation is in `ranks`, merge the pair with the *lowest* rank (the leftmost one on a tie);
    return the ranks of the final parts. With Llama 3's ranks, b" hello" -> [24748]."""
    return [ranks[p] for p in bpe_merge(piece, ranks)]


def decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    """Token ids -> text. A token can hold part of a UTF-8 character (emoji are often split over two or three
    tokens), so join all the bytes first and decode once; bytes that are still invalid become U+FFFD (the
    replacement character) instead of raising."""
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
