"""Benchmarks: `python -m minillama.bench <name>`, each measured side by side with its reference in one run.

Each benchmark is a module here with `main(argv) -> int`. Timings interleave the variants round by round and report
medians and best-of, since a shared 2-core machine is noisy.
"""
