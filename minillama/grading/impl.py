"""Which implementation the exercise tests grade: the reference, a learner's file, the stubs, or a mutant.

Specs: `reference`; `exercises` (./exercises of the current directory) or `exercises=DIR`; `stubs` (the untouched
stubs in the repository's exercises/); `mutant:NAME` (the reference with one function replaced by a common mistake).
The grader never imports them into its pytest process: the worker process (`minillama.grading.worker`) calls
`load_impl` for the reference and mutants, and runs a learner's file from the source the trusted side sends.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

from minillama.utils import repo_root


def exercise_file(chapter: str, folder: str | os.PathLike) -> Path:
    return Path(folder) / f"{chapter}.py"


def load_file_module(path: Path, name: str) -> types.ModuleType:
    """Import a Python file fresh (never cached), so each test sees the learner's current code."""
    if not path.exists():
        raise FileNotFoundError(f"no exercise file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(name, None)
    spec.loader.exec_module(module)
    return module


def reference_module(chapter: str) -> types.ModuleType:
    return importlib.import_module(f"minillama.grading.reference.{chapter}")


def answer_key(chapter: str) -> tuple[str, ...]:
    """What a learner's code must not call for `chapter`: the reference module's `ANSWER_KEY` ("pkg.module" or
    "pkg.module:name"); the grader's worker blocks them, and `minillama.grading.reference`, for learner files."""
    try:
        return tuple(reference_module(chapter).ANSWER_KEY)
    except (ModuleNotFoundError, AttributeError):
        return ()


def mutants(chapter: str) -> dict[str, dict]:
    """The chapter's mutants: name -> {function name: wrong function}."""
    try:
        return dict(importlib.import_module(f"minillama.grading.mutants.{chapter}").MUTANTS)
    except ModuleNotFoundError:
        return {}


def load_impl(chapter: str, spec: str = "reference") -> types.SimpleNamespace | types.ModuleType:
    """The namespace whose functions the tests call for `chapter` under `spec`."""
    if spec == "reference":
        return reference_module(chapter)
    if spec == "stubs":
        return load_file_module(exercise_file(chapter, repo_root() / "exercises"), f"stubs_{chapter}")
    if spec == "exercises" or spec.startswith("exercises="):
        folder = spec.partition("=")[2] or os.path.join(os.getcwd(), "exercises")
        return load_file_module(exercise_file(chapter, folder), f"learner_{chapter}")
    if spec.startswith("mutant:"):
        name = spec.partition(":")[2]
        table = mutants(chapter)
        if name not in table:
            raise KeyError(f"{chapter} has no mutant {name!r}; it has {sorted(table)}")
        ref = reference_module(chapter)
        ns = types.SimpleNamespace(**{k: getattr(ref, k) for k in dir(ref) if not k.startswith("__")})
        for fname, fn in table[name].items():
            if not hasattr(ref, fname):
                raise KeyError(f"mutant {name!r} replaces {fname!r}, which {chapter}'s reference lacks")
            setattr(ns, fname, fn)
        return ns
    raise ValueError(f"unknown implementation spec {spec!r}: use reference, exercises[=DIR], stubs or mutant:NAME")


def all_specs(chapter: str) -> list[str]:
    """Every implementation the self-check grades for a chapter."""
    return ["reference", "stubs"] + [f"mutant:{m}" for m in mutants(chapter)]


def tests_dir() -> Path:
    """Where the exercise tests live (`MINILLAMA_EXERCISE_TESTS` overrides, for testing the grader itself)."""
    return Path(os.environ.get("MINILLAMA_EXERCISE_TESTS") or repo_root() / "tests" / "exercises")


def chapters() -> list[str]:
    """Chapters that have exercise tests, in order."""
    folder = tests_dir()
    return sorted(p.stem[len("test_") :] for p in folder.glob("test_ch*.py"))


def resolve_chapters(names: list[str] | None) -> list[str]:
    """Accept 'ch02', '02', '2' or full names; None or [] means every chapter."""
    known = chapters()
    if not names:
        return known
    out = []
    for n in names:
        key = n if n.startswith("ch") else f"ch{int(n):02d}" if n.isdigit() else n
        match = [c for c in known if c == key or c.split("_")[0] == key]
        if not match:
            raise ValueError(f"no exercises for {n!r}; chapters with exercises: {known}")
        out += match
    return out
