"""The grader survives a learner's worst code and writes a Gradescope results.json all the same."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.grader_utils import grade_chapter

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

LEARNER = """
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
"""


def test_grader_survives_hangs_crashes_exits_and_floods(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_ch97_demo.py").write_text(textwrap.dedent(TESTS))
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "ch97_demo.py").write_text(textwrap.dedent(LEARNER))
    env = dict(os.environ, MINILLAMA_EXERCISE_TESTS=str(tests))
    proc = subprocess.run(
        [sys.executable, "-m", "minillama.grade", "ch97", "--timeout", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    by_name = {t["name"].split("::")[1]: t for t in data["tests"]}
    assert set(by_name) == {
        "test_add",
        "test_hangs",
        "test_exits_process",
        "test_sys_exit",
        "test_floods_output",
        "test_after_the_crashes",
    }
    assert by_name["test_add"]["score"] == 2 and by_name["test_after_the_crashes"]["score"] == 3
    for name in ("test_hangs", "test_exits_process", "test_sys_exit", "test_floods_output"):
        assert by_name[name]["score"] == 0 and by_name[name]["status"] == "failed", name
    assert "took longer than 3 s" in by_name["test_hangs"]["output"]
    assert "crashed" in by_name["test_exits_process"]["output"]
    assert "MB" in by_name["test_floods_output"]["output"]
    assert data["score"] == 5
    assert "total" in proc.stdout and "5/9" in proc.stdout


HONEST_CH04 = """
import torch


def kv_cache_update(cache_k, cache_v, k, v, start_pos):
    b, s = k.shape[:2]
    cache_k[:b, start_pos:start_pos + s] = k
    cache_v[:b, start_pos:start_pos + s] = v
    return cache_k[:b, :start_pos + s], cache_v[:b, :start_pos + s]


def sample_top_p(probs, p, generator=None):
    raise NotImplementedError("Exercise 4.2")


def next_token(logits, temperature, top_p, generator=None):
    raise NotImplementedError("Exercise 4.3")


@torch.no_grad()
def greedy_generate(model, prompt, max_new_tokens, stop_tokens=()):
    model.setup_cache(1, len(prompt) + max_new_tokens)
    logits = model(torch.tensor([list(prompt)]), 0)
    out, pos = [], len(prompt)
    for _ in range(max_new_tokens):
        nxt = int(logits[0, -1].argmax())
        if nxt in stop_tokens:
            break
        out.append(nxt)
        logits = model(torch.tensor([[nxt]]), pos)
        pos += 1
    return out
"""


@pytest.mark.slow
def test_honest_learner_code_grades_through_the_worker(tmp_path):
    """A learner's own chapter-04 code: writes into the test's cache tensors come back (in-place semantics), the test's
    model reaches the worker by value (its modules unpickle although the answer key's KVCache is blocked there), and
    unfinished functions say "not implemented yet"."""
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "ch04_inference.py").write_text(HONEST_CH04)
    proc, data = grade_chapter(tmp_path, "ch04")
    status = {t["name"].split("::")[1]: t["status"] for t in data["tests"]}
    for name, s in status.items():
        want = "passed" if name.startswith(("test_kv_cache", "test_greedy")) else "failed"
        assert s == want, (name, proc.stdout)
    assert all("not implemented yet" in t["output"] for t in data["tests"] if t["status"] == "failed")


def test_decoder_accepts_plain_values_only():
    """The worker's replies are rebuilt, never unpickled: plain tensors, numeric arrays, containers; no objects."""
    import numpy as np
    import torch

    from minillama.grading import rpc
    from minillama.grading.worker import encode

    value = {
        "t": torch.arange(6.0).reshape(2, 3)[:, 1:],
        "b": torch.tensor([True, False]),
        "h": torch.ones(2).bfloat16(),
        "a": np.arange(4, dtype=np.uint32),
        "s": {(1, 2)},
        "n": np.float32(1.5),
        "x": [None, 1, 2.5, "s", b"y"],
    }
    blobs: list[bytes] = []
    tree = encode(value, {}, blobs)
    back = rpc.decode(*rpc.unpack_message(rpc.pack_message(tree, blobs)))
    assert type(back["t"]) is torch.Tensor and torch.equal(back["t"], value["t"])
    assert back["b"].dtype == torch.bool and back["h"].dtype == torch.bfloat16
    assert back["a"].dtype == np.uint32 and back["a"].tolist() == [0, 1, 2, 3]
    assert back["s"] == {(1, 2)} and back["n"] == np.float32(1.5) and back["x"] == value["x"]

    class Anything(torch.Tensor):
        def __eq__(self, other):
            return True

    blobs = []
    tree = encode(torch.zeros(2).as_subclass(Anything), {}, blobs)
    assert type(rpc.decode(tree, blobs)) is torch.Tensor  # a subclass comes back as a plain tensor
    with pytest.raises(TypeError, match="plain values"):
        encode(object(), {}, [])
    for bad in (["T", "float32", [3], 0], ["A", "|O", [1], 0], ["P", "os.system"], ["r", 0], ["i", True], "x"):
        with pytest.raises(rpc.DecodeError):
            rpc.decode(bad, [b"\0" * 8])
    assert type(rpc.exception_from("ValueError", "bad")) is ValueError
    assert type(rpc.exception_from("NotImplementedError", "4.2")) is NotImplementedError
    assert type(rpc.exception_from("SystemExit", "0")) is RuntimeError
    assert type(rpc.exception_from("MyError", "x")) is RuntimeError


def test_unknown_chapter_is_one_line_without_traceback(tmp_path):
    """`python -m minillama.grade ch99` names the chapters that exist and exits 2; nothing else is printed."""
    (tmp_path / "exercises").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "minillama.grade", "ch99"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "no exercises for 'ch99'" in proc.stderr and "ch02_architecture" in proc.stderr
    assert not (tmp_path / "results.json").exists()
