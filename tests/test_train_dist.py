"""`minillama pretrain` on a chosen device and scaled out over processes (issue 14; paper §3.3.2): under `torchrun`
the same `Trainer` runs with DDP or FSDP2, every process taking its slice of the same global batch, so 2 processes
give the loss curve of 1 (fp32, CPU, gloo); a checkpoint written by 2 processes resumes in 1 and continues the curve
of a run that never stopped; bad input (a world size that does not divide the batch, data without text, a device
this machine lacks) is one line on stderr and exit code 2."""

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from minillama.checkpoint import load_checkpoint
from minillama.cli import main as cli
from minillama.parallel.launch import launch
from minillama.train.trainer import Trainer, rows_of_rank, to_device

WORLD = 2
#: 6 steps of the tiny model, the paper's batch ramp (2, 4, then 8 rows: all divisible by 2), fp32
RUN = ["--preset", "tiny", "--steps", "6", "--seq-len", "16", "--batch-size", "8", "--precision", "fp32", "--ramp"] + [
    "--eval-every", "3", "--ckpt-every", "3", "--device", "cpu"
]  # fmt: skip


def run_argv(shards, out, *more) -> list[str]:
    return ["--data", str(shards), *RUN, "--out", str(out), *more]


def history(out) -> list[dict]:
    return json.loads((out / "checkpoint" / "trainer.json").read_text())["history"]


def assert_same_curve(got: list[dict], want: list[dict], tol: float = 2e-5) -> None:
    """Same steps, rows and tokens; loss and gradient norm equal to fp32 rounding (the batch is summed in another
    order when it is split over processes)."""
    assert [(r["step"], r["rows"], r["tokens"]) for r in got] == [(r["step"], r["rows"], r["tokens"]) for r in want]
    for g, w in zip(got, want):
        assert g["loss"] == pytest.approx(w["loss"], rel=tol), (g, w)
        assert g["grad_norm"] == pytest.approx(w["grad_norm"], rel=1e-4), (g, w)
        assert g["lr"] == w["lr"]


def _stop_after(step: int, setattr=setattr) -> None:
    """Make the Trainer stop after `step` steps as if Ctrl-C had been pressed (it saves, then exits 130).
    `setattr`: pytest's monkeypatch.setattr in this process (undone after the test)."""
    original = Trainer.train_step

    def train_step(self):
        record = original(self)
        if self.step == step:
            self._interrupted = True
        return record

    setattr(Trainer, "train_step", train_step)


def _pretrain_rank(argv: list[str], stop_after: int | None = None) -> tuple[int, str, str]:
    """Inside a launched rank: `minillama pretrain argv`; returns (exit code, stdout, stderr)."""
    if stop_after is not None:
        _stop_after(stop_after)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(["pretrain", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def one_process(shards, tmp_path_factory):
    """The reference: the same 6 steps in this process (no torchrun)."""
    out = tmp_path_factory.mktemp("one") / "run"
    with redirect_stdout(io.StringIO()):
        assert cli(["pretrain", *run_argv(shards, out)]) == 0
    return history(out)


# ---------------------------------------------------------------------- same curve on 2 processes
@pytest.mark.timeout(300)
def test_torchrun_ddp_on_two_processes_gives_the_curve_of_one(shards, tmp_path, one_process):
    """The real entry point: `torchrun --nproc_per_node=2 -m minillama.pretrain` (DDP, the default)."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINILLAMA_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}"]
    proc = subprocess.run(
        [*cmd, "-m", "minillama.pretrain", *run_argv(shards, out)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: step 6/6") == 1, proc.stdout  # printed by rank 0 only
    assert "2 processes (ddp" in proc.stdout
    assert_same_curve(history(out), one_process)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "flags",
    [["--dist", "fsdp"], ["--dist", "ddp", "--micro-batch-size", "2"]],  # DDP with gradient accumulation (no_sync)
    ids=["fsdp", "ddp-micro-batches"],
)
def test_two_processes_give_the_curve_of_one_and_a_full_cpu_checkpoint(shards, tmp_path, one_process, flags):
    out = tmp_path / "run"
    results = launch(_pretrain_rank, WORLD, run_argv(shards, out, *flags), timeout=120)
    assert [code for code, _, _ in results] == [0, 0], results
    assert "done: step 6/6" in results[0][1] and results[1][1] == ""  # rank 0 prints, the others do not
    assert_same_curve(history(out), one_process)
    model = load_checkpoint(out / "checkpoint")  # the whole model, unsharded, on the CPU
    assert model.num_params() > 0 and {p.device.type for p in model.parameters()} == {"cpu"}


@pytest.mark.timeout(300)
def test_a_checkpoint_of_two_fsdp_processes_resumes_in_one_on_the_same_curve(shards, tmp_path, one_process):
    out = tmp_path / "resumed"
    results = launch(_pretrain_rank, WORLD, run_argv(shards, out, "--dist", "fsdp"), stop_after=3, timeout=120)
    assert [code for code, _, _ in results] == [130, 130], results
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["step"] == 3
    with redirect_stdout(io.StringIO()) as printed:
        assert cli(["pretrain", "--out", str(out), "--resume"]) == 0
    assert "resuming" in printed.getvalue() and "done: step 6/6" in printed.getvalue()
    assert_same_curve(history(out), one_process)


def test_a_checkpoint_of_one_process_resumes_in_two_fsdp_processes_on_the_same_curve(
    shards, tmp_path, one_process, monkeypatch
):
    out = tmp_path / "grown"
    _stop_after(3, monkeypatch.setattr)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        assert cli(["pretrain", *run_argv(shards, out)]) == 130
    monkeypatch.undo()
    results = launch(_pretrain_rank, WORLD, ["--out", str(out), "--resume", "--dist", "fsdp"], timeout=120)
    assert [code for code, _, _ in results] == [0, 0], results
    assert "resuming" in results[0][1] and "2 processes (fsdp" in results[0][1]
    assert_same_curve(history(out), one_process)


def test_each_process_computes_on_its_own_equal_slice_of_the_global_batch():
    inputs, targets = torch.arange(12).view(6, 2), torch.arange(12).view(6, 2) + 100
    slices = [rows_of_rank((inputs, targets), r, 3) for r in range(3)]
    assert torch.equal(torch.cat([x for x, _ in slices]), inputs) and all(x.shape == (2, 2) for x, _ in slices)
    assert torch.equal(slices[1][1], targets[2:4])
    d = rows_of_rank({"tokens": inputs, "name": "kept"}, 1, 2)
    assert torch.equal(d["tokens"], inputs[3:]) and d["name"] == "kept"
    assert rows_of_rank(inputs, 0, 1) is inputs
    with pytest.raises(ValueError, match="5 rows does not split over 2"):
        rows_of_rank(inputs[:5], 0, 2)
    moved = to_device([inputs, {"t": targets}], torch.device("cpu"))
    assert moved[0] is inputs and moved[1]["t"] is targets  # already there: no copy


# ---------------------------------------------------------------------- bad input: one line, exit 2
def one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "flags, words",
    [
        (["--batch-size", "5", "--no-ramp"], ["world size 2", "rows 5"]),
        (["--batch-size", "6"], ["world size 2", "rows 1, 3"]),  # the ramp: 6 // 4 = 1, 6 // 2 = 3, 6 rows
        (["--batch-size", "6", "--micro-batch-size", "3", "--no-ramp"], ["world size 2", "micro-batch of 3 rows"]),
    ],
)
def test_a_world_size_that_does_not_divide_the_batch_is_one_line_on_rank_0(shards, tmp_path, flags, words):
    argv = run_argv(shards, tmp_path / "run", *flags)
    results = launch(_pretrain_rank, WORLD, argv, timeout=120)
    assert [code for code, _, _ in results] == [2] * WORLD, results
    one_line_error(results[0][2], *words)
    assert all(err == "" for _, _, err in results[1:]), results  # the other ranks exit quietly
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_data_without_text_is_one_line(tmp_path, capsys):
    empty_folder = tmp_path / "no_text"
    empty_folder.mkdir()
    (empty_folder / "table.csv").write_text("a,b\n1,2\n")
    empty_file = tmp_path / "empty.txt"
    empty_file.write_text("")
    for data in (empty_folder, empty_file):
        argv = ["pretrain", "--preset", "tiny", "--data", str(data), "--steps", "2", "--out", str(tmp_path / "r")]
        assert cli(argv) == 2
        one_line_error(capsys.readouterr().err, str(data))
    assert not (tmp_path / "r" / "checkpoint").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys):
    assert cli(["pretrain", "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys.readouterr().err, "--device cuda", "--device cpu")
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_device_mps_without_mps_is_one_line(tmp_path, capsys):
    assert cli(["pretrain", "--device", "mps", "--out", str(tmp_path / "r")]) == 2
    one_line_error(capsys.readouterr().err, "--device mps")
