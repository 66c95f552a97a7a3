"""Recipes on top of the trainer: continued pre-training on a new mix, annealing, checkpoint averaging.

* **Code-expert branch** (paper §4.3.1): Llama 3's code expert is the pre-trained model continued on a
  code-heavy mix (~1T tokens, >85% code). `continue_on_mixes` starts several continuations from one checkpoint with
  the same schedule, each on its own data mix, and tracks the loss of each on fixed evaluation sets, so the code
  validation loss of the code-heavy branch can be compared with a branch that keeps the general mix.
* **Annealing** (paper §3.1.3, §3.4.3): over the last 40M tokens, the LR goes linearly to 0 on an upsampled high-quality
  mix. `anneal` continues a checkpoint with `schedule="linear"` and keeps the last few snapshots.
* **Checkpoint averaging** (paper §3.4.3): "we compute the average of model checkpoints (Polyak averaging) during
  annealing to produce the final pre-trained model": `minillama.checkpoint.average_state_dicts` of the snapshots.
* **The shipped models**: `load_shipped`, and `export_shipped`, which wrote minillama/assets/tiny-stdlib and
  minillama/assets/small-stdlib (the default recipe's 15-minute run, stored in bf16).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from minillama.assets import SHIPPED, shipped_checkpoint
from minillama.checkpoint import load_checkpoint, save_checkpoint
from minillama.generate import generate
from minillama.model import Transformer
from minillama.tokenizer import BPETokenizer
from minillama.train.recipe import TrainConfig, evaluate, lm_loss
from minillama.train.state import read_trainer_state
from minillama.train.trainer import Trainer

__all__ = ["load_shipped", "golden_continuations", "export_shipped", "eval_callback", "continue_on_mixes", "anneal"]


def load_shipped(name: str = SHIPPED):
    """(model, tokenizer) of a shipped pre-trained checkpoint (default: the tiny one, `SHIPPED`; `DEFAULT_MODEL` is
    the default recipe's 6.3M model): a start for later chapters and learners in a hurry. Weights load as fp32."""
    folder = shipped_checkpoint(name)
    return load_checkpoint(folder), BPETokenizer.load(folder / "tokenizer.model")


GOLDEN_PROMPTS = ("import os\n\n\ndef", "    def __init__(self", "def")
GOLDEN_NEW_TOKENS = 32


def golden_continuations(
    model: Transformer, tokenizer, prompts=GOLDEN_PROMPTS, max_new_tokens: int = GOLDEN_NEW_TOKENS
) -> list[dict]:
    """Greedy continuations (new token ids and text) of each prompt after BOS, with the KV cache."""
    out = []
    for prompt in prompts:
        ids = tokenizer.encode(prompt, bos=True)
        new = generate(model, [ids], max_new_tokens, temperature=0.0)[0]
        out.append(
            {
                "prompt": prompt,
                "prompt_ids": ids,
                "max_new_tokens": max_new_tokens,
                "new_tokens": new,
                "text": tokenizer.decode(new),
            }
        )
    return out


def export_shipped(
    checkpoint: str | os.PathLike, folder: str | os.PathLike | None = None, dtype: torch.dtype | None = None
) -> Path:
    """Copy a training checkpoint's model and tokenizer (not its optimizer state) to the shipped-asset folder and
    write ``golden.json``: greedy continuations that `tests/test_train_assets.py` checks, computed from the stored
    weights. `dtype` (e.g. ``torch.bfloat16``, half the bytes) stores the weights rounded to it; they load as fp32.
    Other files in `folder` (REPRODUCE.txt) are kept."""
    checkpoint = Path(checkpoint)
    folder = Path(folder) if folder is not None else shipped_checkpoint()
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_checkpoint(checkpoint)
        save_checkpoint(model.to(dtype) if dtype is not None else model, Path(tmp) / "ckpt")
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(Path(tmp) / "ckpt" / name, folder / name)
    shutil.copyfile(checkpoint / "tokenizer.model", folder / "tokenizer.model")
    model, tok = load_checkpoint(folder), BPETokenizer.load(folder / "tokenizer.model")
    state = read_trainer_state(checkpoint)
    last = state["val_history"][-1]
    golden = {
        "continuations": golden_continuations(model, tok),
        "step": state["step"],
        "tokens_seen": state["tokens_seen"],
        "val_loss": last["val_loss"],
        "heldout": last.get("heldout"),  # the trainer's whole-split score (before any dtype rounding)
        "stored_dtype": str(dtype or "as trained").removeprefix("torch."),
        "unigram_entropy": state["meta"].get("unigram_entropy"),
        "torch": torch.__version__,
    }
    (folder / "golden.json").write_text(json.dumps(golden, indent=1))
    return folder


def _as_model(model_or_folder: Transformer | str | os.PathLike) -> Transformer:
    if isinstance(model_or_folder, torch.nn.Module):
        return copy.deepcopy(model_or_folder)
    return load_checkpoint(model_or_folder)


def eval_callback(eval_sets: dict[str, Sequence], every: int, curve: list[dict], loss_fn: Callable = lm_loss):
    """A `Trainer` callback that appends ``{"step", "tokens", <set name>: loss, ...}`` to `curve` every `every`
    steps (the model is evaluated on each fixed batch list in `eval_sets`)."""

    def callback(trainer: Trainer, record: dict) -> None:
        if trainer.step % every == 0 or trainer.step == trainer.cfg.max_steps:
            row = {"step": trainer.step, "tokens": trainer.tokens_seen}
            row.update({name: evaluate(trainer.model, batches, loss_fn) for name, batches in eval_sets.items()})
            curve.append(row)

    return callback


def continue_on_mixes(
    start: Transformer | str | os.PathLike,
    loaders: dict[str, object],
    cfg: TrainConfig,
    eval_sets: dict[str, Sequence],
    eval_every: int = 10,
    progress: bool | None = None,
) -> dict[str, list[dict]]:
    """Continue the same starting model once per data mix, with the same `cfg`; return each branch's evaluation
    curve ``[{"step", "tokens", <eval set>: loss}, ...]`` (step 0 = the starting model).

    start:     a model or a checkpoint folder (copied, never changed).
    loaders:   branch name -> a loader (e.g. `MixedLoader` of code and prose shards with different weights).
    eval_sets: name -> fixed batches, e.g. ``{"code": code_val_batches, "prose": prose_val_batches}``.
    """
    curves = {}
    for name, loader in loaders.items():
        model = _as_model(start)
        curve = [{"step": 0, "tokens": 0, **{k: evaluate(model, b) for k, b in eval_sets.items()}}]
        trainer = Trainer(
            model,
            loader,
            dataclasses.replace(cfg, eval_every=0, ckpt_every=0),
            callbacks=[eval_callback(eval_sets, eval_every, curve)],
        )
        trainer.fit(progress=progress)
        curves[name] = curve
    return curves


def anneal(
    start: Transformer | str | os.PathLike,
    loader,
    steps: int,
    lr: float,
    seq_len: int,
    batch_size: int = 8,
    keep_last: int = 3,
    seed: int = 0,
    progress: bool | None = None,
    **cfg_overrides,
) -> tuple[Trainer, list[dict[str, Tensor]]]:
    """Continue `start` for `steps` steps on `loader` (a high-quality mix) with the LR falling linearly from `lr`
    to 0, no warmup. Returns the trainer and the state dicts of the last `keep_last` steps (for averaging)."""
    cfg = TrainConfig(
        max_steps=steps,
        lr=lr,
        min_lr=0.0,
        warmup_steps=0,
        schedule="linear",
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        eval_every=0,
        ckpt_every=0,
        **cfg_overrides,
    )
    snapshots: list[dict[str, Tensor]] = []

    def keep(trainer: Trainer, record: dict) -> None:
        if trainer.step > steps - keep_last:
            snapshots.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})

    trainer = Trainer(_as_model(start), loader, cfg, callbacks=[keep])
    trainer.fit(progress=progress)
    return trainer, snapshots
