"""A real corpus from what every Python install already has, with provenance (paper §3.1).

Llama 3's pre-training data starts as web documents with a source, a licence and a size; every later step of §3.1
(cleaning, de-duplication, heuristic and model-based filters, the mix) works on such documents. No dataset may be
downloaded here, so the course's corpus is built from the installed standard library:

* **code**: the `.py` source files under the standard library folder (``Lib/``), one document per file, source
  ``"python-stdlib"``. ``site-packages``/``dist-packages`` (third-party code, other licences) are never read.
  Test folders (``test/``, ``tests/``, ``idle_test/``) are *excluded by default*: they are 60% of the bytes, full
  of deliberately odd code (bad encodings, syntax errors, huge generated literals) and would swamp the model's idea
  of ordinary Python. Pass ``include_tests=True`` to read them, e.g. to give the dedup steps more to find.
  ``pydoc_data/topics.py`` is skipped as code because it is the prose below stored in a Python dict.
* **prose**: the interpreter's own reference documentation in ``pydoc_data.topics`` (what ``help("assert")``
  prints), one document per topic, source ``"pydoc_data"``; then the documentation files inside the library
  folder (IDLE's manual and notes, the email package's design note, the licence: `stdlib_docs`), one document per
  file, source ``"python-docs"``.

Both are covered by the PSF License 2.0. Order is deterministic (code by relative path, then prose by topic), so
every later step that is "deterministic for a seed" starts from the same list. A user's own files come in through
`load_text_files`. Reading is cached: the ~12 MB (~31 MB with tests) of source is read from disk once per process.

>>> docs = stdlib_corpus("prose")
>>> docs[0].source, docs[0].licence
('pydoc_data', 'PSF License 2.0')
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from minillama.tokenizer.corpus import SKIP_DIRS, pydoc_topics, stdlib_dir, stdlib_docs, stdlib_sources

__all__ = [
    "Document",
    "PSF_LICENCE",
    "TEXT_SUFFIXES",
    "stdlib_dir",
    "stdlib_corpus",
    "load_text_files",
    "corpus_summary",
    "train_val_split",
    "save_documents",
    "load_documents",
    "load_corpus",
    "synthetic_contaminants",
]

PSF_LICENCE = "PSF License 2.0"
#: File types `load_text_files` reads from a folder.
TEXT_SUFFIXES = (".txt", ".md", ".py")
KINDS = ("all", "code", "prose")


@dataclass(frozen=True)
class Document:
    """One document with its provenance.

    text:    the document's text (str).
    source:  where it came from: ``"python-stdlib"``, ``"pydoc_data"``, ``"user"``, or a name you choose.
    id:      a stable identifier: the path relative to its root, or ``"topic:<name>"`` for pydoc topics.
    licence: a licence note (``"PSF License 2.0"`` for the stdlib).
    kind:    ``"code"`` or ``"prose"`` (used by the data mix).
    meta:    free-form extra facts (e.g. a quality score added by a later step).
    """

    text: str
    source: str
    id: str
    licence: str = "unknown"
    kind: str = "prose"
    meta: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def bytes(self) -> int:
        """Size of the text in UTF-8 bytes."""
        return len(self.text.encode("utf-8"))

    @property
    def path(self) -> str:
        """Alias of `id` (the relative path for files)."""
        return self.id

    def with_text(self, text: str) -> Document:
        """A copy with new text and the same provenance (what a cleaning step returns)."""
        return Document(text, self.source, self.id, self.licence, self.kind, dict(self.meta))


def stdlib_corpus(
    kind: str = "all",
    limit_bytes: int | None = None,
    seed: int = 0,
    include_tests: bool = False,
) -> list[Document]:
    """The installed Python standard library as a list of Documents.

    kind:          ``"code"`` (stdlib `.py` files), ``"prose"`` (pydoc topics, then the doc files) or ``"all"``
                   (code then prose).
    limit_bytes:   if given, a random subset (drawn with `seed`) whose total UTF-8 size is at most this; documents
                   are taken in a seeded shuffled order and skipped when they would overflow the budget. The result
                   keeps the corpus order. Without a limit, `seed` is unused.
    include_tests: also read the stdlib's test folders (see the module docstring).

    Returns a new list each call (the file reads are cached); order: code by path, then pydoc topics by topic, then
    doc files by path.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if limit_bytes is not None and limit_bytes < 0:
        raise ValueError(f"limit_bytes must be >= 0 or None, got {limit_bytes}")
    docs: list[Document] = []
    if kind in ("all", "code"):
        for rel, text in stdlib_sources(include_tests):
            docs.append(Document(text, "python-stdlib", rel, PSF_LICENCE, "code"))
    if kind in ("all", "prose"):
        for topic, text in pydoc_topics():
            docs.append(Document(text, "pydoc_data", f"topic:{topic}", PSF_LICENCE, "prose"))
        for rel, text in stdlib_docs():
            docs.append(Document(text, "python-docs", rel, PSF_LICENCE, "prose"))
    if limit_bytes is not None:
        docs = _subset_by_bytes(docs, limit_bytes, seed)
    return docs


def _subset_by_bytes(docs: Sequence[Document], limit_bytes: int, seed: int) -> list[Document]:
    """A seeded random subset of `docs` with total bytes <= `limit_bytes`, in the original order."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    chosen, total = [], 0
    for i in order:
        size = docs[i].bytes
        if total + size <= limit_bytes:
            chosen.append(i)
            total += size
    return [docs[i] for i in sorted(chosen)]


def load_text_files(path: str | os.PathLike, source: str = "user", licence: str = "user-supplied") -> list[Document]:
    """Documents from a user's own file, or every .txt/.md/.py file under a folder (recursively, sorted by path).

    One document per file; ``id`` is the path relative to the folder (the file name for a single file); ``kind`` is
    ``"code"`` for `.py`, else ``"prose"``. Bytes that are not UTF-8 are replaced by U+FFFD rather than dropped.
    Raises ValueError when the path does not exist or a folder holds no such files.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise ValueError(
            f"{str(root)!r} does not exist; pass a text file or a folder of {'/'.join(TEXT_SUFFIXES)} files"
        )
    if root.is_file():
        files, base = [root], root.parent
    else:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and not (set(p.relative_to(root).parts) & SKIP_DIRS)
        )
        base = root
        if not files:
            raise ValueError(
                f"no {'/'.join(TEXT_SUFFIXES)} files under {str(root)!r}; point --data at a folder of text files"
            )
    docs = []
    for p in files:
        text = p.read_bytes().decode("utf-8", errors="replace")
        kind = "code" if p.suffix.lower() == ".py" else "prose"
        docs.append(Document(text, source, p.relative_to(base).as_posix(), licence, kind))
    return docs


def corpus_summary(docs: Iterable[Document]) -> dict:
    """Counts and sizes: ``{"documents": n, "bytes": b, "by_source": {source: {"documents", "bytes"}},
    "by_kind": {kind: {"documents", "bytes"}}}`` (dicts in first-seen order)."""
    summary = {"documents": 0, "bytes": 0, "by_source": {}, "by_kind": {}}
    for doc in docs:
        size = doc.bytes
        summary["documents"] += 1
        summary["bytes"] += size
        for key, value in (("by_source", doc.source), ("by_kind", doc.kind)):
            entry = summary[key].setdefault(value, {"documents": 0, "bytes": 0})
            entry["documents"] += 1
            entry["bytes"] += size
    return summary


def train_val_split(
    docs: Sequence[Document], val_fraction: float = 0.05, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Split by document: no document is in both halves.

    The split is over distinct ``id`` values, so repeated copies of one document (e.g. after up-sampling in a data
    mix) stay on one side. Exactly ``round(n_ids * val_fraction)`` ids (at least one when ``val_fraction > 0`` and
    there are at least two ids) are drawn for validation with a seeded shuffle of the ids in first-seen order; both
    halves keep the input order. Same (docs, val_fraction, seed) -> same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = list(dict.fromkeys(d.id for d in docs))
    n_val = round(len(ids) * val_fraction)
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    random.Random(seed).shuffle(ids)
    val_ids = set(ids[:n_val])
    train = [d for d in docs if d.id not in val_ids]
    val = [d for d in docs if d.id in val_ids]
    return train, val


def save_documents(docs: Iterable[Document], path: str | os.PathLike) -> Path:
    """Write documents as JSON lines (text, source, id, licence, kind, meta), atomically. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            row = {"text": d.text, "source": d.source, "id": d.id, "licence": d.licence, "kind": d.kind, "meta": d.meta}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def load_documents(path: str | os.PathLike) -> list[Document]:
    """Read documents written by `save_documents` (a ``.jsonl`` file)."""
    docs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                docs.append(
                    Document(
                        row["text"],
                        row["source"],
                        row["id"],
                        row.get("licence", "unknown"),
                        row.get("kind", "prose"),
                        row.get("meta") or {},
                    )
                )
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{path}:{line_no}: not a document row ({e}); expected JSON with text/source/id"
                ) from e
    return docs


def load_corpus(spec: str | os.PathLike = "stdlib", limit_bytes: int | None = None, seed: int = 0) -> list[Document]:
    """Resolve a ``--data`` argument: ``"stdlib"``, ``"stdlib:code"``, ``"stdlib:prose"``, a ``.jsonl`` written by
    `save_documents` (e.g. by ``minillama data build``), or a text file / folder (`load_text_files`)."""
    spec_str = str(spec)
    if spec_str == "stdlib" or spec_str.startswith("stdlib:"):
        kind = spec_str.partition(":")[2] or "all"
        return stdlib_corpus(kind, limit_bytes=limit_bytes, seed=seed)
    if spec_str.endswith(".jsonl") and Path(spec_str).is_file():
        docs = load_documents(spec_str)
    else:
        docs = load_text_files(spec_str)
    return _subset_by_bytes(docs, limit_bytes, seed) if limit_bytes is not None else docs


def synthetic_contaminants(docs: Sequence[Document], seed: int = 0) -> list[Document]:
    """Six generated bad documents, one aimed at each cleaning step, to show every step catching something
    (the stdlib itself is too clean for some of them). Built from `docs` with `seed`; source ``"synthetic"``:

    ``exact-copy``   a document re-spaced and upper-cased (exact dedup normalizes both away);
    ``near-copy``    a document with 1% of its words replaced (MinHash near-dup);
    ``log-dump``     one error message logged over and over for different users (duplicated n-gram coverage);
    ``spam-page``    an adult spam page (dirty-word ratio);
    ``base64-blob``  random bytes, base64-encoded (token-distribution KL);
    ``word-salad``   a prose document with its words shuffled (the quality classifier).
    """
    rng = random.Random(seed)
    code = [d for d in docs if d.kind == "code" and d.bytes > 2000] or list(docs)
    prose = [d for d in docs if d.kind == "prose" and d.bytes > 2000] or list(docs)
    if not code:
        raise ValueError("synthetic_contaminants needs at least one document to copy from")

    def make(name: str, text: str, kind: str = "prose") -> Document:
        return Document(text, "synthetic", f"synthetic:{name}", "generated by minillama", kind)

    original = rng.choice(code)
    exact = make("exact-copy", original.text.upper().replace(" ", "  "), original.kind)
    near_base = rng.choice(code)
    tokens = re.split(r"(\s+)", near_base.text)  # words at even positions, the whitespace between at odd ones
    words_at = [i for i in range(0, len(tokens), 2) if tokens[i]]
    for i in rng.sample(words_at, max(1, len(words_at) // 100)):
        tokens[i] = "changed"
    near = make("near-copy", "".join(tokens), near_base.kind)

    def user() -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))

    log = "\n".join(
        f"ERROR GET /api/users/{user()} failed: connection to the database refused, "
        f"retrying the request in a few seconds, see the service logs for the details"
        for _ in range(200)
    )
    spam_words = "hot xxx nude pics click here free porn sexy cams nsfw live escort".split()
    spam = "\n".join(
        " ".join(rng.choice(spam_words + ["best", "site", "today", "the", "and", "now"]) for _ in range(12))
        for _ in range(40)
    )
    blob = base64.encodebytes(bytes(rng.getrandbits(8) for _ in range(6000))).decode("ascii")
    salad_words = rng.choice(prose).text.split()
    rng.shuffle(salad_words)
    salad = " ".join(salad_words)
    return [
        exact,
        near,
        make("log-dump", log),
        make("spam-page", spam),
        make("base64-blob", blob),
        make("word-salad", salad),
    ]
