"""`minillama <command> ...`: the command line for the course's main jobs.

Each command lives in the module that implements it, as a `main(argv) -> int` function; this file only routes.
"""

from __future__ import annotations

import importlib
import os
import sys

#: command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("minillama.train", "main", "pre-train a small Llama on the CPU (default: the built-in corpus)"),
    "generate": ("minillama.generate", "main", "sample from a checkpoint"),
    "tokenizer": ("minillama.tokenizer.cli", "main", "train a byte-level BPE tokenizer"),
    "data": ("minillama.data.cli", "main", "build, clean, dedup and pack a corpus"),
    "sft": ("minillama.posttrain.sft", "main", "supervised fine-tuning on chat data"),
    "reward": ("minillama.posttrain.reward", "main", "train a reward model on ranked responses"),
    "rejection-sample": ("minillama.posttrain.rejection", "main", "best-of-K sampling scored by a reward model"),
    "dpo": ("minillama.posttrain.dpo", "main", "direct preference optimisation"),
    "chat": ("minillama.tooluse.agent", "main", "chat with a checkpoint, with tools (--demo: the scripted CSV agent)"),
    "tooluse": ("minillama.tooluse.train", "main", "train and evaluate a small model that calls tools"),
    "grade": ("minillama.grading.runner", "main", "grade the exercises in ./exercises"),
    "bench": ("minillama.bench.__main__", "main", "speed benchmarks against the references"),
    "parallel-check": ("minillama.parallel.check", "main", "run a parallel layout and compare with one device"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: minillama <command> [options]\n\ncommands:")
        for name, (_, _, text) in COMMANDS.items():
            print(f"  {name:<18} {text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"minillama: unknown command {name!r}; run `minillama --help`", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:  # bad input: say what, not a traceback
        if os.environ.get("MINILLAMA_DEBUG"):
            raise
        print(f"minillama {name}: error: {e}\n(set MINILLAMA_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
