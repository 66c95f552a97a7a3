"""Chapter 01 tools: the `minillama tokenizer` CLI, the benchmark's smoke run, the offline corpora and the
compression helpers (bytes per token, rank tables cut to their first N ranks)."""

import pytest

from minillama.cli.tokenizer import main as cli_main
from minillama.tokenizer import BPETokenizer, Llama3Tokenizer, train_bpe
from minillama.tokenizer.analysis import bytes_per_token, compression_table, fast_encoding, plot_bytes_per_token
from minillama.tokenizer.corpus import SAMPLE_TEXTS, stdlib_files, stdlib_text, translation_texts


def test_cli_trains_and_saves(tmp_path, capsys):
    """`minillama tokenizer train FILES --vocab-size N --out F` writes a Meta-format file that loads with n_words N."""
    src = tmp_path / "corpus.txt"
    src.write_text("hello world, hello tokens\n" * 50 + "def f(x):\n    return x\n" * 50, encoding="utf-8")
    out = tmp_path / "tok.model"
    assert cli_main(["train", str(src), "--vocab-size", "532", "--out", str(out)]) == 0
    tok = BPETokenizer.load(out)
    assert tok.n_words == 532 and len(tok.ranks) == 276
    assert cli_main(["encode", "--model", str(out), "hello<|eot_id|>", "--allow-special"]) == 0
    printed = capsys.readouterr().out
    assert f"{tok.eot_id}]" in printed


def test_cli_stdlib_and_bad_input(tmp_path, capsys):
    """'stdlib' is a valid corpus; a missing input or an --out folder gives exit code 2 and says why."""
    out = tmp_path / "std.model"
    assert cli_main(["train", "stdlib", "--max-bytes", "50000", "--vocab-size", "600", "--out", str(out)]) == 0
    assert BPETokenizer.load(out).n_words == 600
    assert cli_main(["train", str(tmp_path / "nope.txt"), "--out", str(out)]) == 2
    assert cli_main(["train", "stdlib", "--max-bytes", "1000", "--out", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err


def test_bench_smoke(capsys):
    """The benchmark runs end to end on a tiny corpus (timings are not checked here)."""
    from minillama.bench.tokenizer import main

    assert main(["--train-mb", "0.05", "--encode-mb", "0.05", "--vocab-size", "1024", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "HF tokenizers" in out and "tiktoken (raw)" in out


def test_corpora_are_offline_and_deterministic():
    """The stdlib corpus is cut on the byte budget and identical on every call; translations are parallel text."""
    files = stdlib_files()
    assert len(files) > 100 and all(p.suffix == ".py" and "test" not in p.parts for p in files)
    a, b = stdlib_text(100_000), stdlib_text(100_000)
    assert a == b and 90_000 < len(a.encode()) <= 100_000
    for lang in ("German", "Portuguese"):
        en, tr = translation_texts(lang, max_bytes=20_000)
        assert en and tr and len(tr.encode()) <= 20_000
    assert set(SAMPLE_TEXTS) == {"English", "German", "Portuguese"}


def test_cut_rank_table_is_the_smaller_tokenizer():
    """Training N merges equals cutting a longer run's table to its first N ranks (BPE is greedy), and the cut
    tiktoken encoding gives our encoder's ids."""
    text = stdlib_text(60_000)
    big = train_bpe(text, 256 + 300, special_tokens=())
    small = train_bpe(text, 256 + 120, special_tokens=())
    assert small.ranks == {t: r for t, r in big.ranks.items() if r < 256 + 120}
    enc = fast_encoding(big.ranks, 256 + 120)
    assert enc.encode_ordinary(text[:5000]) == small.encode(text[:5000])
    assert bytes_per_token(enc, text) == pytest.approx(bytes_per_token(small, text))


def test_compression_table_and_plot():
    """Bytes per token grows with the vocabulary for Llama 3's ranks; the plot helper returns a figure."""
    import matplotlib

    matplotlib.use("Agg")
    llama = Llama3Tokenizer()
    table = compression_table(llama.ranks, {"en": SAMPLE_TEXTS["English"] * 3}, [1024, 8192, 128_000])
    curve = table["en"]
    assert curve[1024] < curve[8192] < curve[128_000]
    fig = plot_bytes_per_token({"llama": table})
    assert fig.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError):
        fast_encoding(llama.ranks, 100)
