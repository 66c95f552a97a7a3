"""Model averaging [P §4.1.5]: Llama 3 averages the weights of models from runs with different data or
hyperparameters at each of the RM, SFT and DPO stages.

Runs that start from the same checkpoint and fine-tune briefly stay in one basin, so the average of their weights is
itself a good model, often better than each run. `average_checkpoints(folders)` loads minillama checkpoints and returns
their (weighted) average; `average_state_dicts` does the arithmetic on plain state dicts.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import Tensor

from minillama.model import Transformer


def average_state_dicts(state_dicts: list[dict[str, Tensor]], weights: list[float] | None = None) -> dict[str, Tensor]:
    """Σ_i w_i · θ_i for every tensor (weights default to uniform and are normalised to sum to 1)."""
    if not state_dicts:
        raise ValueError("nothing to average: pass at least one state dict")
    keys = list(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if list(sd) != keys or any(sd[k].shape != state_dicts[0][k].shape for k in keys):
            raise ValueError(f"state dict {i} does not match the first one (names or shapes differ): "
                             "average only checkpoints of the same architecture")
    w = torch.tensor(weights if weights is not None else [1.0] * len(state_dicts), dtype=torch.float64)
    if w.shape != (len(state_dicts),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(state_dicts)} non-negative numbers with a positive sum, got {weights}")
    w = w / w.sum()
    out = {}
    for k in keys:
        ref = state_dicts[0][k]
        if not ref.is_floating_point():
            out[k] = ref.clone()
            continue
        acc = sum(float(wi) * sd[k].double() for wi, sd in zip(w, state_dicts))
        out[k] = acc.to(ref.dtype)
    return out


def average_models(models: list[Transformer], weights: list[float] | None = None) -> Transformer:
    """A new model whose weights are the average of `models` (all of the same ModelArgs)."""
    avg = copy.deepcopy(models[0])
    avg.load_state_dict(average_state_dicts([m.state_dict() for m in models], weights))
    return avg


def average_checkpoints(folders: list[str | Path], weights: list[float] | None = None) -> Transformer:
    """Load minillama checkpoints (`save_checkpoint` folders) and return their average."""
    from minillama.checkpoint import load_checkpoint

    return average_models([load_checkpoint(f) for f in folders], weights)
