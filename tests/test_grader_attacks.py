"""Attacks on the grader from a learner's exercise file (issue 13): none of them may forge a grade.

Each test writes a tiny demo chapter (tests + a learner file whose honest part earns 2 of 10 points), adds one attack
to the learner file, runs `python -m minillama.grade` in a fresh folder and checks that the forged tests score 0, the
honest test still scores, no process the learner started is left alive, and no stale or forged results.json remains.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.grader_utils import grade_chapter

TESTS = '''
import pytest
import torch

CHAPTER = "ch97_demo"


@pytest.mark.points(2)
def test_add(impl):
    """honest: the learner implements this one"""
    assert impl.add(2, 3) == 5


@pytest.mark.points(3)
def test_double(impl):
    """doubles a tensor"""
    torch.testing.assert_close(impl.double(torch.ones(3)), torch.full((3,), 2.0))
    assert torch.equal(impl.double(torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))


@pytest.mark.points(5)
def test_secret(impl):
    """the answer only the reference knows"""
    assert impl.secret(3) == 42
'''

HONEST = """
import os
import torch

with open({pids!r}, "a") as _f:  # every process that loads this file leaves its pid for the test to check
    _f.write(f"{{os.getpid()}}\\n")


def add(a, b):
    return a + b


def double(x):
    raise NotImplementedError


def secret(x):
    raise NotImplementedError
"""

HONEST_SCORES = {"test_add": 2.0, "test_double": 0.0, "test_secret": 0.0}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def pids_in(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


class Demo:
    """A demo chapter in tmp_path: tests/, exercises/, the grader's cwd, and files the attacks leave behind."""

    def __init__(self, tmp_path: Path, attack: str, tests: str = TESTS):
        self.root = tmp_path
        self.tests = tmp_path / "repo" / "tests"
        self.tests.mkdir(parents=True)
        (self.tests / "test_ch97_demo.py").write_text(textwrap.dedent(tests))
        self.cwd = tmp_path / "repo"
        (self.cwd / "exercises").mkdir()
        self.pids = tmp_path / "pids.txt"
        self.marker = tmp_path / "marker.txt"
        self.results = self.cwd / "results.json"
        fmt = {
            "pids": str(self.pids),
            "marker": str(self.marker),
            "results": str(self.results),
            "tests": str(self.tests),
            "above": str(tmp_path),
        }
        code = textwrap.dedent(HONEST).format(**fmt) + textwrap.dedent(attack).replace("{{", "{").replace(
            "}}", "}"
        ).replace("MARKER", repr(fmt["marker"])).replace("RESULTS", repr(fmt["results"])).replace(
            "TESTS_DIR", repr(fmt["tests"])
        ).replace("ABOVE", repr(fmt["above"]))
        (self.cwd / "exercises" / "ch97_demo.py").write_text(code)
        self.env = dict(os.environ, MINILLAMA_EXERCISE_TESTS=str(self.tests))

    def command(self, *extra: str) -> list[str]:
        # 8 s per test: a loaded machine (the full suite beside a training run) took over 3 s to start a worker
        return [sys.executable, "-m", "minillama.grade", "ch97", "--timeout", "8", *extra]

    def grade(self, *extra: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess, dict | None, float]:
        t0 = time.time()
        proc = subprocess.run(
            self.command(*extra),
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        elapsed = time.time() - t0
        data = json.loads(self.results.read_text()) if self.results.exists() else None
        return proc, data, elapsed

    def leftovers(self) -> list[int]:
        deadline = time.time() + 3  # a killed process may take a moment to be reaped
        while True:
            left = [p for p in set(pids_in(self.pids) + pids_in(self.marker)) if alive(p)]
            if not left or time.time() > deadline:
                return left
            time.sleep(0.1)


def scores(data: dict) -> dict[str, float]:
    return {t["name"].split("::")[1]: t["score"] for t in data["tests"]}


def outputs(data: dict) -> dict[str, str]:
    return {t["name"].split("::")[1]: t["output"] for t in data["tests"]}


def check_honest_only(demo: Demo, proc, data) -> None:
    assert data is not None, proc.stdout + proc.stderr
    assert scores(data) == HONEST_SCORES, (scores(data), proc.stdout[-3000:], proc.stderr[-3000:])
    assert data["score"] == 2
    assert demo.leftovers() == []


# ---------------------------------------------------------------------- verdict rewriting inside pytest
def test_patched_comparisons_and_equal_to_anything(tmp_path):
    """torch.testing.assert_close / torch.allclose / torch.equal / numpy.testing patched, results that equal
    anything: the comparisons run in another process, and such an object cannot come back."""
    demo = Demo(
        tmp_path,
        """
        import numpy, numpy.testing, torch.testing
        torch.testing.assert_close = lambda *a, **k: None
        torch.allclose = lambda *a, **k: True
        torch.equal = lambda *a, **k: True
        numpy.testing.assert_allclose = lambda *a, **k: None

        class Anything(torch.Tensor):
            def __eq__(self, other):
                return True

            __ne__ = lambda self, other: False
            __bool__ = lambda self: True

        class Whatever:
            __eq__ = lambda self, other: True

        def double(x):
            return torch.zeros(3).as_subclass(Anything)

        def secret(x):
            return Whatever()
    """,
    )
    proc, data, _ = demo.grade()
    check_honest_only(demo, proc, data)
    assert "plain values" in outputs(data)["test_secret"]


def test_wrapped_test_report(tmp_path):
    """_pytest.reports.TestReport.from_item_and_call wrapped to turn every report into a pass."""
    demo = Demo(
        tmp_path,
        """
        import _pytest.reports as _reports
        _orig = _reports.TestReport.from_item_and_call.__func__

        def _forged(cls, item, call):
            rep = _orig(cls, item, call)
            rep.outcome, rep.longrepr = "passed", None
            return rep

        _reports.TestReport.from_item_and_call = classmethod(_forged)
    """,
    )
    check_honest_only(demo, *demo.grade()[:2])


def test_hookwrapper_registered_through_the_plugin_manager(tmp_path):
    """A trylast pytest_runtest_makereport hookwrapper registered on the Config found with gc or sys.modules."""
    demo = Demo(
        tmp_path,
        """
        import gc, sys
        import pytest

        class _Forge:
            @pytest.hookimpl(hookwrapper=True, trylast=True)
            def pytest_runtest_makereport(self, item, call):
                outcome = yield
                rep = outcome.get_result()
                rep.outcome, rep.longrepr = "passed", None

        _configs = [o for o in gc.get_objects() if type(o).__name__ == "Config"]
        for _m in list(sys.modules.values()):
            try:
                _configs.append(_m.config)
            except Exception:
                pass
        for _cfg in _configs:
            try:
                pm = _cfg.pluginmanager
                if not pm.has_plugin("forge"):
                    pm.register(_Forge(), "forge")
            except Exception:
                pass
    """,
    )
    check_honest_only(demo, *demo.grade()[:2])


def test_replaced_record_function(tmp_path):
    """minillama.grading.plugin._record replaced (found in sys.modules) to mark every result passed."""
    demo = Demo(
        tmp_path,
        """
        import sys
        _plugin = sys.modules.get("minillama.grading.plugin")
        if _plugin is None:
            import minillama.grading.plugin as _plugin
        _orig_record = _plugin._record

        def _record(config, payload):
            if payload.get("event") == "result":
                payload.update(passed=True, reason="")
            _orig_record(config, payload)

        _plugin._record = _record
    """,
    )
    check_honest_only(demo, *demo.grade()[:2])


def test_forged_lines_in_the_results_channel_then_exit(tmp_path):
    """Forged "passed" lines appended to the --grade-results path (from sys.argv or /proc/<ancestor>/cmdline) or to
    any file descriptor of an ancestor, then os._exit(0)."""
    demo = Demo(
        tmp_path,
        """
        import json, sys

        def _ancestors():
            pid, out = os.getpid(), []
            for _ in range(6):
                try:
                    pid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    break
                if pid <= 1:
                    break
                out.append(pid)
            return out

        def _forge():
            args = list(sys.argv)
            for pid in _ancestors():
                try:
                    args += open(f"/proc/{{pid}}/cmdline", "rb").read().decode().split("\\0")
                except OSError:
                    pass
            paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--grade-results"]
            grading = []  # the processes that grade, up to `python -m minillama.grade` (not the test run above it)
            for pid in _ancestors():
                grading.append(pid)
                try:
                    if b"minillama.grade" in open(f"/proc/{{pid}}/cmdline", "rb").read():
                        break
                except OSError:
                    pass
            for pid in grading:
                try:
                    paths += [f"/proc/{{pid}}/fd/{{fd}}" for fd in os.listdir(f"/proc/{{pid}}/fd")]
                except OSError:
                    pass
            prefix = None
            for p in paths:
                if not os.path.isfile(p):
                    continue
                try:
                    for line in open(p):
                        if '"nodeid"' in line:
                            prefix = json.loads(line)["nodeid"].split("::")[0]
                except Exception:
                    pass
            prefix = prefix or str(TESTS_DIR) + "/test_ch97_demo.py"
            lines = "".join(json.dumps({{"event": "result", "nodeid": f"{{prefix}}::{{n}}", "chapter": "ch97_demo",
                                         "test": n, "doc": "", "impl": "exercises", "points": pts, "passed": True,
                                         "reason": "", "duration": 0.0}}) + "\\n"
                            for n, pts in (("test_add", 2.0), ("test_double", 3.0), ("test_secret", 5.0)))
            for p in set(paths):
                try:
                    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
                    os.write(fd, lines.encode())
                    os.close(fd)
                except Exception:
                    pass

        def secret(x):
            _forge()
            os._exit(0)
    """,
    )
    check_honest_only(demo, *demo.grade()[:2])


def test_reference_import_is_refused(tmp_path):
    """`from minillama.grading.reference.<chapter> import *` (and the package's answer-key module) inside the
    learner's function: a clear error, 0 points."""
    demo = Demo(
        tmp_path,
        """
        def double(x):
            from minillama.grading.reference.ch02_architecture import rms_norm  # noqa: F401
            return x * 2

        def secret(x):
            import minillama.grading.reference.ch00_the_herd as ref
            return 42 if ref else 0
    """,
    )
    proc, data, _ = demo.grade()
    check_honest_only(demo, proc, data)
    assert "must not call the reference implementation" in outputs(data)["test_secret"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "learner_file",
    [
        "from minillama.grading.reference.ch00_the_herd import *  # noqa: F401,F403\n",
        # the package functions the exercise re-implements, from their module and from the package's re-export
        "from minillama.herd import parameter_count as count_parameters  # noqa: F401\n"
        "from minillama.model.kv_cache import kv_cache_bytes  # noqa: F401\n",
        "from minillama.herd import parameter_count as count_parameters  # noqa: F401\n"
        "from minillama.model import kv_cache_bytes  # noqa: F401\n",
    ],
    ids=["reference", "package-module", "package-re-export"],
)
def test_answer_key_of_a_real_chapter_is_refused(tmp_path, learner_file):
    """Chapter 00 with the reference, or the package's answer key, re-exported: every test scores 0 and says why."""
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "ch00_the_herd.py").write_text(learner_file)
    proc, data = grade_chapter(tmp_path, "ch00", "--timeout", "60")
    assert data["score"] == 0 and data["tests"], proc.stdout
    assert all("must not call the reference implementation" in t["output"] for t in data["tests"]), proc.stdout


# ---------------------------------------------------------------------- processes that outlive the grader
def test_double_forked_daemon_cannot_rewrite_results(tmp_path):
    """A daemon (fork, setsid, fork) that keeps rewriting results.json after the grader exits is killed with it."""
    demo = Demo(
        tmp_path,
        """
        import json, time

        def _daemon():
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    with open(MARKER, "a") as f:
                        f.write(f"{{os.getpid()}}\\n")
                    forged = {{"score": 10.0, "tests": [{{"name": f"ch97_demo::{{n}}", "score": s}}
                                                      for n, s in (("test_add", 2.0), ("test_double", 3.0),
                                                                   ("test_secret", 5.0))]}}
                    for _ in range(300):
                        time.sleep(0.1)
                        try:
                            with open(RESULTS, "w") as f:
                                json.dump(forged, f)
                        except OSError:
                            pass
                os._exit(0)

        def secret(x):
            _daemon()
            raise NotImplementedError
    """,
    )
    proc, data, _ = demo.grade()
    assert pids_in(demo.marker), "the attack did not start its daemon"
    assert demo.leftovers() == []
    time.sleep(1.0)  # a surviving daemon would rewrite results.json within 0.1 s
    data = json.loads(demo.results.read_text())
    check_honest_only(demo, proc, data)


HANGING_CHILD = """
    import signal, time

    def secret(x):
        if os.fork() == 0:
            os.setsid()  # out of the worker's process group
            for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, signal.SIG_IGN)
            with open(MARKER, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            while True:
                time.sleep(0.05)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            pass
"""


def test_child_ignoring_signals_is_killed_at_the_end(tmp_path):
    """A child that ignores SIGALRM/SIGTERM and hangs: the test scores 0 and the child is dead when grading ends."""
    demo = Demo(tmp_path, HANGING_CHILD)
    proc, data, _ = demo.grade()
    assert pids_in(demo.marker)
    check_honest_only(demo, proc, data)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_grader_stopped_by_a_signal_leaves_nothing(tmp_path, sig):
    """The grader stopped with SIGTERM/SIGINT mid-run kills every descendant (also one ignoring signals) and
    leaves no results.json (a stale, forged one from before is removed at start)."""
    demo = Demo(tmp_path, HANGING_CHILD)
    demo.results.write_text(json.dumps({"score": 10.0, "tests": []}))
    grader = subprocess.Popen(
        demo.command("--timeout", "60"),
        cwd=demo.cwd,
        env=demo.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while not pids_in(demo.marker) and time.time() < deadline:
            time.sleep(0.1)
        assert pids_in(demo.marker), "the learner's child never started"
        time.sleep(0.3)
        grader.send_signal(sig)
        grader.wait(timeout=20)
    finally:
        if grader.poll() is None:
            grader.kill()
    assert demo.leftovers() == []
    assert not demo.results.exists()


# ---------------------------------------------------------------------- the tests folder and configuration
def test_conftest_written_by_the_learner_is_never_loaded(tmp_path):
    """conftest.py written into the tests folder and into a folder above it: not loaded in this run or the next."""
    demo = Demo(
        tmp_path,
        """
        _CONFTEST = ("import pytest\\n\\n@pytest.hookimpl(hookwrapper=True, trylast=True)\\n"
                     "def pytest_runtest_makereport(item, call):\\n    outcome = yield\\n"
                     "    rep = outcome.get_result()\\n    rep.outcome, rep.longrepr = 'passed', None\\n")
        for _folder in (TESTS_DIR, ABOVE, os.path.dirname(TESTS_DIR)):
            try:
                with open(os.path.join(_folder, "conftest.py"), "w") as _f:
                    _f.write(_CONFTEST)
            except OSError:
                pass
    """,
    )
    check_honest_only(demo, *demo.grade()[:2])
    assert (demo.tests / "conftest.py").exists() and (tmp_path / "conftest.py").exists()
    check_honest_only(demo, *demo.grade()[:2])  # the next run


# ---------------------------------------------------------------------- budgets
MANY_TESTS = """
import pytest

CHAPTER = "ch97_demo"


@pytest.mark.points(1)
@pytest.mark.parametrize("i", range(12))
def test_many(impl, i):
    assert impl.add(i, 1) == i + 1
"""


def test_exit_at_import_is_fast(tmp_path):
    """os._exit(0) while the file is imported: every test scores 0 with the reason, without a restart per test."""
    demo = Demo(tmp_path, "os._exit(0)\n", tests=MANY_TESTS)
    proc, data, elapsed = demo.grade()
    assert data is not None, proc.stdout + proc.stderr
    assert data["score"] == 0 and len(data["tests"]) == 12
    assert all("exited while being imported (exit code 0)" in t["output"] for t in data["tests"]), proc.stdout
    assert elapsed < 25, elapsed
    assert demo.leftovers() == []


HANG_TESTS = """
import pytest

CHAPTER = "ch97_demo"


@pytest.mark.points(1)
@pytest.mark.parametrize("i", range(20))
def test_hangs(impl, i):
    assert impl.hang(i) == i
"""


def test_every_test_hangs_within_the_total_budget(tmp_path):
    """20 tests that all hang, 2 s per test, a budget of 8 s: the grader ends within the budget (plus start-up),
    the tests it could not reach are reported "not run (time budget)", all score 0."""
    demo = Demo(
        tmp_path,
        """
        def hang(i):
            while True:
                pass
    """,
        tests=HANG_TESTS,
    )
    proc, data, elapsed = demo.grade("--timeout", "2", "--budget", "8")
    assert data is not None, proc.stdout + proc.stderr
    assert data["score"] == 0 and len(data["tests"]) == 20
    reasons = [t["output"] for t in data["tests"]]
    assert any("not run (time budget)" in r for r in reasons), reasons
    assert any("took longer than 2 s" in r for r in reasons), reasons
    assert elapsed < 8 + 15, elapsed
    assert demo.leftovers() == []


MEMORY_TESTS = """
import pytest

CHAPTER = "ch97_demo"


@pytest.mark.points(1)
def test_address_space_is_capped(impl):
    assert 0 < impl.limit() <= 16 * 2**30


@pytest.mark.points(1)
def test_hog(impl):
    assert impl.hog() == 1


@pytest.mark.points(1)
def test_add_after_the_hog(impl):
    assert impl.add(1, 1) == 2
"""


def test_memory_is_capped_per_worker(tmp_path):
    """The worker runs under an address-space limit: asking for 40 GiB fails that test only (MemoryError)."""
    demo = Demo(
        tmp_path,
        """
        import resource

        def limit():
            return resource.getrlimit(resource.RLIMIT_AS)[0]

        def hog():
            return len(bytearray(40 * 2**30)) and 1
    """,
        tests=MEMORY_TESTS,
    )
    proc, data, _ = demo.grade()
    assert data is not None, proc.stdout + proc.stderr
    assert scores(data) == {"test_address_space_is_capped": 1.0, "test_hog": 0.0, "test_add_after_the_hog": 1.0}
    assert "MemoryError" in outputs(data)["test_hog"]
