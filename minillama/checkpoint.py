"""Checkpoints: minillama's own safetensors format, Hugging Face folders, and Meta's `consolidated` naming.

* Own format: a folder with `config.json` (ModelArgs) and `model.safetensors` (Meta names), written atomically:
  files go to a temporary folder beside the target, which is then renamed over it, so a kill at any moment leaves
  either the old checkpoint or the new one, never half of one.
* Hugging Face: `config.json` + `model.safetensors` as `save_pretrained` writes them. HF rotates the two halves of
  each head instead of interleaved pairs, so its `q_proj`/`k_proj` rows are a permutation of Meta's `wq`/`wk`;
  `hf_to_meta` undoes it and `meta_to_hf` redoes it.
* Meta: `params.json` + `consolidated.00.pth` with the names `minillama.model` already uses.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from einops import rearrange
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from minillama.model import Transformer
from minillama.model.config import ModelArgs, RopeScaling


class CheckpointError(ValueError):
    """A checkpoint that does not fit its config or cannot be read."""


# ---------------------------------------------------------------------- name maps
_HF_LAYER = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_HF_TOP = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def _permute_to_hf(w: Tensor, n_heads: int) -> Tensor:
    """Meta's interleaved pairs (x0 x1)(x2 x3).. -> HF's halves: rows (h, e/2, 2) become (h, 2, e/2)."""
    return rearrange(w, "(h e two) d -> (h two e) d", h=n_heads, two=2)


def _permute_to_meta(w: Tensor, n_heads: int) -> Tensor:
    """The inverse of `_permute_to_hf`."""
    return rearrange(w, "(h two e) d -> (h e two) d", h=n_heads, two=2)


def meta_to_hf(state: dict[str, Tensor], args: ModelArgs) -> dict[str, Tensor]:
    """Rename Meta-style tensors to HF's and permute wq/wk rows. A tied output is left out, as HF does."""
    out = {}
    for name, w in state.items():
        if name in _HF_TOP:
            if name == "output.weight" and args.tie_word_embeddings:
                continue
            out[_HF_TOP[name]] = w
            continue
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
        if not m or m.group(2) not in _HF_LAYER:
            raise CheckpointError(f"no Hugging Face name for tensor {name!r}")
        if m.group(2) == "attention.wq.weight":
            w = _permute_to_hf(w, args.n_heads)
        elif m.group(2) == "attention.wk.weight":
            w = _permute_to_hf(w, args.n_kv_heads)
        out[f"model.layers.{m.group(1)}.{_HF_LAYER[m.group(2)]}"] = w
    return out


def hf_to_meta(state: dict[str, Tensor], args: ModelArgs) -> dict[str, Tensor]:
    """Rename HF tensors to Meta's and undo the wq/wk permutation."""
    top = {v: k for k, v in _HF_TOP.items()}
    layer = {v: k for k, v in _HF_LAYER.items()}
    out = {}
    for name, w in state.items():
        if name in top:
            out[top[name]] = w
            continue
        m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", name)
        if not m or m.group(2) not in layer:
            if name.endswith("rotary_emb.inv_freq"):
                continue  # old HF checkpoints store the RoPE table; minillama recomputes it
            raise CheckpointError(f"unexpected tensor {name!r} in a Hugging Face Llama checkpoint")
        meta = layer[m.group(2)]
        if meta == "attention.wq.weight":
            w = _permute_to_meta(w, args.n_heads)
        elif meta == "attention.wk.weight":
            w = _permute_to_meta(w, args.n_kv_heads)
        out[f"layers.{m.group(1)}.{meta}"] = w
    if args.tie_word_embeddings:
        out.pop("output.weight", None)
    return out


# ---------------------------------------------------------------------- configs
def args_to_hf_config(args: ModelArgs) -> dict:
    """A Hugging Face `LlamaConfig` dict (both the v5 `rope_parameters` and the v4 `rope_theta`/`rope_scaling`)."""
    rope = {"rope_type": "default", "rope_theta": args.rope_theta}
    if args.use_scaled_rope:
        s = args.rope_scaling
        rope = {
            "rope_type": "llama3",
            "rope_theta": args.rope_theta,
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_seq_len,
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": args.dim,
        "intermediate_size": args.ffn_hidden_dim,
        "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab_size,
        "rms_norm_eps": args.norm_eps,
        "max_position_embeddings": max(args.max_seq_len, rope.get("original_max_position_embeddings", 0)),
        "rope_parameters": rope,
        "tie_word_embeddings": args.tie_word_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }


def hf_config_to_args(cfg: dict, **overrides) -> ModelArgs:
    """ModelArgs from a Hugging Face config dict (transformers v4 or v5 rope keys)."""
    rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise CheckpointError(f"rope_type {rope_type!r} is not a Llama 3 rotary embedding")
    scaling = RopeScaling()
    if rope_type == "llama3":
        scaling = RopeScaling(
            factor=float(rope["factor"]),
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_seq_len=int(rope["original_max_position_embeddings"]),
        )
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    if head_dim * cfg["num_attention_heads"] != cfg["hidden_size"]:
        raise CheckpointError("minillama needs head_dim · num_attention_heads == hidden_size")
    kwargs = dict(
        dim=cfg["hidden_size"],
        n_layers=cfg["num_hidden_layers"],
        n_heads=cfg["num_attention_heads"],
        n_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
        vocab_size=cfg["vocab_size"],
        norm_eps=cfg.get("rms_norm_eps", 1e-5),
        rope_theta=float(theta),
        use_scaled_rope=rope_type == "llama3",
        rope_scaling=scaling,
        max_seq_len=cfg.get("max_position_embeddings", 2048),
        max_batch_size=1,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        intermediate_size=cfg["intermediate_size"],
        ffn_dim_multiplier=None,
        multiple_of=1,
    )
    kwargs.update(overrides)
    return ModelArgs(**kwargs)


# ---------------------------------------------------------------------- loading with checks
def load_into(model: Transformer, state: dict[str, Tensor], source: str = "checkpoint") -> Transformer:
    """Copy `state` (Meta names) into `model`; CheckpointError on the first missing, extra or mis-shaped tensor."""
    expected = {k: v for k, v in model.state_dict().items()}
    if model.args.tie_word_embeddings:
        expected.pop("output.weight", None)
        state = {k: v for k, v in state.items() if k != "output.weight"}
    for name in sorted(state, key=_natural):
        if name not in expected:
            raise CheckpointError(f"{source}: tensor {name!r} has no place in this model (config mismatch?)")
        if tuple(state[name].shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                f"the config expects {tuple(expected[name].shape)}"
            )
    missing = sorted(set(expected) - set(state), key=_natural)
    if missing:
        raise CheckpointError(f"{source}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)")
    model.load_state_dict(state, strict=False)
    return model


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _read_safetensors(folder: Path) -> dict[str, Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no .safetensors file in {folder}")
    state = {}
    for f in files:
        try:
            state.update(load_file(f))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"{f} is not a readable safetensors file ({e}); the file may be truncated or corrupt"
            ) from e
    return state


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None


def _state_for_saving(model: Transformer, state: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    state = {k: v.detach().contiguous().clone() for k, v in (model.state_dict() if state is None else state).items()}
    if model.args.tie_word_embeddings:
        state.pop("output.weight", None)
    return state


def atomic_write_folder(folder: str | os.PathLike, write) -> Path:
    """Call `write(tmp_folder)`, then move the finished folder to `folder` (replacing any old one)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a private folder; a checkpoint is an ordinary one
        for f in tmp.iterdir():  # flush file contents before the rename makes them visible
            os.chmod(f, 0o666 & ~umask)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ---------------------------------------------------------------------- public API
def save_checkpoint(
    model: Transformer,
    folder: str | os.PathLike,
    extra_files: dict[str, bytes] | None = None,
    state: dict[str, Tensor] | None = None,
) -> Path:
    """minillama's own format: `config.json` (ModelArgs) + `model.safetensors` (Meta names), written atomically.
    `state`: the tensors to write instead of ``model.state_dict()`` (e.g. gathered from shards by the trainer)."""

    def write(tmp: Path):
        (tmp / "config.json").write_text(json.dumps(model.args.to_dict(), indent=2))
        save_file(_state_for_saving(model, state), tmp / "model.safetensors", metadata={"format": "minillama"})
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)

    return atomic_write_folder(folder, write)


def load_checkpoint(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Transformer:
    """Load a folder written by `save_checkpoint`."""
    folder = Path(folder)
    args = ModelArgs.from_dict(_read_json(folder / "config.json"))
    model = Transformer(args)
    return load_into(model, _read_safetensors(folder), str(folder)).to(dtype)


def save_hf(model: Transformer, folder: str | os.PathLike) -> Path:
    """A Hugging Face folder (`config.json` + `model.safetensors`) that `LlamaForCausalLM.from_pretrained` loads."""

    def write(tmp: Path):
        (tmp / "config.json").write_text(json.dumps(args_to_hf_config(model.args), indent=2))
        save_file(
            meta_to_hf(_state_for_saving(model), model.args), tmp / "model.safetensors", metadata={"format": "pt"}
        )

    return atomic_write_folder(folder, write)


def load_hf(folder: str | os.PathLike, dtype: torch.dtype = torch.float32, **overrides) -> Transformer:
    """Load a Hugging Face Llama folder (config.json + one or more .safetensors files) into minillama."""
    folder = Path(folder)
    args = hf_config_to_args(_read_json(folder / "config.json"), **overrides)
    model = Transformer(args)
    return load_into(model, hf_to_meta(_read_safetensors(folder), args), str(folder)).to(dtype)


def save_meta(model: Transformer, folder: str | os.PathLike) -> Path:
    """Meta's layout: `params.json` + `consolidated.00.pth` (tensors keep minillama's = Meta's names)."""
    a = model.args

    def write(tmp: Path):
        params = {
            "dim": a.dim,
            "n_layers": a.n_layers,
            "n_heads": a.n_heads,
            "n_kv_heads": a.n_kv_heads,
            "vocab_size": a.vocab_size,
            "multiple_of": a.multiple_of,
            "ffn_dim_multiplier": a.ffn_dim_multiplier,
            "norm_eps": a.norm_eps,
            "rope_theta": a.rope_theta,
            "use_scaled_rope": a.use_scaled_rope,
        }
        (tmp / "params.json").write_text(json.dumps(params, indent=2))
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(state, tmp / "consolidated.00.pth")

    return atomic_write_folder(folder, write)


def load_meta(folder: str | os.PathLike, **overrides) -> Transformer:
    """Load Meta's `params.json` + `consolidated.00.pth` (a single model-parallel shard)."""
    folder = Path(folder)
    params = _read_json(folder / "params.json")
    params.update(overrides)
    args = ModelArgs.from_dict(params)
    try:
        state = torch.load(folder / "consolidated.00.pth", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds here
        raise CheckpointError(f"cannot read {folder / 'consolidated.00.pth'}: {e}") from e
    return load_into(Transformer(args), state, str(folder))


# ----------------------------------------------------------------------------------------------------------------
# Averaging (paper §3.4.3: Polyak averaging of annealing checkpoints; §4.1.5: averaging models of runs with
# different data or hyperparameters at each of the RM, SFT and DPO stages). Runs that start from one checkpoint and
# train briefly stay in one basin, so the average of their weights is itself a good model, often better than each.
# ----------------------------------------------------------------------------------------------------------------
def average_state_dicts(
    state_dicts: Sequence[dict[str, Tensor]], weights: Sequence[float] | None = None
) -> dict[str, Tensor]:
    """Σ_i w_i · θ_i for every floating-point tensor, accumulated in float64 and returned in each tensor's dtype
    (weights default to uniform and are normalised to sum to 1); other tensors are copied from the first."""
    if not state_dicts:
        raise ValueError("nothing to average: pass at least one state dict")
    keys = list(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if list(sd) != keys or any(sd[k].shape != state_dicts[0][k].shape for k in keys):
            raise ValueError(
                f"state dict {i} does not match the first one (names or shapes differ): "
                "average only checkpoints of the same model"
            )
    w = torch.tensor(list(weights) if weights is not None else [1.0] * len(state_dicts), dtype=torch.float64)
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


def average_models(models: Sequence[Transformer], weights: Sequence[float] | None = None) -> Transformer:
    """A new model whose weights are the (weighted) average of `models` (all of one ModelArgs config)."""
    if len({str(m.args.to_dict()) for m in models}) != 1:
        raise ValueError("models to average must share one ModelArgs config")
    avg = copy.deepcopy(models[0])
    avg.load_state_dict(average_state_dicts([m.state_dict() for m in models], weights))
    return avg


def average_checkpoints(folders: Sequence[str | os.PathLike], weights: Sequence[float] | None = None) -> Transformer:
    """Load minillama checkpoints (`save_checkpoint` folders) and return their (weighted) average."""
    return average_models([load_checkpoint(f) for f in folders], weights)
