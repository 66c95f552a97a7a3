"""A pytest plugin that grades exercise tests: points per test, which implementation to test, results as JSON lines.

Options: `--impl SPEC` (reference | exercises[=DIR] | stubs | mutant:NAME | all) and `--grade-results FILE`.
A test module opts in by defining `CHAPTER = "chNN_topic"` and using the `impl` fixture; `@pytest.mark.points(n)`
gives its weight. With `--impl all` every test runs once per implementation (the grader's self-check).
"""

from __future__ import annotations

import json
import os
import time

import pytest

from minillama.grading.impl import all_specs, load_impl

MAX_OUTPUT_BYTES = 1_000_000  # a test whose code prints more than this scores 0


def pytest_addoption(parser):
    group = parser.getgroup("minillama grading")
    group.addoption("--impl", default="reference", help="implementation the exercise tests grade")
    group.addoption("--grade-results", default=None, help="append one JSON line per graded test to this file")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points the exercise test is worth")
    config._grade_file = config.getoption("--grade-results")


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


@pytest.fixture
def impl(request, impl_spec):
    """The functions under test for this module's CHAPTER."""
    chapter = _chapter(request.module)
    if chapter is None:
        raise RuntimeError("a test module using `impl` must define CHAPTER = 'chNN_topic'")
    return load_impl(chapter, impl_spec)


def _record(config, payload: dict) -> None:
    path = config._grade_file
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(payload) + "\n")
            f.flush()
            os.fsync(f.fileno())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _record(item.config, {"event": "start", "nodeid": item.nodeid, "time": time.time()})


def _short_reason(report, doc: str) -> str:
    if report.passed:
        return ""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    if "NotImplementedError" in text:
        return "not implemented yet (NotImplementedError)"
    text = " ".join(text.split())
    if text.startswith("assert") and ("<built-in" in text or "<function" in text or text.startswith("assert False")):
        return f"wrong result: {doc}"[:300]  # a bare assert's repr says nothing to a learner; the test's doc does
    return text[:300]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("points")
    if marker is None or _chapter(item.module) is None:
        return
    if report.when == "call" and report.passed:
        printed = sum(len(text) for title, text in report.sections if title.startswith("Captured"))
        if printed > MAX_OUTPUT_BYTES:
            report.outcome = "failed"
            report.longrepr = f"the code printed {printed / 1e6:.1f} MB (limit {MAX_OUTPUT_BYTES / 1e6:.0f} MB)"
    if report.when == "call" or (report.when == "setup" and not report.passed):
        spec = item.callspec.params.get("impl_spec") if hasattr(item, "callspec") else None
        doc = " ".join((item.function.__doc__ or "").split())
        _record(item.config, {
            "event": "result", "nodeid": item.nodeid, "chapter": _chapter(item.module),
            "test": item.name, "doc": doc,
            "impl": spec or item.config.getoption("--impl"),
            "points": float(marker.args[0] if marker.args else 1), "passed": bool(report.passed),
            "reason": report.longrepr if isinstance(report.longrepr, str) else _short_reason(report, doc),
            "duration": report.duration,
        })
