"""What every post-training stage needs: the tokenizer and chat format, the starting model, task prompts, and
small I/O helpers (JSON results, plots). Stage logic lives in sft.py, reward.py, rejection.py, dpo.py."""

from __future__ import annotations

import json
from pathlib import Path

from minillama.assets import resolve_checkpoint, shipped_checkpoint, shipped_tokenizer_path
from minillama.chat_format import ChatFormat
from minillama.checkpoint import load_checkpoint
from minillama.model import ModelArgs, Transformer
from minillama.tokenizer import BPETokenizer

#: The model trained from scratch when no pre-trained checkpoint is given or shipped (about 1M parameters + embeddings).
FRESH_ARGS = dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, multiple_of=32, max_seq_len=256)


def load_chat_format(tokenizer_path: str | Path | None = None):
    """The course BPE tokenizer (shipped by default) wrapped in `minillama.chat_format.ChatFormat`."""
    return ChatFormat(BPETokenizer.load(str(tokenizer_path or shipped_tokenizer_path())))


def load_policy(spec: str | Path | None, vocab_size: int, seed: int = 0) -> tuple[Transformer, str]:
    """The starting model and a description. `spec`: a checkpoint folder, `"fresh"` (a new small model), or None /
    `"auto"` (the shipped pre-trained checkpoint if present, else fresh)."""
    if spec in (None, "auto"):
        shipped = shipped_checkpoint()
        spec = shipped if (shipped / "model.safetensors").is_file() else "fresh"
    if str(spec) == "fresh":
        args = ModelArgs(vocab_size=vocab_size, **FRESH_ARGS)
        return Transformer(args).init_weights(seed=seed), f"fresh {args.dim}x{args.n_layers} model"
    folder = resolve_checkpoint(spec)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{spec} is not a minillama checkpoint folder (no config.json); pass a folder "
            "written by save_checkpoint or a training run, or 'fresh'"
        )
    model = load_checkpoint(folder)
    if model.args.vocab_size < vocab_size:
        raise ValueError(
            f"the checkpoint's vocab_size {model.args.vocab_size} is smaller than the tokenizer's "
            f"{vocab_size}; use the tokenizer it was trained with (--tokenizer)"
        )
    return model, str(folder)


def write_json(path: str | Path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # matplotlib only when a figure is saved: importing pyplot is slow

    plt.close(fig)
    return path
