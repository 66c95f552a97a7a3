"""The exercise tests can tell right from wrong: for each chapter, the reference scores 100%, the untouched stubs
score 0, and every deliberate common mistake (mutant) fails at least one test."""

import pytest

from minillama.grading.impl import chapters
from minillama.grading.runner import self_check


@pytest.mark.parametrize("chapter", chapters())
def test_grader_self_check(chapter, capsys):
    ok = self_check([chapter])
    out = capsys.readouterr().out
    assert ok, out
