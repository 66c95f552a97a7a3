"""The exercise grader: one set of tests grades any implementation (reference, learner, stubs or a mutant).

Layout for a chapter `chNN_topic`:
    exercises/chNN_topic.py                    stubs the learner fills in
    minillama/grading/reference/chNN_topic.py  the reference, same names and signatures
    minillama/grading/mutants/chNN_topic.py    MUTANTS: common mistakes, each must fail some test
    tests/exercises/test_chNN_topic.py         the tests (CHAPTER = "chNN_topic", fixture `impl`, points marker)

Learners run `python -m minillama.grade chNN`; notebooks call `grade_inline("chNN_topic")`.

Trust boundary: the grader (`runner`) and the pytest child it starts are trusted; the code under test is not. The
`impl` fixture (`plugin`) never imports an implementation into pytest: `impl.f(...)` is an RPC (`rpc`) to a worker
process (`worker`) that runs the function and sends back plain values only (numbers, strings, containers, plain
tensors and numeric arrays), rebuilt by a decoder that never unpickles, so the tests compare real values with
unpatched code. Callables the tests pass (a scripted model, an all-reduce, tools) stay in pytest and are called back;
in-place changes to list/dict/tensor arguments are copied back. In a worker that runs a learner's file, the chapter's
answer key (`ANSWER_KEY` in `reference/chNN_*.py`, and `minillama.grading.reference` itself) raises "exercises must not
call the reference implementation". A worker has a memory limit, dies with its parent, is killed with everything it
started when a call overruns the test's timeout, and a crash fails only the running test. Results reach the grader
through an inherited pipe, never a path the worker can find; see `runner` for the process-level hardening.
"""

from __future__ import annotations

from minillama.grading.runner import grade_inline

__all__ = ["grade_inline"]
