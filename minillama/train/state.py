"""A training run's state on disk, beside the model: everything `Trainer.resume` needs to continue bit-identically.

checkpoint/
  config.json, model.safetensors   the model (`minillama.checkpoint.save_checkpoint`)
  optimizer.st (safetensors)       AdamW moments and step counts, by parameter name
  rng.st (safetensors)             torch's RNG state
  trainer.json                     TrainConfig, step, tokens seen, loader state, Python/NumPy RNG, history

Every tensor is written whole and on the CPU, whatever device and however many processes trained: a weight or
moment sharded by FSDP2 (a DTensor) is gathered first (`full_model_state`, `state_files`; every process calls
them), and `load_state` lays each moment out like its parameter again (sharded or not, on its device), so a run
resumes on another device or another number of processes.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes

from minillama.checkpoint import CheckpointError

__all__ = [
    "TRAINER_STATE",
    "OPTIMIZER_STATE",
    "RNG_STATE",
    "state_files",
    "full_model_state",
    "read_trainer_state",
    "load_state",
]

TRAINER_STATE = "trainer.json"
OPTIMIZER_STATE = "optimizer.st"  # safetensors format; not *.safetensors, which load_checkpoint reads as weights
RNG_STATE = "rng.st"  # safetensors format
FORMAT = "minillama-trainer-v1"


def read_trainer_state(folder: str | os.PathLike) -> dict:
    """The trainer.json of a checkpoint folder, with a clear error when missing or corrupt."""
    path = Path(folder) / TRAINER_STATE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not a training checkpoint (or was never completed)")
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); start again without --resume") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minillama trainer state (format {state.get('format')!r})")
    return state


def _py_rng_to_json(state):
    return [state[0], list(state[1]), state[2]]


def _py_rng_from_json(state):
    return (state[0], tuple(state[1]), state[2])


def _np_rng_to_json(state):
    return [state[0], state[1].tolist(), int(state[2]), int(state[3]), float(state[4])]


def _np_rng_from_json(state):
    return (state[0], np.asarray(state[1], dtype=np.uint32), state[2], state[3], state[4])


def _full_cpu(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on the CPU: a DTensor's shards gathered (a collective: every process calls it)."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().to("cpu").contiguous()


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """name -> the whole weight on the CPU (sharded weights gathered), in `model.state_dict()`'s order."""
    return {name: _full_cpu(t) for name, t in model.state_dict().items()}


def _laid_out_like(value: torch.Tensor, param: torch.Tensor, key: str, group: dict) -> torch.Tensor:
    """A saved optimizer tensor placed like torch would create it for `param`: a moment on the parameter's device
    (sharded the same way when the parameter is a DTensor); the step count on the CPU unless the optimizer is
    fused or capturable (then on the parameter's device)."""
    if key == "step":
        on_device = group.get("fused") or group.get("capturable")
        return value.clone().to(param.device if on_device else "cpu")
    if hasattr(param, "device_mesh"):
        # only reached with DTensor parameters (FSDP2), whose module torch has therefore loaded already
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
    return value.clone().to(param.device)


def state_files(trainer) -> dict[str, bytes]:
    """Everything of a `Trainer` but the model, as file contents: optimizer moments, RNG, trainer.json."""
    record = {
        "format": FORMAT,
        "train_config": trainer.cfg.to_dict(),
        "step": trainer.step,
        "tokens_seen": trainer.tokens_seen,
        "wall_s": trainer.wall_s,
        "loader": trainer.loader.state_dict(),
        "history": trainer.history,
        "val_history": trainer.val_history,
        "meta": trainer.meta,
        "rng": {"python": _py_rng_to_json(random.getstate()), "numpy": _np_rng_to_json(np.random.get_state())},
    }
    moments = {}
    for name, p in zip(trainer.param_names, trainer.params):
        for key, value in trainer.optimizer.state.get(p, {}).items():
            moments[f"{name}.{key}"] = _full_cpu(value)
    return {
        TRAINER_STATE: json.dumps(record).encode(),
        OPTIMIZER_STATE: save_bytes(moments),
        RNG_STATE: save_bytes({"torch": torch.get_rng_state()}),
    }


def load_state(trainer, folder: str | os.PathLike) -> None:
    """Restore a `Trainer`'s optimizer, RNG, loader, step and history from checkpoint `folder`."""
    folder = Path(folder)
    record = read_trainer_state(folder)
    try:
        moments = load_file(folder / OPTIMIZER_STATE)
        rng = load_file(folder / RNG_STATE)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{folder}: optimizer or RNG state is unreadable ({e}); the checkpoint is "
            f"truncated or corrupt, start again without --resume"
        ) from e
    group_of = {p: g for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, p in zip(trainer.param_names, trainer.params):
        keys = [k for k in moments if k.rsplit(".", 1)[0] == name]
        if keys:
            trainer.optimizer.state[p] = {
                k.rsplit(".", 1)[1]: _laid_out_like(moments[k], p, k.rsplit(".", 1)[1], group_of[p]) for k in keys
            }
    trainer.step, trainer.tokens_seen = int(record["step"]), int(record["tokens_seen"])
    trainer.wall_s = float(record.get("wall_s", 0.0))
    trainer.history, trainer.val_history = record["history"], record["val_history"]
    trainer.meta.update(record.get("meta", {}))
    trainer.loader.load_state_dict(record["loader"])
    random.setstate(_py_rng_from_json(record["rng"]["python"]))
    np.random.set_state(_np_rng_from_json(record["rng"]["numpy"]))
    torch.set_rng_state(rng["torch"])
