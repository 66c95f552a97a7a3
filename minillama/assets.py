"""Where things are: the files the package ships (minillama/assets) and the checkpoint inside a run folder.

Shipped assets (see each folder's REPRODUCE.txt):

    assets/tiny-stdlib/   the course tokenizer (8K BPE + Llama 3's special tokens) and a tiny model pre-trained here
                          (0.6M parameters; the base of the post-training chapters)
    assets/small-stdlib/  the default pre-training run's model (6.3M parameters, 15 minutes on 2 cores, bf16):
                          what `minillama generate` and `minillama eval` use by default
    assets/tooluse/       a small model trained to call tools (chapter 12)

A *run folder* is what a training command writes (`minillama pretrain --out runs/small`): the model lives in its
``checkpoint/`` sub-folder. Commands accept either the run folder or the checkpoint folder; `resolve_checkpoint`
says which folder holds the model. Standard library only, so any layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "SHIPPED",
    "DEFAULT_MODEL",
    "TOOLUSE",
    "CHECKPOINT",
    "assets_dir",
    "shipped_checkpoint",
    "shipped_tokenizer_path",
    "resolve_checkpoint",
]

SHIPPED = "tiny-stdlib"  # the course tokenizer and the tiny pre-trained model
DEFAULT_MODEL = "small-stdlib"  # the default pre-training recipe's model: `generate` and `eval` start here
TOOLUSE = "tooluse"  # the tool-calling model of chapter 12
CHECKPOINT = "checkpoint"  # the folder name of the model inside a run folder


def assets_dir() -> Path:
    """Files shipped with the package (tokenizer, tiny checkpoints, golden outputs)."""
    return Path(__file__).resolve().parent / "assets"


def shipped_checkpoint(name: str = SHIPPED) -> Path:
    """The folder of a shipped model: config.json, model.safetensors, tokenizer.model (and golden.json for the
    pre-trained models, which `tests/test_train_assets.py` checks)."""
    return assets_dir() / name


def shipped_tokenizer_path() -> Path:
    """The course tokenizer shipped with the package (beside the tiny pre-trained model)."""
    path = shipped_checkpoint() / "tokenizer.model"
    if not path.is_file():
        raise FileNotFoundError(
            f"no course tokenizer at {path}; pass --tokenizer PATH (a rank file from `minillama tokenizer`)"
        )
    return path


def resolve_checkpoint(folder: str | os.PathLike) -> Path:
    """The folder that holds the model: `folder` itself, or its ``checkpoint/`` when `folder` is a run folder."""
    folder = Path(folder)
    if not (folder / "config.json").is_file() and (folder / CHECKPOINT / "config.json").is_file():
        return folder / CHECKPOINT
    return folder
