"""A task family whose answers a program can check, so every post-training stage is measured [P §4].

Llama 3's post-training rounds are judged by held-out benchmarks. A tiny CPU model needs a task it can learn in
minutes whose quality is a number, so this module generates **digit-list tasks** in the chat format:

    user:      "Sort these numbers from smallest to largest: 7 2 9 2"
    assistant: "2 2 7 9"

Four kinds, from easy to hard: `copy` (repeat the list), `reverse`, `sort` (ascending) and `sort_desc`. Lists hold
3–7 digits separated by spaces, so each digit is its own token under the Llama 3 split regex (digits never merge
with their neighbours across a space), whichever tokenizer is used.

* `make_tasks(n, split, seed)` draws tasks for the `"train"` or `"heldout"` split. The split is decided by a hash of
  (kind, digits), so no held-out list is ever seen in training, whatever the seeds.
* `check(task, response)` is the exact-match checker (True/False); `score(task, response)` gives partial credit
  (the fraction of answer positions right, with a length penalty): it ranks imperfect responses for the reward model
  and DPO pairs.
* `corrupt(task, rng, severity)` makes plausible wrong answers (swapped, dropped, duplicated, changed digits), used
  for the ranked responses of the reward model (edited > chosen > rejected).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

#: kind -> user prompt template; `{digits}` is the list written with single spaces.
TEMPLATES: dict[str, str] = {
    "copy": "Repeat this list: {digits}",
    "reverse": "Reverse this list: {digits}",
    "sort": "Sort these numbers from smallest to largest: {digits}",
    "sort_desc": "Sort these numbers from largest to smallest: {digits}",
}
KINDS: tuple[str, ...] = tuple(TEMPLATES)
SYSTEM_PROMPT = "You are a careful assistant. Answer with the list only."
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
        return " ".join(map(str, solve(self.kind, self.digits)))

    def messages(self, response: str | None = None, system: bool = True) -> list[dict]:
        """The dialog as `{"role", "content"}` messages; the assistant turn only when `response` is given."""
        msgs = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
        msgs.append({"role": "user", "content": self.prompt})
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs


def solve(kind: str, digits: tuple[int, ...]) -> list[int]:
    """The correct output list for `kind`."""
    if kind == "copy":
        return list(digits)
    if kind == "reverse":
        return list(reversed(digits))
    if kind == "sort":
        return sorted(digits)
    if kind == "sort_desc":
        return sorted(digits, reverse=True)
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


def parse_digits(response: str) -> list[int] | None:
    """The digits of a response written as space-separated single digits, or None when it is not such a list."""
    parts = response.strip().split()
    if not parts or not all(len(p) == 1 and p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def check(task: Task, response: str) -> bool:
    """Exact-match checker: the response is the right list (surrounding whitespace ignored)."""
    return parse_digits(response) == solve(task.kind, task.digits)


def score(task: Task, response: str) -> float:
    """Partial credit in [0, 1]: matching positions / max(len(answer), len(response)); 1.0 exactly when `check`."""
    got, want = parse_digits(response), solve(task.kind, task.digits)
    if got is None:
        return 0.0
    hits = sum(a == b for a, b in zip(got, want))
    return hits / max(len(got), len(want))


def corrupt(task: Task, rng: random.Random, severity: int = 1) -> str:
    """A wrong answer made by `severity` random edits of the right one (swap, drop, duplicate or change a digit)."""
    out = solve(task.kind, task.digits)
    for _ in range(max(1, severity)):
        op = rng.choice(("swap", "drop", "dup", "change"))
        i = rng.randrange(len(out))
        if op == "swap" and len(out) > 1:
            j = rng.randrange(len(out) - 1)
            j += j >= i
            out[i], out[j] = out[j], out[i]
        elif op == "drop" and len(out) > 1:
            out.pop(i)
        elif op == "dup":
            out.insert(i, out[i])
        else:
            out[i] = (out[i] + rng.randrange(1, 10)) % 10
    text = " ".join(map(str, out))
    if check(task, text):  # a swap of equal digits can leave it right: force one change
        out[0] = (out[0] + 1) % 10
        text = " ".join(map(str, out))
    return text


def accuracy(tasks: list[Task], responses: list[str]) -> float:
    """Fraction of `responses` the checker accepts."""
    if len(tasks) != len(responses):
        raise ValueError(f"{len(tasks)} tasks but {len(responses)} responses")
    return sum(check(t, r) for t, r in zip(tasks, responses)) / max(1, len(tasks))
