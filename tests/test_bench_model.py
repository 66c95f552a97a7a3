"""The model benchmarks run end to end at tiny sizes (speed itself is measured by running them, not by tests)."""

from minillama.bench.__main__ import available
from minillama.bench.generate import main as bench_generate
from minillama.bench.train import main as bench_train


def test_benchmarks_are_listed():
    assert {"train", "generate"} <= set(available())


def test_bench_train_runs_and_prints_ratios(capsys):
    assert bench_train(["--threads", "1", "--rounds", "1", "--steps", "1", "--batch", "1", "--seq", "16"]) == 0
    out = capsys.readouterr().out
    assert "minillama" in out and "transformers" in out and "ratio" in out


def test_bench_generate_runs_and_agrees_with_transformers(capsys):
    assert bench_generate(["--threads", "1", "--rounds", "1", "--new-tokens", "4", "--prompt-len", "4"]) == 0
    assert "ratio" in capsys.readouterr().out
