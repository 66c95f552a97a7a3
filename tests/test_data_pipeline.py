"""The §3.1 pipeline end to end: each step catches its synthetic contaminant, reports add up, runs are
deterministic for a seed; the data mix; the `minillama data` CLI."""

import json

import pytest

from minillama.cli.data import main as data_main
from minillama.data.corpus import Document, load_documents, stdlib_corpus, synthetic_contaminants
from minillama.data.mix import mix_by_ratio
from minillama.data.pipeline import Pipeline, default_pipeline
from minillama.data.report import format_reports


@pytest.fixture(scope="module")
def small_corpus():
    docs = stdlib_corpus("code", limit_bytes=400_000, seed=0) + stdlib_corpus("prose", limit_bytes=150_000, seed=0)
    return docs + synthetic_contaminants(docs, seed=0)


@pytest.fixture(scope="module")
def pipeline_run(small_corpus):
    return default_pipeline(seed=0, quality_threshold=None).run(small_corpus)


def test_each_step_removes_its_contaminant(pipeline_run):
    """exact-copy -> exact dedup, near-copy -> MinHash, log-dump -> n-gram coverage, spam -> dirty words,
    base64 blob -> token KL: each synthetic document is removed by the step aimed at it."""
    kept, reports = pipeline_run
    removed_by = {doc_id: r.name for r in reports for doc_id, _ in r.removed}
    assert removed_by["synthetic:exact-copy"] == "exact_dedup"
    assert removed_by["synthetic:near-copy"] == "near_dedup"
    assert removed_by["synthetic:log-dump"] == "ngram_coverage"
    assert removed_by["synthetic:spam-page"] == "dirty_words"
    assert removed_by["synthetic:base64-blob"] == "token_kl"
    assert not any(d.id.startswith("synthetic:") and d.id != "synthetic:word-salad" for d in kept)


def test_reports_add_up(small_corpus, pipeline_run):
    """Each report's documents out = documents in - removed; steps chain; bytes never grow; examples name why."""
    kept, reports = pipeline_run
    assert reports[0].docs_in == len(small_corpus) and reports[-1].docs_out == len(kept)
    for prev, r in zip(reports, reports[1:]):
        assert r.docs_in == prev.docs_out and r.bytes_in == prev.bytes_out
    for r in reports:
        assert r.docs_out == r.docs_in - len(r.removed)
        assert r.bytes_removed >= 0
        assert all(e["why"] for e in r.examples)
    table = format_reports(reports)
    assert all(r.name in table for r in reports)


def test_pipeline_is_deterministic(small_corpus, pipeline_run):
    """Same documents and seed -> the same output, document for document."""
    again, _ = default_pipeline(seed=0, quality_threshold=None).run(small_corpus)
    assert again == pipeline_run[0]


def test_quality_step_runs_and_keeps_most_documents():
    """The quality classifier step trains on the corpus and removes few real documents, reproducibly."""
    from minillama.data.quality import quality_filter

    docs = stdlib_corpus(limit_bytes=500_000, seed=1)
    kept, report = quality_filter(docs, threshold=0.25, seed=0, n_per_class=100)
    assert len(kept) >= 0.8 * len(docs) and report.details["train_accuracy"] > 0.8
    assert quality_filter(docs, threshold=0.25, seed=0, n_per_class=100)[0] == kept


def test_pipeline_rejects_duplicate_step_names():
    with pytest.raises(ValueError, match="unique"):
        Pipeline([("a", lambda d: d), ("a", lambda d: d)])


def test_mix_hits_ratios_and_is_seeded():
    """A 50/50 byte mix of a large and a small group lands near 50/50, repeats the small group, and is seeded."""
    docs = [Document("c" * 1000, "s", f"c{i}", kind="code") for i in range(100)]
    docs += [Document("p" * 500, "s", f"p{i}", kind="prose") for i in range(10)]
    mixed, report = mix_by_ratio(docs, {"code": 1, "prose": 1}, total_bytes=40_000, seed=3)
    g = report.details["groups"]
    assert g["code"]["bytes"] == 20_000 and g["prose"]["bytes"] == 20_000
    assert g["prose"]["max_repeats"] == 4 and g["code"]["max_repeats"] == 1
    assert mix_by_ratio(docs, {"code": 1, "prose": 1}, total_bytes=40_000, seed=3)[0] == mixed
    assert mix_by_ratio(docs, {"code": 1, "prose": 1}, total_bytes=40_000, seed=4)[0] != mixed
    with pytest.raises(ValueError, match="allow_repeat"):
        mix_by_ratio(docs, {"code": 1, "prose": 1}, total_bytes=40_000, allow_repeat=False)
    with pytest.raises(ValueError, match="no documents"):
        mix_by_ratio(docs, {"math": 1})


def test_cli_build_and_stats(tmp_path, capsys):
    """`minillama data build` on a folder writes documents.jsonl and report.json; `stats` reads them back."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"note{i}.md").write_text(f"# Note {i}\n\nThis is note number {'abcd'[i]} about **Python** lists.\n")
    (src / "copy.md").write_text((src / "note0.md").read_text())
    out = tmp_path / "out"
    assert data_main(["build", "--data", str(src), "--out", str(out), "--no-quality"]) == 0
    docs = load_documents(out / "documents.jsonl")
    assert len(docs) == 4 and all("**" not in d.text for d in docs)
    report = json.loads((out / "report.json").read_text())
    exact = report["steps"][1]
    assert exact["name"] == "exact_dedup" and exact["docs_in"] - exact["docs_out"] == 1
    assert data_main(["stats", "--data", str(out / "documents.jsonl")]) == 0
    assert "4 documents" in capsys.readouterr().out
    assert data_main(["build", "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert data_main(["build", "--data", str(src), "--out", str(out), "--mix", "code:1"]) == 2
