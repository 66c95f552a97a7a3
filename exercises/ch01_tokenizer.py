"""Chapter 01 exercises: a byte-level BPE tokenizer like Llama 3's, from scratch (paper §3.2).

Fill in each function, then grade your work from the repository root:

    python -m minillama.grade ch01

or run the last cell of notebooks/01_tokenizer.ipynb. Use only the standard library and the `regex` module; do not
import `minillama.tokenizer` (that is the answer key).

Vocabulary used below: a *piece* is one chunk of text from pre-tokenization; a *word* is a piece as a tuple of
token ids (at first its UTF-8 bytes); *ranks* map token bytes to token ids (lower rank = merged earlier).
"""

from __future__ import annotations

import regex  # noqa: F401  (the `re` module does not know \p{L} and \p{N})

#: Llama 3's pre-tokenization pattern (llama_models/llama3/tokenizer.py).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def pretokenize(text: str) -> list[str]:
    """Split `text` into pieces with the Llama 3 pattern: "Hello world!" -> ["Hello", " world", "!"].
    Joining the pieces gives back `text` exactly."""
    # Hints: one call of regex.findall does it. Watch for: `re` instead of `regex`; splitting on whitespace;
    # dropping the (?i:...) group, which makes "DON'T" split differently from "don't".
    raise NotImplementedError("Exercise 1.1: pretokenize")


def count_pairs(words: dict[tuple[int, ...], int]) -> dict[tuple[int, int], int]:
    """`{word: count}` -> `{(left id, right id): number of times the pair occurs}`, where a pair occurring k times in a
    word that appears c times counts k * c. Pairs never cross from one word into the next."""
    # Hints: for each word, zip(word, word[1:]) gives its adjacent pairs; add the word's count for each occurrence
    # (a word like (7, 7, 7) holds the pair (7, 7) twice).
    raise NotImplementedError("Exercise 1.2: count_pairs")


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, scanning left to right without overlaps:
    merge_pair([5, 5, 5], (5, 5), 9) -> [9, 5]; merge_pair([1, 2, 3, 1, 2], (1, 2), 7) -> [7, 3, 7]."""
    # Hints: walk an index i; if ids[i], ids[i+1] is the pair, emit new_id and jump by 2, else emit ids[i] and step 1.
    raise NotImplementedError("Exercise 1.3: merge_pair")


def train_merges(text: str, n_merges: int) -> list[tuple[int, int]]:
    """Learn up to `n_merges` BPE merges from `text`: pre-tokenize, start from each piece's UTF-8 bytes (ids 0..255),
    then repeatedly merge the most frequent adjacent pair into a new id 256, 257, ... Ties go to the smallest pair
    (compare (left, right) tuples). Stop early when no pair is left. Returns the merged pairs in order."""
    # Hints: count pieces first (collections.Counter(pretokenize(text))) and turn each into a tuple of bytes;
    # each step: pairs = count_pairs(words); best = the pair with the largest count, then the smallest pair;
    # rebuild words with merge_pair. The new id of merge k is 256 + k.
    raise NotImplementedError("Exercise 1.4: train_merges")


def encode_piece(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Encode one pre-tokenized piece with a rank table (tiktoken's algorithm): start from single bytes; while some
    adjacent pair's concatenation is in `ranks`, merge the pair with the *lowest* rank (the leftmost one on a tie);
    return the ranks of the final parts. With Llama 3's ranks, b" hello" -> [24748]."""
    # Hints: parts = [piece[i:i+1] for i in range(len(piece))]; loop: look up parts[i] + parts[i+1] for every i,
    # keep the lowest rank; if none is found stop, else replace the two parts by their concatenation.
    # Not the same as greedily taking the longest known prefix!
    raise NotImplementedError("Exercise 1.5: encode_piece")


def decode(ids: list[int], vocab: dict[int, bytes]) -> str:
    """Token ids -> text. A token can hold part of a UTF-8 character (emoji are often split over two or three
    tokens), so join all the bytes first and decode once; bytes that are still invalid become U+FFFD (the
    replacement character) instead of raising."""
    # Hints: b"".join(...) then .decode("utf-8", errors=...). Decoding token by token breaks characters that
    # span tokens; errors="ignore" silently drops bytes.
    raise NotImplementedError("Exercise 1.6: decode")
