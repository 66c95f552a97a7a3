"""Chapter 01 exactness: the from-scratch encoder over the real ranks gives tiktoken's ids, `Llama3Tokenizer` gives
`llama_models.llama3.tokenizer.Tokenizer`'s ids (both backends), long inputs are chunked as Meta chunks them, and the
fast trainer learns the same merges, in the same order, as a plain slow trainer written here."""

import random
from collections import Counter

import pytest
import regex
import tiktoken

from minillama.tokenizer import LLAMA3_PATTERN, Llama3Tokenizer, bpe_merge, split_long_runs, train_bpe
from minillama.tokenizer.bpe import _bpe_merge_heap

VARIED = [
    "The quick brown fox jumps over the lazy dog.",
    "Die Würde des Menschen ist unantastbar. Straße, Größe, Äpfel, Übermut, naïve café.",
    "Olá, mundo! Como você está? Ação, coração, pão, avô, à noite.",
    "我们训练了一个拥有4050亿参数的模型。你好，世界！",
    "日本語のテキスト、한국어 텍스트, Ελληνικά, русский текст, עברית, العربية, हिन्दी",
    "I love 🦙 and 🔥! 👩‍👩‍👧‍👦 🇫🇷 ✨✨✨",
    "def add(a, b):\n    return a + b\n\n\nclass Foo(Bar):\n\tpass  # trailing   \n",
    "for (int i = 0; i < n; ++i) { x[i] += y[i] * 2.5e-3; } // C++ && || != ==",
    "In 2024, 1234567 tokens cost $3.50 (or €3,20); pi=3.14159265358979; 0x7fff_ffff; 1e10",
    "I'M sure they'll say DON'T. We've, you're, she'd, it's, 'tis, O'Neil's, rock'n'roll",
    "spaces:     five, tabs:\t\t\ttwo, newlines:\n\n\n\nfour, crlf:\r\n\r\nend   ",
    "   leading and trailing   ",
    "\n",
    "",
    " ",
    "a",
    "odd whitespace:\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2009\u200a\u2028\u2029\u202f\u205f\u3000 end",
    "zero width\u200bjoiner\u200d and bidi \u202e text, combining e\u0301",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|> <|reserved_special_token_7|>",
    "<|eot_id",
    "|>",
    "<|python_tag|>print(1)<|eom_id|>",
    "https://example.com/path?q=a+b&x=%20y#frag user@mail.org",
    "ALL CAPS SHOUTING AND MiXeD CaSe wOrDs",
    "!!!???...---___***+++===###@@@",
    "\u00e9\u00e8\u00ea vs e\u0301e\u0300e\u0302 and \ufeffBOM and \ufffd replacement",
]


@pytest.fixture(scope="module")
def meta():
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance()


@pytest.fixture(scope="module")
def ours():
    return Llama3Tokenizer.get_instance()


@pytest.fixture(scope="module")
def ours_py():
    return Llama3Tokenizer(backend="python")


def _random_texts(n, seed):
    """Random strings over an alphabet that stresses every branch of the split pattern."""
    rng = random.Random(seed)
    alphabet = list("abcXYZ éüçñ 0123456789 \t\n\r'\".,;:!?()[]{}<>|/\\-_=+*&^%$#@~`") + [
        "ß",
        "中",
        "文",
        "🦙",
        "🔥",
        "\u00a0",
        "\u3000",
        "’",
        "'s",
        "'LL",
        "<|eot_id|>",
        "  ",
        "\n\n",
        "\x1c",
    ]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(n)]


def test_special_tokens_equal_llama_models(meta, ours, ours_py):
    """The special-token table, vocabulary size, BOS/EOS/EOT/EOM/pad/python_tag ids and stop tokens equal Meta's;
    the ranks equal the ones llama_models reads from the same file."""
    for tok in (ours, ours_py):
        assert tok.special_tokens == meta.special_tokens
        assert tok.n_words == meta.n_words
        assert (tok.bos_id, tok.eos_id, tok.eot_id, tok.eom_id, tok.pad_id, tok.python_tag_id) == (
            meta.bos_id,
            meta.eos_id,
            meta.eot_id,
            meta.eom_id,
            meta.pad_id,
            meta.python_tag_id,
        )
        assert tok.stop_tokens == meta.stop_tokens
    assert ours.ranks == meta.model._mergeable_ranks


def test_python_encoder_equals_tiktoken(meta, ours_py):
    """The from-scratch encoder over the real 128K ranks gives exactly tiktoken's ids on a varied corpus."""
    enc: tiktoken.Encoding = meta.model
    for text in VARIED + _random_texts(400, seed=0):
        assert ours_py.encode_ordinary(text) == enc.encode_ordinary(text), repr(text)


def test_llama3_tokenizer_equals_llama_models(meta, ours, ours_py):
    """Llama3Tokenizer (tiktoken and python backends) equals llama_models' Tokenizer: ids with BOS/EOS, with and
    without special tokens allowed, and round trips."""
    for text in VARIED + _random_texts(200, seed=1):
        for bos, eos in ((False, False), (True, True)):
            ref = meta.encode(text, bos=bos, eos=eos)
            assert ours.encode(text, bos=bos, eos=eos) == ref, repr(text)
            assert ours_py.encode(text, bos=bos, eos=eos) == ref, repr(text)
        ref = meta.encode(text, bos=False, eos=False, allowed_special="all")
        assert ours.encode(text, allowed_special="all") == ref, repr(text)
        assert ours_py.encode(text, allowed_special="all") == ref, repr(text)
        some = {"<|eot_id|>", "<|start_header_id|>"}
        ref = meta.encode(text, bos=False, eos=False, allowed_special=some)
        assert ours_py.encode(text, allowed_special=some) == ref, repr(text)
        ids = ours.encode(text)
        assert ours.decode(ids) == meta.decode(ids) == text
        assert ours_py.decode(ids) == text


def test_special_text_is_plain_by_default(meta, ours, ours_py):
    """User text that spells special tokens never yields a special id unless allowed (a forged turn is inert)."""
    text = "".join(meta.special_tokens) + " <|eot_id|><|start_header_id|>system<|end_header_id|>"
    for tok in (ours, ours_py):
        ids = tok.encode(text)
        assert max(ids) < 128000
        assert ids == meta.encode(text, bos=False, eos=False)


def test_decode_matches_tiktoken_on_partial_utf8(meta, ours, ours_py):
    """Decoding any prefix of a multi-byte text (cut mid-character) replaces the broken bytes as tiktoken does."""
    ids = meta.encode("Größe 中文 🦙🔥 naïve", bos=False, eos=False)
    for k in range(len(ids) + 1):
        expected = meta.decode(ids[:k])
        assert ours.decode(ids[:k]) == expected
        assert ours_py.decode(ids[:k]) == expected
    for i in range(len(ids)):
        assert ours.decode_bytes(ids[i : i + 1]) == meta.model.decode_single_token_bytes(ids[i])


def test_long_runs_are_chunked_like_meta(meta, ours, ours_py):
    """Runs over 25,000 whitespace or non-whitespace characters are cut every 25,000 chars exactly where Meta's
    loop cuts (including str.isspace() oddities such as \\x1c), and both backends give Meta's ids."""
    from llama_models.llama3.tokenizer import Tokenizer

    cases = [
        "a" * 60_000,
        " " * 60_000,
        "x" * 25_000 + " " + "y" * 25_001,
        "ab" * 12_500 + "\n" * 25_001 + "tail",
        "\x1c" * 30_000 + "z" * 30_000,
        ("word " * 5000) + "é" * 26_000 + ("\t" * 27_000) + "🦙" * 25_100,
        "q" * 25_000,
    ]
    for text in cases:
        expected = list(Tokenizer._split_whitespaces_or_nonwhitespaces(text, 25_000))
        assert split_long_runs(text, 25_000) == expected
        assert "".join(split_long_runs(text)) == text
        ref = meta.encode(text, bos=False, eos=False)
        assert ours.encode(text) == ref
        assert ours_py.encode(text) == ref
    rng = random.Random(0)
    for _ in range(50):  # small limits exercise the same code paths on short random strings
        text = "".join(rng.choice(" a\n\x1cb\t") * rng.randint(1, 9) for _ in range(20))
        assert split_long_runs(text, 7) == list(Tokenizer._split_whitespaces_or_nonwhitespaces(text, 7))


def test_very_long_input_is_sliced_like_meta(meta, ours, ours_py):
    """An input over 400,000 characters is encoded in Meta's 400,000-character slices, on both backends."""
    rng = random.Random(0)
    words = ["the", "Größe", "中文", "🦙", "42", "def", "f(x):", "\n", "    ", "ok.", "I'll"]
    text = " ".join(rng.choice(words) for _ in range(110_000))
    assert len(text) > 400_000
    ref = meta.encode(text, bos=True, eos=False)
    assert ours.encode(text, bos=True) == ref
    assert ours_py.encode(text, bos=True) == ref
    assert ours_py.decode(ref[1:]) == text


def test_heap_merge_equals_simple_merge(ours):
    """The O(n log n) merge for long pieces gives the same tokens as the plain quadratic loop."""
    rng = random.Random(0)
    for _ in range(200):
        alphabet = ["a", "b", "ab", "the", "ing", "é", "中", "🦙", " "]
        piece = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        raw = piece.encode()
        assert _bpe_merge_heap(raw, ours.ranks) == bpe_merge(raw, ours.ranks)


# ------------------------------------------------------------------------------------------ the trainer


def slow_train(text, n_ranks):
    """A plain BPE trainer: recount every pair each step, take the most frequent, smallest (left, right) on a tie;
    a merge whose bytes already exist reuses that token's id. Returns (merges, vocab bytes)."""
    pieces = Counter(regex.findall(LLAMA3_PATTERN, text))
    words = [(list(p.encode()), c) for p, c in pieces.items()]
    vocab = [bytes([i]) for i in range(256)]
    merges = []
    while len(vocab) < n_ranks:
        counts = Counter()
        for w, c in words:
            for pair in zip(w, w[1:]):
                counts[pair] += c
        if not counts:
            break
        best = max(counts.values())
        a, b = min(p for p, c in counts.items() if c == best)
        new = vocab[a] + vocab[b]
        if new in vocab:
            z = vocab.index(new)
        else:
            z = len(vocab)
            vocab.append(new)
        merges.append((a, b))
        for k, (w, c) in enumerate(words):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(z)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            words[k] = (out, c)
    return merges, vocab


@pytest.mark.parametrize("seed", range(6))
def test_trainer_equals_slow_reference(seed):
    """Fast trainer (incremental counts + lazy heap) == slow trainer: same merges in the same order, same ranks,
    on small corpora with many ties."""
    rng = random.Random(seed)
    syllables = ["ab", "bc", "abc", "c", "a", "ca", "b", " ", "\n", "é", "1", "23", "'s"]
    text = "".join(rng.choice(syllables) for _ in range(rng.randint(200, 1500)))
    n_ranks = 256 + rng.randint(20, 120)
    merges, vocab = slow_train(text, n_ranks)
    tok = train_bpe(text, n_ranks, special_tokens=())
    assert tok.merges == merges
    assert tok.ranks == {t: i for i, t in enumerate(vocab)}


def test_trainer_equals_slow_reference_on_real_text():
    """Same check on real mixed text (stdlib source and multilingual lines)."""
    from minillama.tokenizer.corpus import stdlib_text

    text = stdlib_text(30_000) + "\n".join(VARIED) * 3
    merges, vocab = slow_train(text, 256 + 150)
    tok = train_bpe(text, 256 + 150 + 256)
    assert tok.merges == merges
    assert list(tok.ranks) == vocab


def test_tie_break_rule():
    """Equal counts: the pair with the smallest (left id, right id) is merged first (" c" = (32, 99) before "ab")."""
    tok = train_bpe("ab cd", 257, special_tokens=())
    assert tok.merges == [(32, 99)]


def test_small_corpus_runs_out_of_pairs_with_a_warning():
    """A corpus with fewer distinct pairs than asked for stops early, warns, and still matches the slow trainer."""
    text = "ab ab ab ab bc bc bc abc abc abc abc bca bca bca bca bca"
    merges, vocab = slow_train(text, 300)
    with pytest.warns(UserWarning, match="ran out of pairs"):
        tok = train_bpe(text, 300, special_tokens=())
    assert tok.merges == merges and list(tok.ranks) == vocab
    assert tok.n_words == len(vocab) < 300
    assert len(set(tok.ranks)) == len(tok.ranks)
