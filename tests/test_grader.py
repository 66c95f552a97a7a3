"""The grader survives a learner's worst code and writes a Gradescope results.json all the same."""

import json
import os
import subprocess
import sys
import textwrap

TESTS = '''
import pytest
CHAPTER = "ch97_demo"

@pytest.mark.points(2)
def test_add(impl):
    """add works"""
    assert impl.add(2, 3) == 5

@pytest.mark.points(1)
def test_hangs(impl):
    assert impl.hang() == 1

@pytest.mark.points(1)
def test_exits_process(impl):
    assert impl.hard_exit() == 1

@pytest.mark.points(1)
def test_sys_exit(impl):
    assert impl.soft_exit() == 1

@pytest.mark.points(1)
def test_floods_output(impl):
    assert impl.flood() == 1

@pytest.mark.points(3)
def test_after_the_crashes(impl):
    """still graded after the process died"""
    assert impl.add(1, 1) == 2
'''

LEARNER = '''
import os, sys
def add(a, b):
    return a + b
def hang():
    while True:
        pass
def hard_exit():
    os._exit(3)
def soft_exit():
    sys.exit(0)
def flood():
    print("x" * 3_000_000)
    return 1
'''


def test_grader_survives_hangs_crashes_exits_and_floods(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_ch97_demo.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "ch97_demo.py").write_text(textwrap.dedent(LEARNER))
    env = dict(os.environ, MINILLAMA_EXERCISE_TESTS=str(tests))
    proc = subprocess.run([sys.executable, "-m", "minillama.grade", "ch97", "--timeout", "3"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    by_name = {t["name"].split("::")[1]: t for t in data["tests"]}
    assert set(by_name) == {"test_add", "test_hangs", "test_exits_process", "test_sys_exit", "test_floods_output",
                            "test_after_the_crashes"}
    assert by_name["test_add"]["score"] == 2 and by_name["test_after_the_crashes"]["score"] == 3
    for name in ("test_hangs", "test_exits_process", "test_sys_exit", "test_floods_output"):
        assert by_name[name]["score"] == 0 and by_name[name]["status"] == "failed", name
    assert "took longer than 3 s" in by_name["test_hangs"]["output"]
    assert "crashed" in by_name["test_exits_process"]["output"]
    assert "MB" in by_name["test_floods_output"]["output"]
    assert data["score"] == 5
    assert "total" in proc.stdout and "5/9" in proc.stdout
