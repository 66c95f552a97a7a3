"""Grading tests for exercises/ch01_tokenizer.py (paper §3.2): pre-tokenization, pair counting, one merge, a small
BPE trainer, encoding a piece with a rank table, and decoding with invalid bytes.

References: Meta's split pattern and tokenizer from `llama_models` (tiktoken with the real 128K ranks), Python's
`str.replace` (leftmost, non-overlapping), and plain loops written out in these tests.
"""

from collections import Counter

import pytest
import regex

CHAPTER = "ch01_tokenizer"

TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "I'M sure they'll say DON'T; we've it's THEY'RE.\n'TIS TRUE, 'Tis",
    "Die Würde des Menschen ist unantastbar. Größe, Straße.",
    "Olá, mundo! Como você está? 你好，世界！ 🦙🔥",
    "In 2024, 1234567 tokens cost $3.50.\n\n\n  indented\tcode:   x = f(a, b)  \r\n",
    "def add(a, b):\n    return a + b\n",
]


@pytest.fixture(scope="module")
def meta():
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance()


@pytest.fixture(scope="module")
def ranks():
    from pathlib import Path

    import llama_models.llama3 as pkg
    from llama_models.tokenizer_utils import load_bpe_file

    return load_bpe_file(Path(pkg.__file__).parent / "tokenizer.model")


# ---------------------------------------------------------------------- 1.1 pre-tokenization
@pytest.mark.points(2)
def test_pretokenize_matches_meta(impl, meta):
    """The pieces equal `regex.findall` with the pattern in llama_models' tokenizer, on English, contractions in
    capitals, German, Portuguese, Chinese, emoji, numbers and whitespace runs; the pieces join back to the text."""
    for text in TEXTS:
        pieces = impl.pretokenize(text)
        assert pieces == regex.findall(meta.pat_str, text), text
        assert "".join(pieces) == text


# ---------------------------------------------------------------------- 1.2 pair counting
def _pairs_by_hand(words):
    out = {}
    for w, c in words.items():
        for i in range(len(w) - 1):
            out[(w[i], w[i + 1])] = out.get((w[i], w[i + 1]), 0) + c
    return out


@pytest.mark.points(2)
def test_count_pairs(impl):
    """Counts weight each word by its frequency, count repeated pairs inside a word, and never pair the last id of
    one word with the first of the next."""
    words = {(1, 2, 3): 4, (2, 3): 1, (7, 7, 7): 2, (3, 1): 5, (9,): 10}
    got = impl.count_pairs(words)
    assert {k: v for k, v in got.items() if v} == _pairs_by_hand(words)
    assert got[(7, 7)] == 4 and got[(2, 3)] == 5


# ---------------------------------------------------------------------- 1.3 one merge
def _merge_by_replace(ids, pair, new_id):
    # str.replace scans left to right without overlaps: exactly one BPE merge step
    text = "".join(chr(0xE000 + i) for i in ids).replace(
        chr(0xE000 + pair[0]) + chr(0xE000 + pair[1]), chr(0xE000 + new_id)
    )
    return [ord(c) - 0xE000 for c in text]


@pytest.mark.points(2)
def test_merge_pair(impl):
    """Each occurrence of the pair becomes the new id, left to right without overlaps ([5,5,5] -> [9,5]), as
    `str.replace` does on the same sequence."""
    import random

    assert impl.merge_pair([5, 5, 5], (5, 5), 9) == [9, 5]
    assert impl.merge_pair([1, 2, 3, 1, 2], (1, 2), 7) == [7, 3, 7]
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randint(0, 3) for _ in range(rng.randint(0, 12))]
        pair = (rng.randint(0, 3), rng.randint(0, 3))
        assert impl.merge_pair(list(ids), pair, 100) == _merge_by_replace(ids, pair, 100), (ids, pair)


# ---------------------------------------------------------------------- 1.4 training
def _train_by_hand(text, n_merges, pattern):
    words = Counter(tuple(p.encode("utf-8")) for p in regex.findall(pattern, text))
    merges = []
    for k in range(n_merges):
        counts = Counter()
        for w, c in words.items():
            for i in range(len(w) - 1):
                counts[w[i], w[i + 1]] += c
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        words = Counter({tuple(_merge_by_replace(list(w), best, 256 + k)): c for w, c in words.items()})
    return merges


@pytest.mark.points(3)
def test_train_merges(impl, meta):
    """On a small corpus with repeated words and tied counts, the merges equal a plain trainer's: most frequent
    pair first, smallest pair on a tie, never across pre-tokenized pieces."""
    text = "low lower lowest newer newest wider new new new\nthe theme there then the\n" * 3 + "aaab abab"
    expected = _train_by_hand(text, 25, meta.pat_str)
    assert [tuple(p) for p in impl.train_merges(text, 25)] == expected


@pytest.mark.points(1)
def test_train_merges_stops_when_no_pairs_are_left(impl):
    """'ab ab' has the pieces "ab" and " ab": only two merges exist ("a"+"b", then " "+"ab"); asking for 10 returns
    those two."""
    merges = [tuple(p) for p in impl.train_merges("ab ab", 10)]
    assert merges == [(97, 98), (32, 256)]


# ---------------------------------------------------------------------- 1.5 encoding with a rank table
@pytest.mark.points(3)
def test_encode_piece_matches_tiktoken(impl, meta, ranks):
    """With Llama 3's real ranks, every piece of a varied text encodes to tiktoken's ids (lowest rank merged
    first, which is not greedy longest-prefix matching)."""
    for text in TEXTS + [open(__file__, encoding="utf-8").read()[:3000]]:
        for piece in regex.findall(meta.pat_str, text):
            assert impl.encode_piece(piece.encode("utf-8"), ranks) == meta.model.encode_ordinary(piece), piece


@pytest.mark.points(1)
def test_encode_piece_small_table(impl):
    """A hand-made table where b"bc" (rank 256) beats b"ab" (rank 257): b"abc" must become [97, 256]."""
    table = {bytes([i]): i for i in range(256)}
    table[b"bc"] = 256
    table[b"ab"] = 257
    assert impl.encode_piece(b"abc", table) == [97, 256]
    assert impl.encode_piece(b"xyz", table) == [120, 121, 122]


# ---------------------------------------------------------------------- 1.6 decoding
@pytest.mark.points(2)
def test_decode_matches_tiktoken(impl, meta):
    """Every prefix of an emoji- and accent-rich text's ids (many cut inside a character) decodes exactly as
    tiktoken decodes it: whole characters across tokens, U+FFFD for bytes left incomplete."""
    ids = meta.encode("Größe 🦙 and 🔥, naïve 中文 ok", bos=False, eos=False)
    vocab = {i: meta.model.decode_single_token_bytes(i) for i in set(ids)}
    for k in range(len(ids) + 1):
        assert impl.decode(ids[:k], vocab) == meta.decode(ids[:k]), ids[:k]
