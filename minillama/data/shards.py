"""Packed token shards on disk and a resumable loader over them (paper §3.1 → §3.4).

Pre-training does not see "documents"; it sees one long stream of token ids in which documents follow each other,
each opened by ``<|begin_of_text|>`` and closed by ``<|end_of_text|>``::

    [BOS] doc 1 tokens ... [EOS] [BOS] doc 2 tokens ... [EOS] [BOS] doc 3 ...

The stream is cut into fixed windows of ``seq_len + 1`` tokens; a window's first ``seq_len`` tokens are the inputs
and its last ``seq_len`` the targets (the same window shifted by one). A window may span a document boundary; the
EOS/BOS pair tells the model a new document starts. (Llama 3 also masks attention across documents in one sequence,
§3.2; it found that mattered only for very long sequences, and our windows are short.)

On disk a split is a folder of flat ``uint32`` files read as numpy memmaps, so a corpus larger than memory costs
nothing to open::

    shards/
      meta.json            tokenizer facts, token and document counts per split, unigram entropy of train
      train_0000.bin ...   uint32 token ids
      val_0000.bin

The split into train and validation is made on *documents* before tokenizing (`train_val_split`), so no document's
text appears on both sides and validation loss measures generalisation, not memory.

`ShardLoader` serves ``(inputs, targets)`` batches: windows in a seeded random order per epoch, fully described by
``{"epoch", "index"}`` so that a resumed run reads exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from minillama.data.corpus import train_val_split
from minillama.utils import progress

__all__ = [
    "SHARD_DTYPE",
    "pack_documents",
    "inputs_and_targets",
    "tokenize_documents",
    "write_shards",
    "build_shards",
    "read_meta",
    "open_split",
    "unigram_entropy",
    "ShardLoader",
    "MixedLoader",
]

#: Token ids on disk. uint16 would do for an 8K vocabulary, but Llama 3's 128,256 ids need more than 16 bits.
SHARD_DTYPE = np.uint32
META = "meta.json"
DEFAULT_SHARD_TOKENS = 1 << 24  # 16M tokens (64 MB) per file


# ---------------------------------------------------------------------- packing
def pack_documents(docs_tokens: Iterable[Sequence[int]], bos_id: int, eos_id: int) -> np.ndarray:
    """Concatenate tokenized documents into one stream, each as ``[bos_id] + tokens + [eos_id]``.

    docs_tokens: one list of token ids per document (without BOS/EOS).
    Returns a flat ``uint32`` array of length ``sum(len(d) + 2)``.
    """
    parts = []
    for toks in docs_tokens:
        parts.append(np.asarray([bos_id], dtype=SHARD_DTYPE))
        parts.append(np.asarray(toks, dtype=SHARD_DTYPE))
        parts.append(np.asarray([eos_id], dtype=SHARD_DTYPE))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=SHARD_DTYPE)


def tokenize_documents(docs: Iterable, tokenizer, progress_desc: str | None = None) -> list[list[int]]:
    """Token ids of each document's text (``doc.text`` for `Document`s, or plain strings), without BOS/EOS."""
    docs = list(docs)
    it = progress(docs, desc=progress_desc, unit="doc") if progress_desc else docs
    return [tokenizer.encode(getattr(d, "text", d), bos=False, eos=False) for d in it]


def inputs_and_targets(stream: np.ndarray, starts: Sequence[int], seq_len: int) -> tuple[Tensor, Tensor]:
    """Rows of next-token prediction cut from a packed stream.

    Row r reads the ``seq_len + 1`` tokens ``stream[starts[r] : starts[r] + seq_len + 1]``: inputs are the first
    `seq_len`, targets the last `seq_len` (the same tokens shifted left by one, so ``targets[r, t]`` is the token
    after ``inputs[r, t]``). Returns int64 tensors ``inputs (rows, seq_len)``, ``targets (rows, seq_len)``.
    """
    if any(s < 0 or s + seq_len + 1 > len(stream) for s in starts):
        raise ValueError(
            f"windows of {seq_len + 1} tokens at starts {list(starts)} do not fit in a stream of {len(stream)} tokens"
        )
    t = torch.from_numpy(np.stack([np.asarray(stream[s : s + seq_len + 1], dtype=np.int64) for s in starts]))
    return t[:, :-1], t[:, 1:]


# ---------------------------------------------------------------------- writing
def write_shards(
    stream: np.ndarray, folder: str | os.PathLike, split: str, shard_tokens: int = DEFAULT_SHARD_TOKENS
) -> list[Path]:
    """Write a token stream as ``{split}_0000.bin, ...`` files of at most `shard_tokens` ids each."""
    if split not in ("train", "val") and not split.isidentifier():
        raise ValueError(f"split must be a simple name such as 'train' or 'val', got {split!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{split}_*.bin"):
        old.unlink()
    stream = np.asarray(stream, dtype=SHARD_DTYPE)
    paths = []
    for i, start in enumerate(range(0, max(len(stream), 1), shard_tokens)):
        path = folder / f"{split}_{i:04d}.bin"
        tmp = path.with_suffix(".tmp")
        stream[start : start + shard_tokens].tofile(tmp)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def unigram_entropy(stream: np.ndarray, vocab_size: int) -> float:
    """Entropy in nats/token of the token frequencies in `stream`: the loss of the best model that ignores context."""
    counts = np.bincount(np.asarray(stream, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def build_shards(
    docs: Sequence,
    tokenizer,
    folder: str | os.PathLike,
    val_fraction: float = 0.05,
    seed: int = 0,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    extra_meta: dict | None = None,
    mix_train: Callable | None = None,
) -> dict:
    """Split `docs` by document (train/val), tokenize, pack with BOS/EOS, and write the shards and ``meta.json``.

    docs:      `minillama.data.Document`s (anything with ``.text``).
    tokenizer: has ``encode(text, bos, eos)``, ``bos_id``, ``eos_id``, ``n_words`` (the course's `BPETokenizer`).
    mix_train: ``mix_train(train_docs) -> (mixed, StepReport)``, e.g. `mix.mix_by_ratio` with its shares bound:
               applied to the training half only, after the split, so a repeated document never reaches the
               held-out half; its report's ``groups`` go to ``meta["mix"]``.
    Returns the meta dict (also written to ``folder/meta.json``).
    """
    if not docs:
        raise ValueError("no documents to pack; check the corpus path or filters")
    train_docs, val_docs = train_val_split(docs, val_fraction=val_fraction, seed=seed)
    mix_report = None
    if mix_train is not None:
        train_docs, mix_report = mix_train(train_docs)
    meta = {
        "format": "minillama-shards-v1",
        "dtype": "uint32",
        "vocab_size": int(tokenizer.n_words),
        "bos_id": int(tokenizer.bos_id),
        "eos_id": int(tokenizer.eos_id),
        "seed": seed,
        "val_fraction": val_fraction,
        "splits": {},
    }
    for split, split_docs in (("train", train_docs), ("val", val_docs)):
        tokens = tokenize_documents(split_docs, tokenizer, progress_desc=f"tokenize {split}")
        stream = pack_documents(tokens, tokenizer.bos_id, tokenizer.eos_id)
        files = write_shards(stream, folder, split, shard_tokens)
        n_bytes = sum(len(getattr(d, "text", d).encode("utf-8")) for d in split_docs)
        meta["splits"][split] = {
            "files": [p.name for p in files],
            "tokens": int(len(stream)),
            "documents": len(split_docs),
            "bytes": n_bytes,
            "doc_ids": [getattr(d, "id", str(i)) for i, d in enumerate(split_docs)],
        }
        if split == "train":
            meta["unigram_entropy"] = unigram_entropy(stream, meta["vocab_size"])
    if mix_report is not None:
        meta["mix"] = mix_report.details["groups"]
    meta.update(extra_meta or {})
    path = Path(folder) / META
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    return meta


# ---------------------------------------------------------------------- reading
def read_meta(folder: str | os.PathLike) -> dict:
    """The ``meta.json`` of a shard folder, with a clear error when the folder is not one."""
    path = Path(folder) / META
    if not path.is_file():
        raise ValueError(
            f"{str(folder)!r} is not a shard folder (no {META}); build one with "
            f"`minillama.data.shards.build_shards` or pass a text folder / 'stdlib' to --data"
        )
    return json.loads(path.read_text())


def open_split(folder: str | os.PathLike, split: str) -> list[np.ndarray]:
    """Read-only memmaps of a split's shard files."""
    meta = read_meta(folder)
    if split not in meta["splits"]:
        raise ValueError(f"split {split!r} not in {folder}; it has {sorted(meta['splits'])}")
    out = []
    for name in meta["splits"][split]["files"]:
        path = Path(folder) / name
        if path.stat().st_size == 0:
            out.append(np.zeros(0, dtype=SHARD_DTYPE))
        else:
            out.append(np.memmap(path, dtype=SHARD_DTYPE, mode="r"))
    return out


class ShardLoader:
    """``(inputs, targets)`` batches of windows cut from token shards, in a seeded order, resumable.

    shards:  a shard folder plus `split`, or token arrays (one flat array per shard) already in memory.
    seq_len: tokens per row; each window holds ``seq_len + 1`` tokens and windows are laid end to end (stride
             ``seq_len``) so every token is a target exactly once per epoch.
    shuffle: visit windows in a fresh seeded permutation each epoch (training); otherwise in order (validation).

    ``next_batch(rows)`` -> (inputs, targets), both int64 ``(rows, seq_len)``. The position in the data is
    ``state_dict() == {"epoch": e, "index": i}``: window i of epoch e's permutation is next.
    """

    def __init__(
        self,
        shards: str | os.PathLike | Sequence[np.ndarray],
        seq_len: int,
        split: str = "train",
        seed: int = 0,
        shuffle: bool = True,
    ):
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        self.arrays = (
            open_split(shards, split) if isinstance(shards, (str, os.PathLike)) else [np.asarray(a) for a in shards]
        )
        self.seq_len, self.seed, self.shuffle = seq_len, seed, shuffle
        # (shard, start) of every full window; windows never straddle two files.
        counts = [max(0, (len(a) - 1) // seq_len) for a in self.arrays]
        if sum(counts) == 0:
            sizes = [len(a) for a in self.arrays]
            raise ValueError(
                f"shards of {sizes} tokens hold no window of seq_len + 1 = {seq_len + 1} tokens; "
                f"use a shorter --seq-len or more data"
            )
        self._shard_of = np.repeat(np.arange(len(counts)), counts)
        self._start_of = np.concatenate([np.arange(c) * seq_len for c in counts])
        self.n_windows = int(sum(counts))
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n_windows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)

    def window(self, w: int) -> np.ndarray:
        """The ``seq_len + 1`` tokens of window `w`."""
        s = self._start_of[w]
        return self.arrays[self._shard_of[w]][s : s + self.seq_len + 1]

    def next_batch(self, rows: int) -> tuple[Tensor, Tensor]:
        """The next `rows` windows as int64 tensors ``inputs (rows, seq_len)``, ``targets (rows, seq_len)``."""
        batch = np.empty((rows, self.seq_len + 1), dtype=np.int64)
        for r in range(rows):
            if self.index == self.n_windows:
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            batch[r] = self.window(self._order[self.index])
            self.index += 1
        t = torch.from_numpy(batch)
        return t[:, :-1], t[:, 1:]

    def batches(self, rows: int, max_batches: int | None = None):
        """Iterate over whole batches from the current position (validation: ``shuffle=False``, one pass)."""
        n = self.n_windows // rows if max_batches is None else min(max_batches, self.n_windows // rows)
        for _ in range(max(n, 0)):
            yield self.next_batch(rows)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        epoch, index = int(state["epoch"]), int(state["index"])
        if not 0 <= index <= self.n_windows:
            raise ValueError(
                f"loader state index {index} is outside 0..{self.n_windows}; was the checkpoint made "
                f"with other data or another seq_len?"
            )
        self.epoch, self.index = epoch, index
        self._order = self._permutation(epoch)


class MixedLoader:
    """Rows drawn from several loaders by ratio (a data mix, paper §3.1.2), deterministic and resumable.

    ``MixedLoader({"code": code_loader, "prose": prose_loader}, {"code": 0.8, "prose": 0.2}, seed=0)``: each row of
    a batch comes from source k with probability ``weights[k]``, drawn from a seeded generator whose position is
    part of the state, so resuming replays the same choices.
    """

    def __init__(self, loaders: dict[str, ShardLoader], weights: dict[str, float], seed: int = 0):
        if set(loaders) != set(weights):
            raise ValueError(f"loaders {sorted(loaders)} and weights {sorted(weights)} must name the same sources")
        total = float(sum(weights.values()))
        if total <= 0 or any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")
        self.loaders, self.names = loaders, sorted(loaders)
        self.probs = np.array([weights[n] / total for n in self.names])
        seq = {ld.seq_len for ld in loaders.values()}
        if len(seq) != 1:
            raise ValueError(f"all loaders of a mix need the same seq_len, got {sorted(seq)}")
        self.seq_len, self.seed, self.rows_drawn = seq.pop(), seed, 0

    def next_batch(self, rows: int) -> tuple[Tensor, Tensor]:
        rng = np.random.default_rng([self.seed, self.rows_drawn])  # a fresh stream per batch: resumable
        picks = rng.choice(len(self.names), size=rows, p=self.probs)
        self.rows_drawn += rows
        xs, ys = [], []
        for k in picks:
            x, y = self.loaders[self.names[k]].next_batch(1)
            xs.append(x)
            ys.append(y)
        return torch.cat(xs), torch.cat(ys)

    def state_dict(self) -> dict:
        return {"rows_drawn": self.rows_drawn, **{n: self.loaders[n].state_dict() for n in self.names}}

    def load_state_dict(self, state: dict) -> None:
        self.rows_drawn = int(state["rows_drawn"])
        for n in self.names:
            self.loaders[n].load_state_dict(state[n])


def bytes_per_token(meta: dict, split: str = "val") -> float:
    """UTF-8 bytes per token of a split: converts nats/token into bits/byte (``loss / ln 2 / bytes_per_token``)."""
    s = meta["splits"][split]
    n_docs = s["documents"]
    return s["bytes"] / max(s["tokens"] - 2 * n_docs, 1) if s["tokens"] else math.nan
