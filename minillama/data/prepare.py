"""Data for a pre-training run: a corpus (the standard library, a documents.jsonl from `minillama data build`, or
text files) tokenised into a shard folder, with the tokenizer that made it; reused when already built."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from minillama.assets import shipped_tokenizer_path
from minillama.data.corpus import load_documents, load_text_files, stdlib_corpus
from minillama.data.shards import build_shards, read_meta
from minillama.tokenizer import BPETokenizer, train_bpe

__all__ = ["prepare_data", "load_tokenizer"]


def prepare_data(data: str, out: Path, tokenizer_path: str | None, vocab_size: int, limit_mb: float | None, seed: int):
    """A shard folder and tokenizer for `--data`: reused from ``out/data`` when already built."""
    if (Path(data) / "meta.json").is_file():  # already a shard folder
        folder = Path(data)
        tok_file = tokenizer_path or (folder / "tokenizer.model" if (folder / "tokenizer.model").exists() else None)
        return folder, read_meta(folder), load_tokenizer(tok_file) if tok_file else None
    folder = out / "data"
    source = data if not limit_mb else f"{data} (first {limit_mb:g} MB)"
    if (folder / "meta.json").is_file() and read_meta(folder).get("source") == source:
        return folder, read_meta(folder), load_tokenizer(folder / "tokenizer.model")
    limit = int(limit_mb * 1e6) if limit_mb else None
    if data == "stdlib":
        docs = stdlib_corpus("all", limit_bytes=limit, seed=seed)
    elif str(data).endswith(".jsonl") and Path(data).is_file():  # documents.jsonl from `minillama data build`
        docs = load_documents(data)
    else:
        docs = load_text_files(data)
        if limit:
            docs = [d for d, keep in zip(docs, np.cumsum([d.bytes for d in docs]) <= limit) if keep]
    if tokenizer_path:
        tok = load_tokenizer(tokenizer_path)
    elif data == "stdlib":
        tok = load_tokenizer(shipped_tokenizer_path())
    else:
        print(f"training a {vocab_size}-id BPE tokenizer on {len(docs)} documents ...", file=sys.stderr)
        tok = train_bpe([d.text for d in docs], vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.model"))
    meta = build_shards(docs, tok, folder, val_fraction=0.05, seed=seed, extra_meta={"source": source})
    return folder, meta, tok


def load_tokenizer(path) -> BPETokenizer:
    return BPETokenizer.load(str(path))
