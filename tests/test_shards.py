"""Packed token shards and the resumable loader (minillama.data.shards)."""

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from minillama.data.corpus import Document
from minillama.data.shards import (
    SHARD_DTYPE,
    MixedLoader,
    ShardLoader,
    build_shards,
    open_split,
    pack_documents,
    read_meta,
    unigram_entropy,
)

BOS, EOS = 300, 301


class ByteTokenizer:
    """Test double: one id per UTF-8 byte, BOS/EOS above the bytes (like the course tokenizer's specials)."""

    n_words, bos_id, eos_id = 302, BOS, EOS

    def encode(self, text, bos=False, eos=False):
        return [BOS] * bos + list(text.encode("utf-8")) + [EOS] * eos


def docs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    words = ["def", "return", "self", "import", "class", "x", "for", "in", "é", "→"]
    return [
        Document(" ".join(rng.choice(words, size=rng.integers(3, 60))), "test", f"doc{i}", kind="code")
        for i in range(n)
    ]


def test_pack_documents_wraps_each_document():
    """Each document is [BOS] + tokens + [EOS], in order, as uint32."""
    out = pack_documents([[5, 6], [], [7]], bos_id=1, eos_id=2)
    assert out.dtype == np.uint32
    assert out.tolist() == [1, 5, 6, 2, 1, 2, 1, 7, 2]
    assert len(pack_documents([], 1, 2)) == 0


def test_build_shards_split_by_document(tmp_path):
    """Every document lands whole in exactly one split; the streams decode back to BOS text EOS per document;
    the shard files are flat uint32 memmaps; meta counts tokens."""
    corpus = docs()
    meta = build_shards(corpus, ByteTokenizer(), tmp_path, val_fraction=0.2, seed=3, shard_tokens=500)
    train_ids, val_ids = meta["splits"]["train"]["doc_ids"], meta["splits"]["val"]["doc_ids"]
    assert set(train_ids).isdisjoint(val_ids) and len(train_ids) + len(val_ids) == len(corpus)
    assert len(val_ids) == round(0.2 * len(corpus))
    by_id = {d.id: d for d in corpus}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        arrays = open_split(tmp_path, split)
        assert all(isinstance(a, np.memmap) and a.dtype == SHARD_DTYPE for a in arrays)
        assert all(len(a) <= 500 for a in arrays)
        stream = np.concatenate(arrays).tolist()
        expected = [t for i in ids for t in [BOS] + list(by_id[i].text.encode()) + [EOS]]
        assert stream == expected
        assert meta["splits"][split]["tokens"] == len(expected)
    assert len(open_split(tmp_path, "train")) > 1  # shard_tokens=500 forced several files
    assert json.loads((tmp_path / "meta.json").read_text()) == meta == read_meta(tmp_path)


def test_unigram_entropy_matches_counter():
    """Entropy of token frequencies equals -Σ p log p computed with collections.Counter."""
    stream = np.random.default_rng(0).integers(0, 50, size=5000) ** 2 % 97
    counts = Counter(stream.tolist())
    n = len(stream)
    expected = -sum(c / n * math.log(c / n) for c in counts.values())
    assert unigram_entropy(stream, 97 * 97) == pytest.approx(expected, rel=1e-12)


def test_loader_targets_are_inputs_shifted_and_epoch_covers_every_window():
    """targets[:, :-1] == inputs[:, 1:]; one epoch visits each window exactly once; later epochs reshuffle."""
    stream = np.arange(1001, dtype=SHARD_DTYPE)
    loader = ShardLoader([stream], seq_len=10, seed=0)
    assert loader.n_windows == 100
    starts = []
    for _ in range(25):
        x, y = loader.next_batch(4)
        assert x.dtype == torch.int64 and x.shape == (4, 10)
        assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)
        starts += x[:, 0].tolist()
    assert sorted(starts) == list(range(0, 1000, 10))
    assert starts != sorted(starts)  # shuffled
    x, _ = loader.next_batch(100)
    assert loader.state_dict()["epoch"] == 1 and sorted(x[:, 0].tolist()) == list(range(0, 1000, 10))
    assert x[:, 0].tolist() != starts


def test_loader_windows_do_not_cross_shard_files():
    """Windows are cut inside one file each."""
    a, b = np.arange(0, 25, dtype=SHARD_DTYPE), np.arange(1000, 1031, dtype=SHARD_DTYPE)
    loader = ShardLoader([a, b], seq_len=6, shuffle=False)
    rows = [loader.next_batch(1)[0][0].tolist() for _ in range(loader.n_windows)]
    assert loader.n_windows == 4 + 5
    for r in rows:
        assert (r[0] < 1000) == (r[-1] < 1000)


def test_loader_resume_replays_same_batches():
    """A fresh loader given state_dict() mid-epoch (and across an epoch boundary) yields the same batches."""
    stream = np.random.default_rng(1).integers(0, 500, size=3000).astype(SHARD_DTYPE)
    a = ShardLoader([stream], seq_len=16, seed=7)
    for _ in range(9):
        a.next_batch(5)
    state = json.loads(json.dumps(a.state_dict()))
    b = ShardLoader([stream], seq_len=16, seed=7)
    b.load_state_dict(state)
    for _ in range(40):  # 187 windows: crosses into epochs 1 and 2
        xa, ya = a.next_batch(5)
        xb, yb = b.next_batch(5)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.state_dict() == b.state_dict() and a.epoch >= 1
    with pytest.raises(ValueError, match="outside"):
        b.load_state_dict({"epoch": 0, "index": 10**6})


def test_loader_rejects_data_shorter_than_a_window(tmp_path):
    """Too little data for one window is a ValueError that says what to change; so is a non-shard folder."""
    with pytest.raises(ValueError, match="seq-len"):
        ShardLoader([np.arange(5, dtype=SHARD_DTYPE)], seq_len=8)
    with pytest.raises(ValueError, match="not a shard folder"):
        ShardLoader(tmp_path, seq_len=8)


def test_mixed_loader_ratio_and_resume():
    """Rows follow the mix ratio (within sampling error) and a resumed mix replays the same rows."""
    code = np.full(2001, 1, dtype=SHARD_DTYPE)
    prose = np.full(2001, 2, dtype=SHARD_DTYPE)

    def make():
        return MixedLoader(
            {"code": ShardLoader([code], 8, seed=0), "prose": ShardLoader([prose], 8, seed=1)},
            {"code": 3, "prose": 1},
            seed=5,
        )

    mix = make()
    x, _ = mix.next_batch(400)
    frac = (x[:, 0] == 1).float().mean().item()
    assert abs(frac - 0.75) < 0.07
    state = mix.state_dict()
    other = make()
    other.load_state_dict(json.loads(json.dumps(state)))
    for _ in range(3):
        assert torch.equal(mix.next_batch(7)[0], other.next_batch(7)[0])
