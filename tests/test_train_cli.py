"""`minillama pretrain` from the outside: threads, Ctrl-C, --resume of a finished run; `minillama eval` and the
trainer's final held-out validation."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from argparse import Namespace

import pytest
import torch

from minillama.assets import DEFAULT_MODEL, shipped_tokenizer_path
from minillama.checkpoint import load_checkpoint
from minillama.cli import main as cli
from minillama.cli import pretrain as cli_pretrain
from minillama.cli.distributed import Cluster
from minillama.train.recipes import load_shipped
from minillama.train.samples import parse_rate
from minillama.utils import physical_cores, resolve_threads, set_threads


def tiny_run(shards, out, steps):
    return ["pretrain", "--preset", "tiny", "--data", str(shards), "--steps", str(steps), "--seq-len", "16"] + [
        "--batch-size", "4", "--eval-every", "3", "--ckpt-every", "3", "--out", str(out)
    ]  # fmt: skip


# ---------------------------------------------------------------------- threads
def test_threads_flag_beats_minillama_threads_beats_omp_beats_all_cores(monkeypatch):
    monkeypatch.delenv("MINILLAMA_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads() == (physical_cores(), "all physical cores")
    assert 1 <= physical_cores() <= os.cpu_count()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert resolve_threads() == (1, "OMP_NUM_THREADS")
    monkeypatch.setenv("MINILLAMA_THREADS", "3")
    assert resolve_threads() == (3, "MINILLAMA_THREADS")
    assert resolve_threads(2) == (2, "--threads")
    before = torch.get_num_threads()
    try:
        assert set_threads(2) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="at least 1"):
            resolve_threads(bad)
    monkeypatch.setenv("MINILLAMA_THREADS", "two")
    with pytest.raises(ValueError, match="MINILLAMA_THREADS"):
        resolve_threads()


@pytest.mark.parametrize("n", ["0", "-1"])
def test_pretrain_threads_below_one_is_a_one_line_error(n, tmp_path, capsys):
    assert cli(["pretrain", "--threads", n, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--threads must be at least 1" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_pretrain_prints_its_threads_and_resume_of_a_finished_run_is_one_line(shards, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(tiny_run(shards, out, 3)) == 0
    assert "torch threads: 1 (OMP_NUM_THREADS" in capsys.readouterr().out  # tests run with OMP_NUM_THREADS=1
    assert cli(["pretrain", "--out", str(out), "--resume"]) == 0
    text = capsys.readouterr().out
    assert "already finished (3/3 steps)" in text
    assert "sample" not in text and "done:" not in text and "resuming" not in text


# ---------------------------------------------------------------------- Ctrl-C
@pytest.mark.timeout(300)
def test_ctrl_c_saves_then_prints_the_resume_command_without_traceback(shards, tmp_path, capsys):
    """SIGINT to `python -m minillama pretrain` writing to pipes: exit 130, no traceback, a whole checkpoint, and
    the resume command names --out; that command finishes the run."""
    out = tmp_path / "my run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINILLAMA_PROGRESS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "minillama", *tiny_run(shards, out, 150)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not (out / "checkpoint" / "trainer.json").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    assert f"minillama pretrain --out '{out}' --resume" in stderr
    state = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert 3 <= state["step"] < 150
    load_checkpoint(out / "checkpoint")
    assert cli(["pretrain", "--out", str(out), "--resume"]) == 0
    text = capsys.readouterr().out
    assert f"at step {state['step']}/150" in text and "done: step 150/150" in text and "held-out: " in text


# ---------------------------------------------------------------------- minillama eval
def test_eval_scores_the_shipped_model_on_a_stated_strided_sample(capsys):
    assert cli(["eval", "--max-tokens", "2048", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["sampled"] and r["tokens"] == 2048 and r["windows"] == 8 and r["of_windows"] > 100
    assert r["bits_per_byte"] == pytest.approx(r["nats_per_token"] * r["tokens"] / math.log(2) / r["bytes"])
    assert 1.0 < r["bits_per_byte"] < 3.0 and "held-out documents of 'stdlib'" in r["data"]


def test_eval_samples_report_the_parse_rate(capsys):
    """`--samples N`: N seeded samples, their parse rate in the JSON, the same as the library's protocol."""
    argv = ["eval", "--max-tokens", "256", "--samples", "4", "--sample-tokens", "24", "--json"]
    assert cli(argv) == 0
    r = json.loads(capsys.readouterr().out)["parse_rate"]
    model, tok = load_shipped(DEFAULT_MODEL)  # eval's default checkpoint
    want = parse_rate(model, tok, 4, 0.8, 24, seed=0)
    assert (r["samples"], r["parsed"], r["unfinished"]) == (4, want.parsed, want.unfinished)
    assert r["temperature"] == 0.8 and r["prompts"] == ["def", "class"]
    with pytest.raises(SystemExit) as e:
        cli(["eval", "--samples", "-1"])
    assert e.value.code == 2 and "--samples and --temperature must be >= 0" in capsys.readouterr().err


def test_eval_of_a_run_equals_the_trainers_final_validation(tmp_path, capsys):
    """A run's checkpoint scored by `minillama eval` (its own data folder by default) gives the held-out figures
    the trainer printed and saved at the end of the run."""
    text = tmp_path / "text"
    text.mkdir()
    for i in range(12):
        (text / f"f{i}.py").write_text(f"def f{i}(x):\n    return x * {i}  # café {i}\n" * (5 + i))
    out = tmp_path / "run"
    argv = ["pretrain", "--preset", "tiny", "--data", str(text), "--tokenizer", str(shipped_tokenizer_path())]
    argv += ["--steps", "4", "--seq-len", "16", "--batch-size", "4", "--precision", "fp32", "--out", str(out)]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    assert "held-out: " in printed and " bits/byte over all " in printed
    saved = json.loads((out / "checkpoint" / "trainer.json").read_text())["val_history"][-1]["heldout"]
    assert cli(["eval", "--checkpoint", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert not r["sampled"] and r["tokens"] == saved["tokens"] and r["bytes"] == saved["bytes"] > 0
    assert r["bits_per_byte"] == pytest.approx(saved["bits_per_byte"], rel=1e-5)
    assert f"{saved['bits_per_byte']:.3f} bits/byte" in printed


def test_eval_bad_input_is_one_line(tmp_path, capsys):
    assert cli(["eval", "--checkpoint", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint in" in err and "Traceback" not in err
    assert cli(["eval", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_keep_freed_memory_sets_glibc_thresholds_in_a_fresh_process():
    """On glibc the malloc thresholds are raised (mallopt accepts both); elsewhere it reports False and does
    nothing. In a child process, so the test process keeps its allocator as it was."""
    code = "from minillama.utils import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    glibc = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None
    assert out == str(glibc)


def test_pretrain_compile_runs_the_training_steps_through_torch_compile(tmp_path, monkeypatch):
    """`--compile` hands the module that runs the steps to torch.compile (recorded here, not compiled: compiling
    takes a minute) and keeps the plain model for validation and checkpoints; without it nothing is compiled."""
    seen = []

    def fake_compile(module):
        seen.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    text = tmp_path / "text"
    text.mkdir()
    for i in range(12):
        (text / f"f{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n" * (5 + i))
    argv = ["pretrain", "--preset", "tiny", "--data", str(text), "--tokenizer", str(shipped_tokenizer_path())]
    argv += ["--steps", "2", "--seq-len", "16", "--batch-size", "2", "--precision", "fp32"]
    assert cli([*argv, "--out", str(tmp_path / "plain")]) == 0 and seen == []
    assert cli([*argv, "--out", str(tmp_path / "compiled"), "--compile"]) == 0
    assert len(seen) == 1 and type(seen[0]).__name__ == "Transformer"
    load_checkpoint(tmp_path / "compiled" / "checkpoint")


def test_compile_is_on_by_default_only_for_long_single_process_cpu_runs(monkeypatch):
    """Compiling costs about a minute on 2 cores: on by default for a CPU run of >= 5 minutes with a C++ compiler,
    off for --steps runs (tests, reproductions), short runs, no compiler, GPUs and torchrun; the flags win."""
    cpu = Cluster(device=torch.device("cpu"))
    run = dict(compile=None, steps=None, minutes=15.0)
    monkeypatch.setattr(cli_pretrain.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert cli_pretrain.compile_by_default(Namespace(**run), cpu)[0] is True
    assert cli_pretrain.compile_by_default(Namespace(**{**run, "steps": 100}), cpu)[0] is False
    assert cli_pretrain.compile_by_default(Namespace(**{**run, "minutes": 2.0}), cpu)[0] is False
    assert cli_pretrain.compile_by_default(Namespace(**{**run, "compile": False}), cpu) == (False, "--no-compile")
    gpu = Cluster(device=torch.device("cuda"))
    assert cli_pretrain.compile_by_default(Namespace(**run), gpu)[0] is False
    assert cli_pretrain.compile_by_default(Namespace(**{**run, "compile": True}), gpu) == (True, "--compile")
    monkeypatch.setattr(cli_pretrain.shutil, "which", lambda name: None)
    assert cli_pretrain.compile_by_default(Namespace(**run), cpu) == (False, "auto: no C++ compiler on PATH")
