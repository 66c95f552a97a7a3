"""Chapter 01 basics: training a BPE, encode/decode round trips, special tokens, save/load in Meta's format, and
the Llama 3 figures of FACTS.md §3 (ids computed with llama-models' tokenizer)."""

import pytest

from minillama.tokenizer import LLAMA3_PATTERN, SPECIAL_TOKENS, BPETokenizer, Llama3Tokenizer, load_ranks, train_bpe

CORPUS = (
    "def add(a, b):\n    return a + b\n\n"
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs.\n"
    "Die Würde des Menschen ist unantastbar. Olá, mundo! Como você está? 你好，世界 🦙🔥\n"
) * 20


@pytest.fixture(scope="module")
def llama3():
    tok = Llama3Tokenizer.get_instance()
    assert Llama3Tokenizer.get_instance() is tok
    return tok


@pytest.fixture(scope="module")
def small_tok():
    return train_bpe(CORPUS, 256 + 100 + len(SPECIAL_TOKENS))


def test_special_token_ids_match_facts(llama3):
    """The 256 specials follow the 128,000 ranks in Meta's order (FACTS.md §3 table)."""
    assert len(SPECIAL_TOKENS) == 256 and len(set(SPECIAL_TOKENS)) == 256
    st = llama3.special_tokens
    assert st["<|begin_of_text|>"] == 128000 and st["<|end_of_text|>"] == 128001
    assert st["<|finetune_right_pad_id|>"] == 128004 and st["<|step_id|>"] == 128005
    assert (st["<|start_header_id|>"], st["<|end_header_id|>"]) == (128006, 128007)
    names = ("<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>")
    assert [st[s] for s in names] == [128008, 128009, 128010, 128011]
    assert st["<|reserved_special_token_2|>"] == 128012 and st["<|reserved_special_token_245|>"] == 128255
    assert llama3.n_words == 128256 and llama3.stop_tokens == [128001, 128008, 128009]
    assert (llama3.bos_id, llama3.eos_id, llama3.pad_id, llama3.eot_id, llama3.eom_id, llama3.python_tag_id) == (
        128000,
        128001,
        128004,
        128009,
        128008,
        128010,
    )
    assert (llama3.start_header_id, llama3.end_header_id) == (128006, 128007)


@pytest.mark.parametrize("backend", ["tiktoken", "python"])
def test_llama3_facts_encodings(backend, llama3):
    """FACTS.md §3 'Encodings (computed)': exact ids for English, Portuguese, emoji, numbers, BOS/EOS, special text."""
    tok = llama3 if backend == "tiktoken" else Llama3Tokenizer(backend="python")
    assert tok.encode("The quick brown fox jumps over the lazy dog.") == [
        791,
        4062,
        14198,
        39935,
        35308,
        927,
        279,
        16053,
        5679,
        13,
    ]
    assert tok.encode("Olá, mundo! Como você está?") == [43819, 1995, 11, 29452, 0, 46774, 25738, 15833, 30]
    assert tok.encode("I love 🦙 and 🔥!") == [40, 3021, 11410, 99, 247, 323, 96169, 98, 0]
    assert tok.encode("In 2024, 1234567 tokens.") == [644, 220, 2366, 19, 11, 220, 4513, 10961, 22, 11460, 13]
    assert tok.encode("I'M sure they'll say DON'T") == [40, 28703, 2771, 814, 3358, 2019, 45373, 17773]
    assert tok.encode("Hello world", bos=True, eos=True) == [128000, 9906, 1917, 128001]
    assert tok.encode("<|eot_id|>") == [27, 91, 68, 354, 851, 91, 29]
    assert tok.encode("<|eot_id|>", allowed_special="all") == [128009]
    assert tok.encode("<|eot_id|>", allowed_special={"<|eot_id|>"}) == [128009]


def test_disallowed_special_raises(llama3):
    """disallowed_special='all' refuses special-token text with a clear error instead of encoding it."""
    with pytest.raises(ValueError, match="disallowed"):
        llama3.encode("hi <|eot_id|>", disallowed_special="all")
    with pytest.raises(ValueError, match="unknown"):
        llama3.encode("hi", allowed_special={"<|not_a_token|>"})
    with pytest.raises(TypeError):
        llama3.encode(b"bytes")


def test_decode_replaces_invalid_utf8(llama3):
    """A token holding part of a UTF-8 character decodes to U+FFFD, never raises; whole sequences round-trip."""
    ids = llama3.encode("🦙")
    assert llama3.decode(ids) == "🦙"
    assert "\ufffd" in llama3.decode(ids[:1])
    assert llama3.decode_bytes(ids[:1]) == "🦙".encode()[: len(llama3.decode_bytes(ids[:1]))]
    with pytest.raises(ValueError, match="outside"):
        llama3.decode([llama3.n_words])


def test_train_vocab_layout(small_tok):
    """vocab_size counts specials: ranks = vocab_size - 256, specials appended after them in Llama 3's order."""
    tok = small_tok
    assert tok.n_words == 256 + 100 + 256
    assert len(tok.ranks) == 356
    assert tok.bos_id == 356 and tok.eot_id == 356 + 9 and tok.stop_tokens == [357, 364, 365]
    assert all(tok.ranks[bytes([i])] == i for i in range(256))
    assert len(tok.merges) >= 100


def test_train_roundtrip_and_compression(small_tok):
    """Trained tokens decode back to the text, and compress the training text well below 1 token per byte."""
    ids = small_tok.encode(CORPUS)
    assert small_tok.decode(ids) == CORPUS
    assert len(ids) < 0.5 * len(CORPUS.encode())
    assert small_tok.encode("<|eot_id|>", allowed_special="all") == [small_tok.eot_id]
    assert small_tok.eot_id not in small_tok.encode("<|eot_id|>")


def test_save_load_meta_format(small_tok, tmp_path):
    """save() writes Meta's base64 ranks format (no specials); load() and llama_models' reader read it back."""
    from llama_models.tokenizer_utils import load_bpe_file

    path = small_tok.save(tmp_path / "tokenizer.model")
    assert load_bpe_file(path) == small_tok.ranks
    assert load_ranks(path) == small_tok.ranks
    again = BPETokenizer.load(path)
    assert again.n_words == small_tok.n_words and again.special_tokens == small_tok.special_tokens
    assert again.encode(CORPUS) == small_tok.encode(CORPUS)
    fast = Llama3Tokenizer(path)
    assert fast.encode(CORPUS, bos=True) == small_tok.encode(CORPUS, bos=True)


def test_bad_inputs_have_clear_errors(tmp_path):
    """Too small a vocabulary, a broken rank file and a missing file say what to change."""
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe("abc", 300)
    bad = tmp_path / "bad.model"
    bad.write_text("not base64 at all!\n")
    with pytest.raises(ValueError, match="base64"):
        load_ranks(bad)
    with pytest.raises(FileNotFoundError):
        Llama3Tokenizer(tmp_path / "missing.model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_bpe([tmp_path / "missing.txt"], 600)
    with pytest.raises(TypeError, match="pathlib.Path"):
        train_bpe([b"bytes"], 600)


def test_train_from_files_equals_train_from_text(tmp_path):
    """A folder of files trains exactly like the same documents passed as strings."""
    (tmp_path / "docs").mkdir()
    docs = [CORPUS[:1500], CORPUS[1500:3000], CORPUS[3000:]]
    for i, d in enumerate(docs):
        (tmp_path / "docs" / f"{i}.txt").write_text(d, encoding="utf-8")
    a = train_bpe(tmp_path / "docs", 600)
    b = train_bpe(docs, 600)
    assert a.ranks == b.ranks and a.merges == b.merges


def test_pattern_is_meta_pattern():
    """LLAMA3_PATTERN is the split regex of llama_models' tokenizer."""
    from llama_models.llama3.tokenizer import Tokenizer

    assert LLAMA3_PATTERN == Tokenizer.pat_str
