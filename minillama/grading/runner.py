"""`python -m minillama.grade [chapter ...]`: grade ./exercises, print a score table, write Gradescope's results.json.

The tests run in a child pytest process. A learner's function that hangs is stopped by a per-test timeout (and, if it
hangs in C code, by a watchdog that kills the child); one that crashes the interpreter or calls `os._exit` kills only
the child. Either way that test scores 0, the child is restarted without the tests already graded, and the grader
always finishes and writes its results.

`--self-check` proves the tests can tell right from wrong: for every chapter, the reference must score 100%, the
untouched stubs 0, and each deliberate mistake (mutant) must fail at least one test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from minillama.grading.impl import all_specs, resolve_chapters, tests_dir
from minillama.utils import repo_root

PER_TEST_TIMEOUT_S = 30
WATCHDOG_SLACK_S = 30


def _test_file(chapter: str) -> Path:
    return tests_dir() / f"test_{chapter}.py"


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut by a kill
    return events


def run_tests(chapters: list[str], impl: str, timeout: int = PER_TEST_TIMEOUT_S, log=None) -> list[dict]:
    """Run the chapters' tests against `impl` in child processes; return one result dict per test."""
    files = [str(_test_file(c)) for c in chapters]
    with tempfile.TemporaryDirectory(prefix="minillama-grade-") as tmp:
        results_path = Path(tmp) / "results.jsonl"
        deselect: list[str] = []
        for _attempt in range(200):
            cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                   "-o", "addopts=", "-p", "minillama.grading.plugin", "--impl", impl,
                   "--grade-results", str(results_path), f"--timeout={timeout}", "--timeout-method=signal",
                   "-W", "ignore", "--rootdir", str(repo_root()), "-c", os.devnull]
            for nodeid in deselect:
                cmd += ["--deselect", nodeid]
            env = dict(os.environ, OMP_NUM_THREADS="1", MINILLAMA_PROGRESS="0", PYTHONDONTWRITEBYTECODE="1")
            with open(Path(tmp) / "pytest.log", "ab") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, cwd=os.getcwd(), start_new_session=True)
                killed = _watch(proc, results_path, timeout + WATCHDOG_SLACK_S)
            events = _read_events(results_path)
            done = {e["nodeid"] for e in events if e["event"] == "result"}
            started = [e["nodeid"] for e in events if e["event"] == "start"]
            hung = [n for n in started if n not in done and n not in deselect]
            if proc.returncode in (0, 1, 5) and not killed and not hung:
                break
            if not hung:  # died outside any test (e.g. collection): report and stop
                if log:
                    log(f"pytest exited with code {proc.returncode}; see the log below\n"
                        + (Path(tmp) / "pytest.log").read_text()[-3000:])
                break
            victim = hung[-1]
            why = ("took too long and was stopped" if killed else
                   f"crashed the test process (exit code {proc.returncode})")
            with open(results_path, "a") as f:
                f.write(json.dumps({"event": "result", "nodeid": victim, "passed": False, "points": None,
                                    "reason": why, "impl": impl, "chapter": None, "test": None, "doc": ""}) + "\n")
            deselect = sorted({e["nodeid"] for e in _read_events(results_path) if e["event"] == "result"})
        results = [e for e in _read_events(results_path) if e["event"] == "result"]
    _fill_unknown_points(results)
    return results


def _watch(proc: subprocess.Popen, results_path: Path, stall_s: float) -> bool:
    """Wait for the child; kill its process group if no test finishes for `stall_s` seconds. True if killed."""
    last_size, last_change = -1, time.time()
    while proc.poll() is None:
        size = results_path.stat().st_size if results_path.exists() else 0
        if size != last_size:
            last_size, last_change = size, time.time()
        elif time.time() - last_change > stall_s:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            proc.wait()
            return True
        time.sleep(0.2)
    return False


def _fill_unknown_points(results: list[dict]) -> None:
    """A test killed before it reported has no points/chapter yet: read them from its module by node id."""
    for r in results:
        if r.get("points") is None:
            path, _, rest = r["nodeid"].partition("::")
            r["chapter"] = Path(path).stem[len("test_"):]
            r["test"] = rest  # keeps a parametrized test's id
            r["points"] = _points_of(r["chapter"], rest.split("[")[0])


def _points_of(chapter: str, test_name: str) -> float:
    import importlib.util

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
            lines.append(f"{name[:width]:<{width}} {score:>8}  {'pass' if r['passed'] else 'FAIL':<6}  "
                         f"{'' if r['passed'] else r['reason'][:90]}")
        if len(by_chapter) > 1:
            lines.append(f"{'  ' + chapter + ' subtotal':<{width}} {f'{ch_got:g}/{ch_total:g}':>8}")
        total, got = total + ch_total, got + ch_got
    pct = 100 * got / total if total else 0.0
    lines += ["-" * 116, f"{'total':<{width}} {f'{got:g}/{total:g}':>8}  {pct:.0f}%"]
    return "\n".join(lines)


def gradescope_json(results: list[dict], seconds: float) -> dict:
    tests = []
    for i, r in enumerate(sorted(results, key=lambda r: r["nodeid"]), 1):
        tests.append({"name": f"{r['chapter']}::{r['test']}", "number": str(i),
                      "score": r["points"] if r["passed"] else 0.0, "max_score": r["points"],
                      "status": "passed" if r["passed"] else "failed",
                      "output": r["doc"] + ("" if r["passed"] else f"\n{r['reason']}"),
                      "tags": [r["chapter"]], "visibility": "visible"})
    return {"score": sum(t["score"] for t in tests), "execution_time": round(seconds, 2),
            "output": f"{sum(t['status'] == 'passed' for t in tests)}/{len(tests)} tests passed",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def grade(chapters: list[str] | None = None, exercises: str | None = None, results_json: str | None = "results.json",
          quiet: bool = False, timeout: int = PER_TEST_TIMEOUT_S) -> dict:
    """Grade the learner's exercises; print the table; write results.json; return the Gradescope dict."""
    names = resolve_chapters(chapters)
    folder = Path(exercises or Path.cwd() / "exercises").resolve()
    if not folder.is_dir():
        raise SystemExit(f"no exercises folder at {folder}; run from the repository root or pass --exercises DIR")
    t0 = time.time()
    results = run_tests(names, f"exercises={folder}", timeout=timeout, log=print)
    data = gradescope_json(results, time.time() - t0)
    if not quiet:
        print(score_table(results))
    if results_json:
        Path(results_json).write_text(json.dumps(data, indent=2))
        if not quiet:
            print(f"\nwrote {Path(results_json).resolve()}")
    return data


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
    ap.add_argument("--self-check", action="store_true", help="check the tests: reference 100%%, stubs 0, "
                                                              "every mutant caught")
    a = ap.parse_args(argv)
    if a.self_check:
        return 0 if self_check(a.chapters) else 1
    grade(a.chapters, a.exercises, a.results, timeout=a.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
