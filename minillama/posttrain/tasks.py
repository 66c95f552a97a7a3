"""A task family whose answers a program can check, so every post-training stage is measured (paper §4).

Llama 3's post-training rounds are judged by held-out benchmarks. A tiny CPU model needs a task it can learn in
minutes whose quality is a number, so this module generates **questions about a list of digits**:

    user:      "What is the largest number in 7 2 9 2?"
    assistant: "9"

Four kinds: `last` (the last number), `max`, `min` and `count` (how many numbers). Lists hold 3–7 digits separated
by spaces, so each digit is its own token under the Llama 3 split regex (digits never merge with their neighbours
across a space), whichever tokenizer is used. Each answer is one number, so a 3M-parameter model learns the family
within a few hundred SFT steps on a shared CPU while staying far from perfect, which leaves room for rejection
sampling and DPO to help. (Sorting and reversing lists were tried first: a model this size needs thousands of steps
before it copies a single list right.)

* `make_tasks(n, split, seed)` draws tasks for the `"train"` or `"heldout"` split. The split is decided by a hash of
  (kind, digits), so no held-out question is ever seen in training, whatever the seeds.
* `check(task, response)` is the exact-match checker (True/False); `score(task, response)` gives partial credit
  (1 − |error|/10 for a single number, 0 for anything else): it ranks imperfect responses for the reward model and
  DPO pairs.
* `corrupt(task, rng, severity)` makes a plausible wrong answer `severity` away from the right one, used for the
  ranked responses of the reward model (edited > chosen > rejected).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

#: kind -> user prompt template; `{digits}` is the list written with single spaces.
TEMPLATES: dict[str, str] = {
    "last": "What is the last number in {digits}?",
    "max": "What is the largest number in {digits}?",
    "min": "What is the smallest number in {digits}?",
    "count": "How many numbers are in {digits}?",
}
KINDS: tuple[str, ...] = tuple(TEMPLATES)
SYSTEM_PROMPT = "You are a careful assistant. Answer with one number."
MIN_LEN, MAX_LEN = 3, 7
HELDOUT_PERCENT = 10  # one list in ten belongs to the held-out split


@dataclass(frozen=True)
class Task:
    """One prompt of the family: `kind` in KINDS and its `digits` (each 0–9)."""

    kind: str
    digits: tuple[int, ...]

    @property
    def prompt(self) -> str:
        return TEMPLATES[self.kind].format(digits=" ".join(map(str, self.digits)))

    @property
    def answer(self) -> str:
        return str(solve(self.kind, self.digits))

    def messages(self, response: str | None = None, system: bool = True) -> list[dict]:
        """The dialog as `{"role", "content"}` messages; the assistant turn only when `response` is given."""
        msgs = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
        msgs.append({"role": "user", "content": self.prompt})
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs


def solve(kind: str, digits: tuple[int, ...]) -> int:
    """The correct answer for `kind`."""
    if kind == "last":
        return digits[-1]
    if kind == "max":
        return max(digits)
    if kind == "min":
        return min(digits)
    if kind == "count":
        return len(digits)
    raise ValueError(f"unknown task kind {kind!r}; use one of {KINDS}")


def split_of(kind: str, digits: tuple[int, ...]) -> str:
    """`"heldout"` for a fixed 10% of all (kind, digits) pairs, chosen by hash; `"train"` for the rest."""
    key = f"{kind}:{''.join(map(str, digits))}".encode()
    return "heldout" if int(hashlib.sha256(key).hexdigest(), 16) % 100 < HELDOUT_PERCENT else "train"


def make_tasks(n: int, split: str = "train", seed: int = 0, kinds: tuple[str, ...] = KINDS) -> list[Task]:
    """`n` distinct tasks of `split` ("train" or "heldout"), kinds in rotation, lengths uniform in 3..7."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    bad = [k for k in kinds if k not in TEMPLATES]
    if bad:
        raise ValueError(f"unknown task kinds {bad}; use some of {KINDS}")
    rng = random.Random(f"{split}-{seed}")
    tasks: list[Task] = []
    seen: set[Task] = set()
    attempts = 0
    while len(tasks) < n:
        attempts += 1
        if attempts > 200 * n + 1000:
            raise ValueError(f"could not draw {n} distinct {split} tasks; ask for fewer")
        kind = kinds[len(tasks) % len(kinds)]
        digits = tuple(rng.randrange(10) for _ in range(rng.randint(MIN_LEN, MAX_LEN)))
        task = Task(kind, digits)
        if task in seen or split_of(kind, digits) != split:
            continue
        seen.add(task)
        tasks.append(task)
    return tasks


def parse_number(response: str) -> int | None:
    """The integer a response states (surrounding whitespace ignored), or None when it is not just a number."""
    text = response.strip()
    return int(text) if text.isdigit() and len(text) <= 3 else None


def check(task: Task, response: str) -> bool:
    """Exact-match checker: the response is the right number (surrounding whitespace ignored)."""
    return parse_number(response) == solve(task.kind, task.digits)


def score(task: Task, response: str) -> float:
    """Partial credit in [0, 1]: 1 − |error|/10 for a number (floored at 0.05), 0 for anything else; 1.0 exactly
    when `check` passes."""
    got = parse_number(response)
    if got is None:
        return 0.0
    return max(0.05, 1.0 - abs(got - solve(task.kind, task.digits)) / 10)


def corrupt(task: Task, rng: random.Random, severity: int = 1) -> str:
    """A wrong answer `severity` (>= 1) away from the right one, up or down at random (kept within 0..9 when it can)."""
    want = solve(task.kind, task.digits)
    severity = max(1, severity)
    options = [want + d for d in (severity, -severity) if 0 <= want + d <= 9] or [want + severity]
    return str(rng.choice(options))


def accuracy(tasks: list[Task], responses: list[str]) -> float:
    """Fraction of `responses` the checker accepts."""
    if len(tasks) != len(responses):
        raise ValueError(f"{len(tasks)} tasks but {len(responses)} responses")
    return sum(check(t, r) for t, r in zip(tasks, responses)) / max(1, len(tasks))
