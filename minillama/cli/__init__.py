"""`minillama <command> ...` (or `python -m minillama <command> ...`): the command line for the course's main jobs.

Every command is a `main(argv) -> int` function in this package (`minillama.cli.<module>`), the top layer: it may
import anything, nothing imports it. The grader and the benchmarks keep their own entry points
(`python -m minillama.grade`, `python -m minillama.bench`), which these commands route to.
"""

from __future__ import annotations

import importlib
import os
import sys

#: command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "pretrain": ("minillama.cli.pretrain", "main", "pre-train a small Llama on the CPU (default: the built-in corpus)"),
    "generate": ("minillama.cli.generate", "main", "sample from a checkpoint"),
    "eval": ("minillama.cli.evaluate", "main", "nats/token and bits/byte of a checkpoint on held-out text"),
    "tokenizer": ("minillama.cli.tokenizer", "main", "train a byte-level BPE tokenizer"),
    "data": ("minillama.cli.data", "main", "build, clean, dedup and pack a corpus"),
    "sft": ("minillama.cli.posttrain", "sft_main", "supervised fine-tuning on chat data"),
    "reward": ("minillama.cli.posttrain", "reward_main", "train a reward model on ranked responses"),
    "rejection-sample": ("minillama.cli.posttrain", "rejection_main", "best-of-K sampling scored by a reward model"),
    "dpo": ("minillama.cli.posttrain", "dpo_main", "direct preference optimisation"),
    "posttrain": ("minillama.cli.posttrain", "pipeline_main", "every post-training stage end to end, measured"),
    "chat": ("minillama.cli.chat", "main", "chat with a checkpoint, with tools (--demo: the scripted CSV agent)"),
    "tooluse": ("minillama.cli.tooluse", "main", "train and evaluate a small model that calls tools"),
    "grade": ("minillama.grading.runner", "main", "grade the exercises in ./exercises"),
    "bench": ("minillama.bench.__main__", "main", "speed benchmarks against the references"),
    "parallel-check": ("minillama.cli.parallel_check", "main", "run a parallel layout and compare with one device"),
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
    except KeyboardInterrupt:  # Ctrl-C: no traceback (commands that can save first catch it themselves)
        print(f"\nminillama {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
