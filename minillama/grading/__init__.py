"""The exercise grader: one set of tests grades any implementation (reference, learner, stubs or a mutant).

Layout for a chapter `chNN_topic`:
    exercises/chNN_topic.py                    stubs the learner fills in
    minillama/grading/reference/chNN_topic.py  the reference, same names and signatures
    minillama/grading/mutants/chNN_topic.py    MUTANTS: common mistakes, each must fail some test
    tests/exercises/test_chNN_topic.py         the tests (CHAPTER = "chNN_topic", fixture `impl`, points marker)

Learners run `python -m minillama.grade chNN`; notebooks call `grade_inline("chNN_topic")`.
"""

from __future__ import annotations

from pathlib import Path


def grade_inline(chapter: str, exercises: str | None = None) -> dict | None:
    """Grade one chapter from a notebook: prints the score table; never raises (unfinished work is normal)."""
    from minillama.grading.impl import resolve_chapters
    from minillama.grading.runner import gradescope_json, run_tests, score_table
    from minillama.utils import repo_root

    try:
        names = resolve_chapters([chapter])
        folder = Path(exercises or repo_root() / "exercises").resolve()
        results = run_tests(names, f"exercises={folder}", log=print)
        print(score_table(results))
        return gradescope_json(results, 0.0)
    except Exception as e:  # noqa: BLE001 - a notebook cell must not fail because of the learner's code
        print(f"grading {chapter} did not run: {e}")
        return None
