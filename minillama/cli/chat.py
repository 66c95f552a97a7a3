"""`minillama chat`: chat with a checkpoint that can call tools, or run the scripted CSV demo (`--demo`)."""

from __future__ import annotations

import argparse
import json
import sys

from minillama.assets import TOOLUSE, resolve_checkpoint, shipped_checkpoint, shipped_tokenizer_path
from minillama.chat_format import ChatFormat
from minillama.checkpoint import load_checkpoint
from minillama.tokenizer import BPETokenizer
from minillama.tooluse.agent import Agent, TransformerModel, format_transcript
from minillama.tooluse.demo import csv_demo
from minillama.tooluse.toolbox import Toolbox
from minillama.tooluse.tools.sandbox import detect_isolation
from minillama.tooluse.train import TRAINED_TOOLS
from minillama.utils import set_threads


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minillama chat",
        description="Chat with a model that can call tools "
        "(code interpreter in a sandbox, calculator, local documentation search).",
    )
    p.add_argument("--demo", action="store_true", help="run the scripted CSV example (no model needed)")
    p.add_argument(
        "--model",
        default=str(shipped_checkpoint(TOOLUSE)),
        help="checkpoint folder (default: the shipped tool-use model of chapter 12, minillama/assets/tooluse)",
    )
    p.add_argument("--tokenizer", default=None, help="rank file (default: the shipped course tokenizer)")
    p.add_argument("--prompt", default=None, help="one request; without it, read requests from stdin")
    p.add_argument(
        "--tools",
        default=",".join(TRAINED_TOOLS),
        help="comma-separated built-in tools to enable (default: the ones the shipped model was trained with; "
        "brave_search is available but that model never saw it)",
    )
    p.add_argument("--max-steps", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--timeout", type=float, default=10.0, help="sandbox wall-clock limit per run (s)")
    p.add_argument("--show-isolation", action="store_true", help="print the sandbox isolation level and exit")
    p.add_argument(
        "--allow-unsafe-sandbox",
        action="store_true",
        help="run model-written code even without OS isolation (no bubblewrap or user namespaces): "
        "then your files, the network and your other processes are NOT protected",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.show_isolation:
        print(json.dumps(detect_isolation(), indent=2))
        return 0
    unsafe = {"allow_weak_isolation": True} if args.allow_unsafe_sandbox else {}
    if args.demo:
        result = csv_demo(timeout_s=args.timeout, **unsafe)
        print(format_transcript(result.messages))
        print(f"\n[{result.stop} after {len(result.steps)} model calls]")
        return 0
    set_threads()
    folder = resolve_checkpoint(args.model)
    model = load_checkpoint(folder)
    tok_path = args.tokenizer or (folder / "tokenizer.model" if (folder / "tokenizer.model").is_file() else None)
    if tok_path is None:
        tok_path = shipped_tokenizer_path()
    chat_format = ChatFormat(BPETokenizer.load(str(tok_path)))
    tools = tuple(t for t in args.tools.split(",") if t)
    lm = TransformerModel(model, chat_format, max_new_tokens=args.max_new_tokens)
    requests = [args.prompt] if args.prompt else (line.strip() for line in sys.stdin if line.strip())
    with Toolbox(builtin=tools, timeout_s=args.timeout, **unsafe) as toolbox:
        for request in requests:
            result = Agent(lm, toolbox, max_steps=args.max_steps).run(request)
            print(format_transcript(result.messages))
            print(f"\n[{result.stop} after {len(result.steps)} model calls]\n")
    return 0
