"""`minillama tokenizer`: train a byte-level BPE with Llama 3's split pattern and specials, and save it in Meta's
`tokenizer.model` format (paper §3.2).

    minillama tokenizer train stdlib --vocab-size 8192 --out tok8k.model
    minillama tokenizer train notes/*.txt --vocab-size 4096 --out tok.model
    minillama tokenizer encode --model tok8k.model "Hello world"    # (default model: the real Llama 3 one)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from minillama.tokenizer.bpe import BPETokenizer
from minillama.tokenizer.corpus import stdlib_files, stdlib_text
from minillama.tokenizer.llama3 import Llama3Tokenizer
from minillama.tokenizer.specials import SPECIAL_TOKENS
from minillama.tokenizer.train import train_bpe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillama tokenizer", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a BPE and save it")
    t.add_argument(
        "inputs",
        nargs="+",
        help="text files, folders (all files inside), or 'stdlib' (the Python standard library's source)",
    )
    t.add_argument("--vocab-size", type=int, default=8192, help="ranks + 256 special tokens (default 8192)")
    t.add_argument("--max-bytes", type=int, default=None, help="use at most this many bytes of 'stdlib'")
    t.add_argument("--no-specials", action="store_true", help="no special tokens: all ids are ranks")
    t.add_argument("--out", required=True, help="where to write the tokenizer.model file")
    e = sub.add_parser("encode", help="print the token ids of a text")
    e.add_argument("text")
    e.add_argument("--model", default=None, help="tokenizer.model file (default: the real Llama 3 one)")
    e.add_argument("--allow-special", action="store_true", help="encode special-token text as special tokens")
    return p


def _corpus(inputs: list[str], max_bytes: int | None) -> list:
    docs: list = []
    for item in inputs:
        if item == "stdlib":
            docs.append(stdlib_text(max_bytes) if max_bytes else None)
            if docs[-1] is None:
                docs.pop()
                docs.extend(stdlib_files())
            continue
        path = Path(item)
        if path.is_dir():
            docs.extend(sorted(f for f in path.rglob("*") if f.is_file()))
        elif path.is_file():
            docs.append(path)
        else:
            raise ValueError(f"input {item!r} is neither a file, a folder nor 'stdlib'")
    return docs


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            out = Path(args.out)
            if out.is_dir():
                raise ValueError(f"--out {out} is a folder; give a file name such as {out / 'tokenizer.model'}")
            specials = () if args.no_specials else SPECIAL_TOKENS
            t0 = time.perf_counter()
            tok = train_bpe(_corpus(args.inputs, args.max_bytes), args.vocab_size, special_tokens=specials)
            tok.save(out)
            print(f"trained {tok!r} in {time.perf_counter() - t0:.1f} s -> {out}")
        else:
            tok = Llama3Tokenizer() if args.model is None else BPETokenizer.load(args.model)
            ids = tok.encode(args.text, allowed_special="all" if args.allow_special else frozenset())
            print(ids)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
