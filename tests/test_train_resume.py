"""Kill a training process mid-run, resume it, and get the loss curve of a run that never stopped; the CLI."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from minillama.checkpoint import load_checkpoint
from minillama.cli.pretrain import main
from minillama.data.shards import ShardLoader
from minillama.train import TrainConfig, train

SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from minillama.model.config import ModelArgs
    from minillama.model import Transformer
    from minillama.data.shards import ShardLoader
    from minillama.train import TrainConfig, train
    folder, out, resume, pause = sys.argv[1], sys.argv[2], sys.argv[3] == "1", float(sys.argv[4])
    cfg = TrainConfig(**{CFG})
    loader = ShardLoader(folder, cfg.seq_len, "train", seed=3)
    val = [ShardLoader(folder, cfg.seq_len, "val", shuffle=False).next_batch(4)]
    args = ModelArgs.from_preset("tiny", vocab_size=302, max_seq_len=32)
    model = None if resume else Transformer(args).init_weights(seed=0)
    train(model, loader, cfg, val_batches=val, out_dir=out, resume=resume, progress=False,
          callbacks=[lambda tr, rec: time.sleep(pause)])
""")
CFG = dict(
    max_steps=24,
    lr=3e-3,
    min_lr=3e-4,
    warmup_steps=4,
    batch_ramp=((0, 2), (200, 4)),
    micro_batch_size=2,
    seq_len=16,
    eval_every=5,
    ckpt_every=5,
)


def run_script(shards, out, resume, pause):
    code = SCRIPT.replace("{CFG}", repr(CFG))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MINILLAMA_PROGRESS": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(shards), str(out), "1" if resume else "0", str(pause)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint_step(out):
    try:
        return json.loads((out / "checkpoint" / "trainer.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return 0


@pytest.mark.timeout(300)
def test_kill_and_resume_matches_uninterrupted_run(shards, tmp_path):
    """SIGKILL a training subprocess between checkpoints; the last checkpoint is readable, and resuming gives
    the same per-step losses, validation losses and weights as a run that was never interrupted."""
    import torch

    out = tmp_path / "killed"
    proc = run_script(shards, out, resume=False, pause=0.05)
    deadline = time.time() + 240
    while checkpoint_step(out) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.13)  # somewhere inside a later step (or a checkpoint write)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert still_running, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    killed_at = checkpoint_step(out)
    assert 10 <= killed_at < CFG["max_steps"]
    load_checkpoint(out / "checkpoint")  # the last checkpoint is whole

    resumed = run_script(shards, out, resume=True, pause=0.0)
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err[-3000:]

    cfg = TrainConfig(**CFG)
    from minillama.model import Transformer
    from minillama.model.config import ModelArgs

    model = Transformer(ModelArgs.from_preset("tiny", vocab_size=302, max_seq_len=32)).init_weights(seed=0)
    val = [ShardLoader(shards, cfg.seq_len, "val", shuffle=False).next_batch(4)]
    ref = train(model, ShardLoader(shards, cfg.seq_len, "train", seed=3), cfg, val_batches=val, progress=False)

    state = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert state["step"] == CFG["max_steps"]
    assert [r["loss"] for r in state["history"]] == [r["loss"] for r in ref.history]
    assert state["history"] == ref.history and state["val_history"] == ref.val_history
    final = load_checkpoint(out / "checkpoint")
    for name, w in ref.model.state_dict().items():
        assert torch.equal(final.state_dict()[name], w), name


def test_cli_pretrain_on_a_shard_folder_and_resume(shards, tmp_path, capsys):
    """`minillama pretrain` trains on a shard folder for --steps, refuses to overwrite a run, and --resume on a
    finished run keeps its history; --resume without a run is an error that says what to do."""
    out = tmp_path / "run"
    argv = [
        "--preset",
        "tiny",
        "--data",
        str(shards),
        "--steps",
        "6",
        "--seq-len",
        "16",
        "--batch-size",
        "4",
        "--out",
        str(out),
        "--eval-every",
        "3",
        "--ckpt-every",
        "3",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "done: step 6/6" in text and "unigram entropy" in text
    state = json.loads((out / "checkpoint" / "trainer.json").read_text())
    assert [r["rows"] for r in state["history"]][-1] == 4 and len(state["val_history"]) == 2
    assert (out / "loss.png").is_file()
    assert main(argv) == 2  # the run folder is taken
    assert "--resume" in capsys.readouterr().err
    assert main(["--out", str(out), "--resume"]) == 0
    assert json.loads((out / "checkpoint" / "trainer.json").read_text())["history"] == state["history"]
    assert main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
