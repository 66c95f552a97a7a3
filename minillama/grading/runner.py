"""`python -m minillama.grade [chapter ...]`: grade ./exercises, print a score table, write Gradescope's results.json.

The trust boundary. Three kinds of process:
  * this grader (trusted): starts pytest, reads its results from an inherited pipe, writes results.json;
  * the pytest child (trusted): runs the exercise tests and compares results; it never imports the learner's file;
  * workers (untrusted): `minillama.grading.worker` runs the exercise functions the tests call through a small RPC
    (`minillama.grading.rpc`) and returns plain values only (numbers, strings, containers, plain tensors/arrays),
    rebuilt by a decoder that never unpickles. In a worker the chapter's answer key is blocked.
So learner code cannot patch pytest, the comparisons or the plugin, and never sees where results go: the pytest child
reports through a pipe fd (not a path in argv or the environment), workers do not inherit it, and both trusted
processes are non-dumpable (PR_SET_DUMPABLE=0: no ptrace, no /proc/PID/fd of theirs; a worker started as root drops
every capability, so this holds for uid 0 too). pytest runs with --noconftest, confcutdir at the tests folder, no
cache, no config file and no plugin autoloading, so no file the learner writes is loaded, and it performs the test
modules' imports before any learner code runs. This grader is a child subreaper: a daemon the learner's code
double-forks re-parents here, and every descendant is killed at the end and on SIGTERM/SIGINT. results.json is removed
at start and written atomically at the end.

A learner's function that hangs is stopped at the per-test timeout (`--timeout`) and its worker killed; one that
crashes or exits kills only its worker. Either way that test scores 0 with a one-line reason and the next test gets a
fresh worker. pytest itself is never restarted (a restart would collect test files the learner's code could have
rewritten): if it is killed, the tests it did not reach score 0. A total budget (`--budget`) bounds the whole run;
tests not reached are "not run (time budget)".

Not covered: workers run as the same user, so they can still write files (the repository, site-packages) and signal
the grader; a worker under another uid or in a read-only mount namespace would close that.

`--self-check` proves the tests can tell right from wrong: for every chapter, the reference must score 100%, the
untouched stubs 0, and each deliberate mistake (mutant) must fail at least one test.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from minillama.grading import rpc
from minillama.grading.impl import all_specs, resolve_chapters, tests_dir
from minillama.utils import atomic_write_text, repo_root

PER_TEST_TIMEOUT_S = 30
TOTAL_BUDGET_S = 15 * 60
WATCHDOG_SLACK_S = 30
NOT_RUN_BUDGET = "not run (time budget)"


def _test_file(chapter: str) -> Path:
    return tests_dir() / f"test_{chapter}.py"


class _Events:
    """JSON lines from the pytest child's results pipe."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.events = fd, b"", []
        os.set_blocking(fd, False)

    def pump(self) -> bool:
        """Read what is there; True if anything arrived."""
        got = False
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return got
            except OSError:
                return got
            if not chunk:
                return got
            got = True
            self.buf += chunk
            *lines, self.buf = self.buf.split(b"\n")
            for line in lines:
                try:
                    event = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(event, dict) and isinstance(event.get("nodeid"), str):
                    self.events.append(event)


@contextlib.contextmanager
def _supervising():
    """Make this process non-dumpable and a child subreaper while grading; kill every new descendant on the way out
    (descendants that existed before, e.g. a notebook's other children, are left alone)."""
    me = os.getpid()
    before = set(rpc._parent_map().get(me, []))
    rpc.prctl(rpc.PR_SET_DUMPABLE, 0)
    reaper = rpc.prctl(rpc.PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        rpc.kill_tree([me], include_roots=False, exclude=before)
        if reaper and not _CLI:
            rpc.prctl(rpc.PR_SET_CHILD_SUBREAPER, 0)
        if not _CLI:
            rpc.prctl(rpc.PR_SET_DUMPABLE, 1)


_CLI = False  # set by main(): the grader process is ours alone, so it stays hardened


def run_tests(
    chapters: list[str], impl: str, timeout: int = PER_TEST_TIMEOUT_S, log=None, budget: float = TOTAL_BUDGET_S
) -> list[dict]:
    """Run the chapters' tests against `impl` in a child pytest; return one result dict per test."""
    files = [str(_test_file(c)) for c in chapters]
    t0 = time.time()
    budget_deadline = t0 + budget
    collected: dict[str, dict] = {}
    results: dict[str, dict] = {}
    with _supervising(), tempfile.TemporaryDirectory(prefix="minillama-grade-") as tmp:
        rfd, wfd = os.pipe()
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *files,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-o",
            "addopts=",
            "-p",
            "minillama.grading.plugin",
            "-p",
            "pytest_timeout",
            "--noconftest",
            "--confcutdir",
            str(tests_dir()),
            "--impl",
            impl,
            "--grade-fd",
            str(wfd),
            f"--grade-timeout={timeout}",
            f"--grade-budget-deadline={budget_deadline}",
            f"--timeout={timeout + WATCHDOG_SLACK_S // 2}",
            "--timeout-method=signal",
            "-W",
            "ignore",
            "--rootdir",
            str(repo_root()),
            "-c",
            os.devnull,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_ADDOPTS", "PYTEST_PLUGINS"))}
        env.update(
            OMP_NUM_THREADS="1", MINILLAMA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"
        )
        for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
            env.setdefault(k, v)  # what the repository's conftest.py set, which --noconftest no longer loads
        events = _Events(rfd)
        try:
            with open(Path(tmp) / "pytest.log", "ab") as out:
                proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=os.getcwd(),
                    start_new_session=True,
                    pass_fds=(wfd,),
                )
                os.close(wfd)
                try:
                    killed = _watch(proc, events, timeout + WATCHDOG_SLACK_S, budget_deadline + WATCHDOG_SLACK_S)
                finally:
                    if proc.poll() is None:
                        _kill_group(proc)
                    rpc.kill_tree([proc.pid])
            events.pump()
        finally:
            os.close(rfd)
        started = []
        for e in events.events:
            if e.get("event") == "collected":
                collected.setdefault(e["nodeid"], e)
            elif e.get("event") == "result" and e["nodeid"] not in results:
                results[e["nodeid"]] = e
            elif e.get("event") == "start":
                started.append(e["nodeid"])
        # No restart: learner code runs in workers, so a pytest that stops early was killed (by the watchdog, or by
        # the learner's code), and a restart would collect test files the learner's code may have rewritten.
        hung = [n for n in started if n not in results]
        if hung:
            why = (
                "took too long and was stopped" if killed else f"crashed the test process (exit code {proc.returncode})"
            )
            results[hung[-1]] = {
                "event": "result",
                "nodeid": hung[-1],
                "passed": False,
                "points": None,
                "reason": why,
                "impl": impl,
                "chapter": None,
                "test": None,
                "doc": "",
            }
        if (proc.returncode not in (0, 1, 5) or killed) and not hung and log:
            log(
                f"pytest exited with code {proc.returncode}; see the log below\n"
                + (Path(tmp) / "pytest.log").read_text(errors="replace")[-3000:]
            )
    out = []
    for nodeid, r in results.items():
        info = collected.get(nodeid, {})
        out.append({**info, **{k: v for k, v in r.items() if v is not None}, "event": "result"})
    for nodeid, info in collected.items():
        if nodeid not in results:
            why = (
                NOT_RUN_BUDGET
                if time.time() >= budget_deadline
                else (f"not run (the test process stopped, exit code {proc.returncode})")
            )
            out.append({**info, "event": "result", "passed": False, "reason": why, "duration": 0.0})
    _fill_unknown_points(out)
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _watch(proc: subprocess.Popen, events: _Events, stall_s: float, hard_deadline: float) -> bool:
    """Wait for the child, reading its results; kill its process group if no event arrives for `stall_s` seconds or
    the total budget is spent. True if killed."""
    last_change = time.time()
    while proc.poll() is None:
        if events.pump():
            last_change = time.time()
        now = time.time()
        if now - last_change > stall_s or now > hard_deadline:
            _kill_group(proc)
            return True
        time.sleep(0.1)
    return False


def _fill_unknown_points(results: list[dict]) -> None:
    """A test killed before it reported has no points/chapter yet: read them from its module by node id."""
    for r in results:
        if r.get("points") is None:
            path, _, rest = r["nodeid"].partition("::")
            r["chapter"] = Path(path).stem[len("test_") :]
            r["test"] = rest  # keeps a parametrized test's id
            r["points"] = _points_of(r["chapter"], rest.split("[")[0])
        r.setdefault("doc", "")


def _points_of(chapter: str, test_name: str) -> float:
    spec = importlib.util.spec_from_file_location(f"_pts_{chapter}", _test_file(chapter))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        marker = [m for m in getattr(getattr(module, test_name), "pytestmark", []) if m.name == "points"]
        return float(marker[0].args[0]) if marker else 1.0
    except Exception:  # noqa: BLE001
        return 1.0


# ---------------------------------------------------------------------- reporting
def score_table(results: list[dict]) -> str:
    """One row per test (test, points, pass/fail, reason), a subtotal per chapter and the total."""
    width = 64
    lines = [f"{'test':<{width}} {'points':>8}  result  reason", "-" * 116]
    by_chapter: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_chapter[r["chapter"]].append(r)
    total = got = 0.0
    for chapter in sorted(by_chapter):
        ch_total = ch_got = 0.0
        for r in sorted(by_chapter[chapter], key=lambda r: r["nodeid"]):
            pts = r["points"]
            ch_total += pts
            ch_got += pts if r["passed"] else 0
            name = f"{chapter.split('_')[0]}::{r['test']}"
            score = f"{pts if r['passed'] else 0:g}/{pts:g}"
            lines.append(
                f"{name[:width]:<{width}} {score:>8}  {'pass' if r['passed'] else 'FAIL':<6}  "
                f"{'' if r['passed'] else r['reason'][:90]}"
            )
        if len(by_chapter) > 1:
            lines.append(f"{'  ' + chapter + ' subtotal':<{width}} {f'{ch_got:g}/{ch_total:g}':>8}")
        total, got = total + ch_total, got + ch_got
    pct = 100 * got / total if total else 0.0
    lines += ["-" * 116, f"{'total':<{width}} {f'{got:g}/{total:g}':>8}  {pct:.0f}%"]
    return "\n".join(lines)


def gradescope_json(results: list[dict], seconds: float) -> dict:
    tests = []
    for i, r in enumerate(sorted(results, key=lambda r: r["nodeid"]), 1):
        tests.append(
            {
                "name": f"{r['chapter']}::{r['test']}",
                "number": str(i),
                "score": r["points"] if r["passed"] else 0.0,
                "max_score": r["points"],
                "status": "passed" if r["passed"] else "failed",
                "output": r["doc"] + ("" if r["passed"] else f"\n{r['reason']}"),
                "tags": [r["chapter"]],
                "visibility": "visible",
            }
        )
    return {
        "score": sum(t["score"] for t in tests),
        "execution_time": round(seconds, 2),
        "output": f"{sum(t['status'] == 'passed' for t in tests)}/{len(tests)} tests passed",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def grade(
    chapters: list[str] | None = None,
    exercises: str | None = None,
    results_json: str | None = "results.json",
    quiet: bool = False,
    timeout: int = PER_TEST_TIMEOUT_S,
    budget: float = TOTAL_BUDGET_S,
) -> dict:
    """Grade the learner's exercises; print the table; write results.json; return the Gradescope dict."""
    names = resolve_chapters(chapters)
    folder = Path(exercises or Path.cwd() / "exercises").resolve()
    if not folder.is_dir():
        raise SystemExit(f"no exercises folder at {folder}; run from the repository root or pass --exercises DIR")
    target = Path(results_json).resolve() if results_json else None
    if target is not None:
        target.unlink(missing_ok=True)  # no stale (or planted) results survive a run that does not finish
    t0 = time.time()
    results = run_tests(names, f"exercises={folder}", timeout=timeout, log=print, budget=budget)
    data = gradescope_json(results, time.time() - t0)
    if not quiet:
        print(score_table(results))
    if target is not None:
        atomic_write_text(target, json.dumps(data, indent=2))
        if not quiet:
            print(f"\nwrote {target}")
    return data


def grade_inline(chapter: str, exercises: str | None = None) -> dict | None:
    """Grade one chapter from a notebook: prints the score table; never raises (unfinished work is normal)."""
    try:
        names = resolve_chapters([chapter])
        folder = Path(exercises or repo_root() / "exercises").resolve()
        results = run_tests(names, f"exercises={folder}", log=print)
        print(score_table(results))
        return gradescope_json(results, 0.0)
    except Exception as e:  # noqa: BLE001 - a notebook cell must not fail because of the learner's code
        print(f"grading {chapter} did not run: {e}")
        return None


def self_check(chapters: list[str] | None = None) -> bool:
    """Reference 100%, stubs 0, every mutant caught. Prints one line per chapter and implementation."""
    ok = True
    for chapter in resolve_chapters(chapters):
        results = run_tests([chapter], "all", log=print)
        by_impl: dict[str, list[dict]] = defaultdict(list)
        for r in results:
            spec = r["impl"] if r["impl"] != "all" else r["nodeid"].rsplit("[", 1)[-1].rstrip("]")
            by_impl[spec].append(r)
        for spec in all_specs(chapter):
            rs = by_impl.get(spec, [])
            passed = sum(r["passed"] for r in rs)
            if spec == "reference":
                good = bool(rs) and passed == len(rs)
                want = "all pass"
            elif spec == "stubs":
                good = bool(rs) and passed == 0
                want = "all fail"
            else:
                good = bool(rs) and passed < len(rs)
                want = "caught"
            ok &= good
            failing = [r["test"] for r in rs if not r["passed"]][:3]
            detail = "" if spec == "reference" else f"  failing: {', '.join(failing)}"
            print(f"{'ok  ' if good else 'BAD '} {chapter:<22} {spec:<40} {passed}/{len(rs)} pass ({want}){detail}")
            if spec == "reference" and not good:
                for r in rs:
                    if not r["passed"]:
                        print(f"       {r['test']}: {r['reason']}")
    print("self-check passed" if ok else "self-check FAILED")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minillama.grade", description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="e.g. ch02 or 02 (default: every chapter)")
    ap.add_argument("--exercises", default=None, help="folder with your chNN_*.py files (default: ./exercises)")
    ap.add_argument("--results", default="results.json", help="where to write Gradescope's results.json")
    ap.add_argument("--timeout", type=int, default=PER_TEST_TIMEOUT_S, help="seconds a test may run")
    ap.add_argument(
        "--budget",
        type=float,
        default=TOTAL_BUDGET_S,
        help="seconds the whole run may take; tests not reached by then score 0",
    )
    ap.add_argument(
        "--self-check", action="store_true", help="check the tests: reference 100%%, stubs 0, every mutant caught"
    )
    a = ap.parse_args(argv)
    global _CLI
    _CLI = True
    rpc.harden_trusted_process(subreaper=True)
    signal.signal(signal.SIGTERM, _stop)  # unwinds through run_tests, which kills every descendant
    if a.self_check:
        return 0 if self_check(a.chapters) else 1
    grade(a.chapters, a.exercises, a.results, timeout=a.timeout, budget=a.budget)
    return 0


def _stop(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
