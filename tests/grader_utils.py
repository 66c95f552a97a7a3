"""Running the grader as a learner does, for the grader's own tests."""

import json
import subprocess
import sys
from pathlib import Path


def grade_chapter(cwd, chapter: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m minillama.grade CHAPTER` in `cwd` (whose exercises/ holds the learner's files): the process and
    the results.json it wrote."""
    proc = subprocess.run(
        [sys.executable, "-m", "minillama.grade", chapter, *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc, json.loads((Path(cwd) / "results.json").read_text())
