"""`minillama generate --checkpoint DIR --prompt TEXT`: sample from a checkpoint saved by minillama."""

from __future__ import annotations

import argparse
import sys

from minillama.assets import DEFAULT_MODEL, resolve_checkpoint, shipped_checkpoint
from minillama.checkpoint import load_checkpoint
from minillama.generate import generate
from minillama.tokenizer import BPETokenizer


def main(argv: list[str] | None = None) -> int:
    """`minillama generate --checkpoint DIR --prompt TEXT`: sample from a checkpoint saved by minillama."""
    ap = argparse.ArgumentParser(
        prog="minillama generate", description=main.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument(
        "--checkpoint",
        default=str(shipped_checkpoint(DEFAULT_MODEL)),
        help="folder with config.json, model.safetensors and tokenizer.model (or a run folder that "
        "holds one in checkpoint/)",
    )
    ap.add_argument(
        "--prompt",
        default="def",
        help="text to continue (a trailing space becomes its own token, "
        "which the model rarely saw after a word: prefer 'def')",
    )
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    folder = resolve_checkpoint(a.checkpoint)  # a run folder `minillama pretrain --out` writes, or a checkpoint
    model = load_checkpoint(folder)
    tok = BPETokenizer.load(folder / "tokenizer.model")
    prompt = tok.encode(a.prompt, bos=True)
    out = generate(model, [prompt], a.max_new_tokens, a.temperature, a.top_p, stop_tokens=tok.stop_tokens, seed=a.seed)[
        0
    ]
    sys.stdout.write(a.prompt + tok.decode(out) + "\n")
    return 0
