"""The stdlib corpus, user files, the summary and the document-level train/val split (minillama.data.corpus)."""

import sysconfig
from pathlib import Path

import pytest

from minillama.data.corpus import Document, corpus_summary, load_text_files, stdlib_corpus, train_val_split


def test_stdlib_code_matches_files_on_disk():
    """Each code document is exactly the UTF-8 text of the stdlib file it names; no third-party or test code."""
    docs = stdlib_corpus("code")
    root = Path(sysconfig.get_paths()["stdlib"])
    assert len(docs) > 300
    for doc in docs[:: max(1, len(docs) // 40)]:
        assert doc.text == (root / doc.id).read_text(encoding="utf-8")
        assert doc.source == "python-stdlib" and doc.licence == "PSF License 2.0" and doc.kind == "code"
    ids = [d.id for d in docs]
    assert ids == sorted(ids)
    assert not any("site-packages" in i or "/test/" in f"/{i}" or "/tests/" in f"/{i}" for i in ids)
    assert "json/decoder.py" in ids


def test_prose_is_one_document_per_pydoc_topic_then_per_doc_file():
    """Prose documents are the `pydoc_data.topics` entries, one per topic, then the library's documentation files
    (IDLE's manual as text, not HTML), with provenance."""
    from pydoc_data.topics import topics

    docs = stdlib_corpus("prose")
    pydoc = [d for d in docs if d.source == "pydoc_data"]
    assert {d.id for d in pydoc} == {f"topic:{k}" for k in topics}
    assert all(d.text == topics[d.id.removeprefix("topic:")] for d in pydoc)
    files = docs[len(pydoc) :]
    assert all(d.source == "python-docs" for d in files) and all(d.kind == "prose" for d in docs)
    ids = [d.id for d in files]
    assert ids == sorted(ids) and "idlelib/help.html" in ids and not any("Grammar" in i for i in ids)
    manual = next(d.text for d in files if d.id == "idlelib/help.html")
    assert "<div" not in manual and "Editor windows" in manual


def test_limit_bytes_is_seeded_and_respected():
    """A byte budget gives a seeded subset under the budget, in corpus order; other seeds differ."""
    a = stdlib_corpus(limit_bytes=300_000, seed=1)
    b = stdlib_corpus(limit_bytes=300_000, seed=1)
    c = stdlib_corpus(limit_bytes=300_000, seed=2)
    assert a == b and a != c
    assert 200_000 < sum(d.bytes for d in a) <= 300_000
    full_order = {d.id: i for i, d in enumerate(stdlib_corpus())}
    assert [full_order[d.id] for d in a] == sorted(full_order[d.id] for d in a)


def test_document_bytes_and_summary():
    """`bytes` counts UTF-8 bytes; the summary adds them up by source and kind."""
    docs = [Document("héllo", "a", "1", kind="prose"), Document("x = 1\n", "b", "2", kind="code")]
    assert docs[0].bytes == 6
    s = corpus_summary(docs)
    assert s["documents"] == 2 and s["bytes"] == 12
    assert s["by_source"] == {"a": {"documents": 1, "bytes": 6}, "b": {"documents": 1, "bytes": 6}}


def test_load_text_files_folder_and_file(tmp_path):
    """A folder gives one document per .txt/.md/.py file (sorted, recursive); a file gives one; errors are clear."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.md").write_text("# title\n")
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "sub" / "c.py").write_text("x = 1\n")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    docs = load_text_files(tmp_path)
    assert [d.id for d in docs] == ["a.txt", "b.md", "sub/c.py"]
    assert [d.kind for d in docs] == ["prose", "prose", "code"]
    assert load_text_files(tmp_path / "a.txt")[0].text == "hello\n"
    with pytest.raises(ValueError, match="does not exist"):
        load_text_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .txt"):
        load_text_files(tmp_path / "empty")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5])
def test_train_val_split_by_document(fraction):
    """The split partitions the documents (none in both halves), has the requested size and is seeded."""
    docs = [Document(f"doc {i}", "s", str(i)) for i in range(50)]
    train, val = train_val_split(docs, fraction, seed=3)
    assert len(val) == round(50 * fraction)
    assert {d.id for d in train}.isdisjoint({d.id for d in val})
    assert sorted([d.id for d in train + val], key=int) == [str(i) for i in range(50)]
    assert train_val_split(docs, fraction, seed=3) == (train, val)
    if fraction:
        assert train_val_split(docs, fraction, seed=4)[1] != val
    with pytest.raises(ValueError):
        train_val_split(docs, 1.0)


def test_split_keeps_repeated_copies_on_one_side():
    """Up-sampled copies (same id) never straddle the split."""
    docs = [Document(f"doc {i % 10}", "s", str(i % 10)) for i in range(40)]
    train, val = train_val_split(docs, 0.3, seed=0)
    assert len({d.id for d in val}) == 3
    assert {d.id for d in train}.isdisjoint({d.id for d in val})


def test_save_load_documents_roundtrip(tmp_path):
    """Documents written as JSON lines read back identical; `load_corpus` resolves stdlib, jsonl and folders."""
    from minillama.data.corpus import load_corpus, load_documents, save_documents

    docs = stdlib_corpus("prose")[:5]
    path = save_documents(docs, tmp_path / "docs.jsonl")
    assert load_documents(path) == docs
    assert load_corpus(path) == docs
    assert load_corpus("stdlib:prose") == stdlib_corpus("prose")
    (tmp_path / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_documents(tmp_path / "bad.jsonl")
