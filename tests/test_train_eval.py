"""Held-out scoring (`minillama.train.heldout`): nats/token and bits/byte against hand computations."""

import math
import shutil
import subprocess

import numpy as np
import pytest
import torch

from minillama.assets import shipped_tokenizer_path
from minillama.data.shards import ShardLoader, pack_documents
from minillama.tokenizer import BPETokenizer
from minillama.train.heldout import (
    compressor_bits_per_byte,
    heldout_text,
    heldout_windows,
    score_batches,
    score_split,
    token_byte_lengths,
)


class Uniform(torch.nn.Module):
    """Equal logits for every id: exactly ln(vocab) nats on every target."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab, self.w = vocab, torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, self.vocab) + 0 * self.w


def test_uniform_model_scores_log2_vocab_bits_per_token_over_bytes_per_token():
    vocab, seq_len = 50, 8
    stream = np.random.default_rng(0).integers(0, vocab, size=10 * seq_len + 1 + 5)  # 5 tokens fill no window
    token_bytes = torch.arange(vocab) % 4  # id i stands for i % 4 bytes (0 like a special token)
    loader = ShardLoader([stream], seq_len, "val", shuffle=False)
    s = score_split(Uniform(vocab), loader, token_bytes, rows=3)  # 10 windows in batches of 3, 3, 3, 1
    targets = stream[1 : 10 * seq_len + 1]
    assert s.tokens == 80 and s.windows == s.of_windows == 10 and not s.sampled
    assert s.bytes == int((targets % 4).sum())
    assert s.nats_per_token == pytest.approx(math.log(vocab), rel=1e-6)
    assert s.bits_per_byte == pytest.approx(math.log2(vocab) * 80 / s.bytes, rel=1e-6)
    assert "all 10 windows" in s.describe()


def test_bits_per_byte_by_hand_on_a_small_model():
    """Total NLL from log_softmax by hand, bytes from the tokenizer's decoded target text."""
    tok = BPETokenizer.load(shipped_tokenizer_path())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(tok.n_words, 8), torch.nn.Linear(8, tok.n_words))
    ids = [tok.bos_id] + tok.encode("def f(x):\n    return 'é' * x\n") + [tok.eos_id]
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    s = score_batches(model, [(x, y)], token_byte_lengths(tok))
    nll = -torch.log_softmax(model(x), -1)[0, torch.arange(len(ids) - 1), y[0]].sum().item()
    text_bytes = len(tok.decode(ids[1:-1]).encode("utf-8"))  # the EOS target is special: 0 bytes
    assert s.bytes == text_bytes and s.tokens == len(ids) - 1
    assert s.bits_per_byte == pytest.approx(nll / math.log(2) / text_bytes, rel=1e-5)


def test_token_byte_lengths_count_utf8_bytes_and_zero_for_specials():
    tok = BPETokenizer.load(shipped_tokenizer_path())
    lengths = token_byte_lengths(tok, vocab_size=tok.n_words + 3)
    text = "naïve café — 日本語 and code: x = 1\n"
    assert int(lengths[tok.encode(text)].sum()) == len(text.encode("utf-8"))
    assert lengths[tok.bos_id] == lengths[tok.eos_id] == 0 and lengths[-3:].tolist() == [0, 0, 0]


def test_strided_sample_is_spread_and_stated():
    assert heldout_windows(100, 10, None).tolist() == list(range(100))
    w = heldout_windows(100, 10, 50)
    assert w.tolist() == [0, 25, 50, 74, 99]
    loader = ShardLoader([np.arange(1001) % 7], 10, "val", shuffle=False)
    s = score_split(Uniform(7), loader, torch.ones(7, dtype=torch.int64), max_tokens=50)
    assert s.sampled and s.windows == 5 and s.tokens == 50 and "5 of 100 windows" in s.describe()
    with pytest.raises(ValueError, match="max_tokens"):
        heldout_windows(100, 10, 0)


def test_heldout_text_is_the_documents_and_compressors_match_the_command_line_tools(tmp_path):
    """The text behind packed token arrays is the documents' bytes (BOS/EOS dropped); the compressor yardstick
    equals what the `xz -9e` and `gzip -9` programs give on that text (where installed)."""
    tok = BPETokenizer.load(shipped_tokenizer_path())
    texts = ["def f(x):\n    return x + 1\n", "Ünïcode prose, a sentence or two.\n" * 20]
    stream = pack_documents([tok.encode(t) for t in texts], tok.bos_id, tok.eos_id)
    data = heldout_text([stream[:7], stream[7:]], tok)
    assert data == "".join(texts).encode()
    got = compressor_bits_per_byte(data)
    for tool, flags in (("xz", ["-9e", "-c"]), ("gzip", ["-9", "-n", "-c"])):
        if shutil.which(tool) is None:
            continue
        out = subprocess.run([tool, *flags], input=data, capture_output=True, check=True).stdout
        assert got[f"{tool} {flags[0]}"] == pytest.approx(8 * len(out) / len(data), rel=0.02)
    assert got["xz -9e"] < 8 and compressor_bits_per_byte(bytes(range(256)) * 400)["xz -9e"] < 0.1
    with pytest.raises(ValueError):
        compressor_bits_per_byte(b"")
