"""A pytest plugin that grades exercise tests: points per test, which implementation to test, results to the grader.

Options: `--impl SPEC` (reference | exercises[=DIR] | stubs | mutant:NAME | all); `--grade-fd N` (an inherited pipe
the grader reads: one JSON line per collected and per graded test); `--grade-timeout S` (seconds a test's calls into
the implementation may take); `--grade-budget-deadline T` (a time.time() instant after which tests are reported
"not run (time budget)"). A test module opts in by defining `CHAPTER = "chNN_topic"` and using the `impl` fixture;
`@pytest.mark.points(n)` gives its weight. With `--impl all` every test runs once per implementation (the self-check).

The `impl` fixture never imports the implementation into this process: it returns an `rpc.ImplProxy` whose
functions run in a worker process (see `minillama.grading.rpc`), for every spec, so learner code cannot reach
pytest, this plugin or the results pipe. When grading (`--grade-fd`), this process is made non-dumpable (same-uid
processes can neither ptrace it nor open its /proc/PID/fd) and a child subreaper, so orphans the learner's code
leaves behind re-parent here and are killed after each test.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import time
from pathlib import Path

import pytest
import torch

from minillama.grading import rpc
from minillama.grading.impl import all_specs, answer_key, exercise_file, mutants
from minillama.utils import repo_root

MAX_OUTPUT_BYTES = rpc.MAX_OUTPUT_BYTES  # a test whose code prints more than this scores 0
NOT_RUN_BUDGET = "not run (time budget)"


def pytest_addoption(parser):
    group = parser.getgroup("minillama grading")
    group.addoption("--impl", default="reference", help="implementation the exercise tests grade")
    group.addoption("--grade-fd", type=int, default=None, help="write one JSON line per graded test to this fd")
    group.addoption("--grade-timeout", type=float, default=None, help="seconds a test's calls may take")
    group.addoption(
        "--grade-budget-deadline", type=float, default=None, help="time.time() after which tests are not run"
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points the exercise test is worth")
    config._grade_fd = config.getoption("--grade-fd")
    if config._grade_fd is not None:
        os.set_inheritable(config._grade_fd, False)
        rpc.harden_trusted_process(subreaper=True)
        torch.set_num_threads(1)
    rpc.set_budget_deadline(config.getoption("--grade-budget-deadline"))


def pytest_unconfigure(config):
    rpc.pool.close()
    if getattr(config, "_grade_fd", None) is not None:
        rpc.kill_tree([os.getpid()], include_roots=False)


def _chapter(module) -> str | None:
    return getattr(module, "CHAPTER", None)


def pytest_generate_tests(metafunc):
    chapter = _chapter(metafunc.module)
    if chapter and "impl_spec" in metafunc.fixturenames and metafunc.config.getoption("--impl") == "all":
        specs = all_specs(chapter)
        metafunc.parametrize("impl_spec", specs, ids=specs)


@pytest.fixture
def impl_spec(request):
    return request.config.getoption("--impl")


_sources: dict[tuple, dict] = {}


def _load_spec(chapter: str, spec: str) -> tuple[tuple, dict]:
    """The worker key and what the worker loads for `spec`: trusted code by name, a learner's file by its source."""
    if spec == "reference":
        return ("trusted",), {"kind": "trusted"}
    if spec.startswith("mutant:"):
        name = spec.partition(":")[2]
        table = mutants(chapter)
        if name not in table:
            raise KeyError(f"{chapter} has no mutant {name!r}; it has {sorted(table)}")
        return ("trusted",), {"kind": "trusted"}
    if spec == "stubs":
        folder = repo_root() / "exercises"
    elif spec == "exercises" or spec.startswith("exercises="):
        folder = spec.partition("=")[2] or os.path.join(os.getcwd(), "exercises")
    else:
        raise ValueError(f"unknown implementation spec {spec!r}: use reference, exercises[=DIR], stubs or mutant:NAME")
    key = ("learner", spec, chapter)
    if key not in _sources:
        path = exercise_file(chapter, folder)
        if not path.exists():
            raise FileNotFoundError(f"no exercise file {path}")
        _sources[key] = {
            "kind": "learner",
            "module": f"learner_{chapter}",
            "filename": str(path),
            "source": path.read_text(encoding="utf-8", errors="replace"),
            "answer_key": list(answer_key(chapter)),
        }
    return key, _sources[key]


@pytest.fixture
def impl(request, impl_spec):
    """The functions under test for this module's CHAPTER, each run in a worker process."""
    chapter = _chapter(request.module)
    if chapter is None:
        raise RuntimeError("a test module using `impl` must define CHAPTER = 'chNN_topic'")
    key, load = _load_spec(chapter, impl_spec)
    return rpc.ImplProxy(chapter, impl_spec, key, load)


def _record(config, payload: dict) -> None:
    fd = getattr(config, "_grade_fd", None)
    if fd is None:
        return
    data = (json.dumps(payload) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def _item_info(item) -> dict | None:
    marker = item.get_closest_marker("points")
    if marker is None or _chapter(item.module) is None:
        return None
    spec = item.callspec.params.get("impl_spec") if hasattr(item, "callspec") else None
    return {
        "nodeid": item.nodeid,
        "chapter": _chapter(item.module),
        "test": item.name,
        "doc": " ".join((item.function.__doc__ or "").split()),
        "impl": spec or item.config.getoption("--impl"),
        "points": float(marker.args[0] if marker.args else 1),
    }


def pytest_collection_finish(session):
    for item in session.items:
        info = _item_info(item)
        if info is not None:
            _record(session.config, {"event": "collected", **info})
    if getattr(session.config, "_grade_fd", None) is not None:
        _preimport({item.module for item in session.items if _chapter(item.module) is not None})


def _preimport(modules) -> None:
    """Run the imports the test modules make inside functions (transformers, llama_models...) now, before any
    learner code runs: a worker shares this process's uid and could rewrite a module file this process would only
    import later. (Partial: a library's own lazy imports are not covered.)"""
    for module in modules:
        try:
            tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, TypeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for name, attr in targets:
                try:
                    mod = importlib.import_module(name)
                    if attr is not None and attr != "*":
                        getattr(mod, attr, None)  # a lazy module (transformers) imports on attribute access
                except Exception:  # noqa: BLE001, S110 - a missing optional package is the test's business
                    pass


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    info = _item_info(item)
    if info is not None and rpc.deadlines.budget is not None and time.monotonic() >= rpc.deadlines.budget:
        _record(item.config, {"event": "result", **info, "passed": False, "reason": NOT_RUN_BUDGET, "duration": 0.0})
        return True  # not run
    _record(item.config, {"event": "start", "nodeid": item.nodeid, "time": time.time()})
    rpc.set_test_deadline(item.config.getoption("--grade-timeout"))
    return None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    rpc.set_test_deadline(None)
    if getattr(item.config, "_grade_fd", None) is not None:
        rpc.kill_strays([w.proc.pid for w in rpc.pool.all])


def _short_reason(report, doc: str) -> str:
    if report.passed:
        return ""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    if "NotImplementedError" in text:
        return "not implemented yet (NotImplementedError)"
    text = " ".join(text.split())
    text = text.removeprefix("Failed: ")  # pytest.fail(..., pytrace=False) from the RPC: the reason is the message
    if text.startswith("assert") and ("<built-in" in text or "<function" in text or text.startswith("assert False")):
        return f"wrong result: {doc}"[:300]  # a bare assert's repr says nothing to a learner; the test's doc does
    return text[:300]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    info = _item_info(item)
    if info is None:
        return
    if report.when == "call" and report.passed:
        printed = sum(len(text) for title, text in report.sections if title.startswith("Captured"))
        if printed > MAX_OUTPUT_BYTES:
            report.outcome = "failed"
            report.longrepr = f"the code printed {printed / 1e6:.1f} MB (limit {MAX_OUTPUT_BYTES / 1e6:.0f} MB)"
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _record(
            item.config,
            {
                "event": "result",
                **info,
                "passed": bool(report.passed),
                "reason": report.longrepr if isinstance(report.longrepr, str) else _short_reason(report, info["doc"]),
                "duration": report.duration,
            },
        )
