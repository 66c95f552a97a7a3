"""Data for a pre-training run: a corpus (the standard library, a documents.jsonl from `minillama data build`, or
text files) tokenised into a shard folder, with the tokenizer that made it; reused when already built.

The default diet (``--data stdlib``, paper §3.1) is chapter 05's pipeline run for real: cleaning, de-duplication and
the heuristic and quality filters (`data.pipeline.default_pipeline`; its table filter removes the ~1.3 MB of
generated codec maps, 12% of the library's bytes), then the split, then a mix of the training half that raises
the prose share from 4% to `STDLIB_MIX`'s 10% by repeating the documentation (each prose document ~2-3 times per
pass over the code). Held-out documents are never repeated or mixed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from minillama.assets import shipped_tokenizer_path
from minillama.data.corpus import load_documents, load_text_files, stdlib_corpus, train_val_split
from minillama.data.mix import mix_by_ratio
from minillama.data.pipeline import default_pipeline
from minillama.data.shards import build_shards, open_split, pack_documents, read_meta, tokenize_documents
from minillama.tokenizer import BPETokenizer, train_bpe

__all__ = ["prepare_data", "load_tokenizer", "heldout_split", "stdlib_diet", "mix_stdlib", "VAL_FRACTION", "STDLIB_MIX"]

VAL_FRACTION = 0.05  # the share of documents `prepare_data` holds out
#: Byte shares of the training half for ``--data stdlib``: all the code once, the documentation repeated to 10%.
STDLIB_MIX = {"code": 0.9, "prose": 0.1}
#: Bump when the stdlib diet changes, so a run folder built with the old one is rebuilt, not reused.
STDLIB_DIET = "pipeline+mix-v1"


def prepare_data(data: str, out: Path, tokenizer_path: str | None, vocab_size: int, limit_mb: float | None, seed: int):
    """A shard folder and tokenizer for `--data`: reused from ``out/data`` when already built."""
    if (Path(data) / "meta.json").is_file():  # already a shard folder
        folder = Path(data)
        tok_file = tokenizer_path or (folder / "tokenizer.model" if (folder / "tokenizer.model").exists() else None)
        return folder, read_meta(folder), load_tokenizer(tok_file) if tok_file else None
    folder = out / "data"
    source = data if not limit_mb else f"{data} (first {limit_mb:g} MB)"
    if data == "stdlib":
        source += f" [{STDLIB_DIET}]"
    if (folder / "meta.json").is_file() and read_meta(folder).get("source") == source:
        return folder, read_meta(folder), load_tokenizer(folder / "tokenizer.model")
    docs = _documents(data, limit_mb, seed)
    if tokenizer_path:
        tok = load_tokenizer(tokenizer_path)
    elif data == "stdlib":
        tok = load_tokenizer(shipped_tokenizer_path())
    else:
        print(f"training a {vocab_size}-id BPE tokenizer on {len(docs)} documents ...", file=sys.stderr)
        tok = train_bpe([d.text for d in docs], vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.model"))
    mix = (lambda train: mix_stdlib(train, seed)) if data == "stdlib" else None
    meta = build_shards(
        docs, tok, folder, val_fraction=VAL_FRACTION, seed=seed, extra_meta={"source": source}, mix_train=mix
    )
    return folder, meta, tok


def stdlib_diet(limit_bytes: int | None = None, seed: int = 0) -> list:
    """The standard library corpus (code and documentation) after chapter 05's pipeline, seeded."""
    kept, _ = default_pipeline(seed=seed).run(stdlib_corpus("all", limit_bytes=limit_bytes, seed=seed))
    return kept


def mix_stdlib(train_docs: list, seed: int = 0):
    """`STDLIB_MIX` of the training documents: every code document once, prose repeated up to its share
    (`mix.mix_by_ratio`). Returns (documents, report)."""
    code_bytes = sum(d.bytes for d in train_docs if d.kind == "code")
    shares = {k: v for k, v in STDLIB_MIX.items() if any(d.kind == k for d in train_docs)}
    total = int(code_bytes / shares["code"]) if "code" in shares else None
    return mix_by_ratio(train_docs, shares, total_bytes=total, seed=seed)


def _documents(data: str, limit_mb: float | None, seed: int) -> list:
    limit = int(limit_mb * 1e6) if limit_mb else None
    if data == "stdlib":
        return stdlib_diet(limit, seed)
    if str(data).endswith(".jsonl") and Path(data).is_file():  # documents.jsonl from `minillama data build`
        return load_documents(data)
    docs = load_text_files(data)
    if limit:
        docs = [d for d, keep in zip(docs, np.cumsum([d.bytes for d in docs]) <= limit) if keep]
    return docs


def heldout_split(data: str, tokenizer, seed: int = 0, limit_mb: float | None = None) -> tuple[list[np.ndarray], str]:
    """The held-out split of `--data` as packed token arrays (one per shard file), and a line saying what it is.

    A shard folder (has meta.json): its ``val`` files. Otherwise the documents `prepare_data` would read for the same
    `data`, `seed` and `limit_mb`, split the same way (`VAL_FRACTION` of the documents, by id, seeded), and only
    the held-out ones tokenized with `tokenizer` and packed with BOS/EOS, so nothing is written to disk."""
    if (Path(data) / "meta.json").is_file():
        meta = read_meta(data)
        if meta["vocab_size"] > tokenizer.n_words:
            raise ValueError(
                f"{data} was tokenized with {meta['vocab_size']} ids but the checkpoint's tokenizer has "
                f"{tokenizer.n_words}; score a checkpoint on the data of its own tokenizer"
            )
        return open_split(data, "val"), f"the val split of the shard folder {data}"
    docs = _documents(data, limit_mb, seed)
    if not docs:
        raise ValueError(f"no documents in {data!r}; pass 'stdlib', a documents.jsonl, a text file or folder")
    _, val = train_val_split(docs, val_fraction=VAL_FRACTION, seed=seed)
    if not val:
        raise ValueError(f"{data!r} has too few documents to hold any out (it needs at least two)")
    stream = pack_documents(tokenize_documents(val, tokenizer), tokenizer.bos_id, tokenizer.eos_id)
    return [stream], (
        f"the {len(val)} held-out documents of {data!r} (those `minillama pretrain --data {data} --seed {seed}` "
        "never trains on)"
    )


def load_tokenizer(path) -> BPETokenizer:
    return BPETokenizer.load(str(path))
