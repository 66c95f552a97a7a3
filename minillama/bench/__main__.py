"""`python -m minillama.bench <name> [options]`: run one benchmark module of `minillama.bench`."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import minillama.bench as pkg


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in names:
        print(f"usage: python -m minillama.bench {{{','.join(names)}}} [options]")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    return int(importlib.import_module(f"minillama.bench.{argv[0]}").main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
