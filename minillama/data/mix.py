"""The data mix (paper §3.1.2 "Determining the data mix").

Llama 3's final pre-training mix is about 50% general knowledge, 25% mathematical and reasoning tokens, 17% code
and 8% multilingual, chosen with a knowledge classifier (to down-sample over-represented categories) and
scaling-law experiments. Here a mix is a dict of target shares over groups of documents (by default grouped by
``kind``: code / prose); `mix_by_ratio` draws documents from each group until the group's share of a byte budget
is filled. A group smaller than its share is **repeated** (up-sampled, more epochs of it); a larger one is
**sub-sampled**. The report says, per group, the target share, the share achieved and how many times documents
were repeated. Bytes stand in for tokens (we mix before tokenizing). Same inputs and seed -> same mix.

>>> from minillama.data.corpus import Document
>>> docs = [Document("x" * 10, "s", f"c{i}", kind="code") for i in range(10)]
>>> docs += [Document("y" * 10, "s", "p", kind="prose")]
>>> mixed, report = mix_by_ratio(docs, {"code": 0.5, "prose": 0.5}, total_bytes=100, seed=0)
>>> report.details["groups"]["prose"]["bytes"], report.details["groups"]["prose"]["max_repeats"]
(50, 5)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from minillama.data.corpus import Document
from minillama.data.report import StepReport

__all__ = ["LLAMA3_MIX", "group_documents", "mix_by_ratio"]

#: The paper's final mix (paper §3.1.2), as shares of tokens.
LLAMA3_MIX = {"general": 0.50, "math_reasoning": 0.25, "code": 0.17, "multilingual": 0.08}


def group_documents(
    docs: Sequence[Document], key: str | Callable[[Document], str] = "kind"
) -> dict[str, list[Document]]:
    """Group documents by an attribute name (``"kind"``, ``"source"``) or a function; groups in first-seen order."""
    get = (lambda d: getattr(d, key)) if isinstance(key, str) else key
    groups: dict[str, list[Document]] = {}
    for doc in docs:
        groups.setdefault(get(doc), []).append(doc)
    return groups


def mix_by_ratio(
    docs: Sequence[Document],
    ratios: dict[str, float],
    total_bytes: int | None = None,
    seed: int = 0,
    key: str | Callable[[Document], str] = "kind",
    allow_repeat: bool = True,
) -> tuple[list[Document], StepReport]:
    """Draw a mix with the given byte shares per group.

    ratios:       group -> share (normalized to sum to 1; a group of `docs` not named gets share 0 and is dropped).
    total_bytes:  size of the mix; default: the largest total for which no group needs repeating.
    allow_repeat: if False, a group too small for its share raises ValueError instead of being repeated.

    Each group is walked in a seeded shuffled order, cyclically (a new shuffle per pass), taking documents until
    the group's quota ``share * total_bytes`` is reached; the document that crosses the quota is taken (so a quota
    larger than zero always gets at least one document). The groups are then interleaved in a seeded shuffle.
    Returns (mixed documents, report); report details: ``groups`` -> target, share, bytes, documents, passes,
    max_repeats.
    """
    if not ratios or any(r < 0 for r in ratios.values()) or sum(ratios.values()) <= 0:
        raise ValueError(f"ratios must be non-negative shares with a positive sum, got {ratios}")
    groups = group_documents(docs, key)
    missing = [g for g, r in ratios.items() if r > 0 and not groups.get(g)]
    if missing:
        raise ValueError(f"no documents in group(s) {missing}; groups present: {sorted(groups)}")
    norm = sum(ratios.values())
    shares = {g: r / norm for g, r in ratios.items() if r > 0}
    sizes = {g: sum(d.bytes for d in groups[g]) for g in shares}
    if total_bytes is None:
        total_bytes = int(min(sizes[g] / shares[g] for g in shares))
    if total_bytes <= 0:
        raise ValueError(f"total_bytes must be positive, got {total_bytes}")
    report = StepReport.start("mix", f"§3.1.2 data mix by byte share {shares}", docs)
    rng = random.Random(seed)
    mixed: list[Document] = []
    details = {}
    for name in sorted(shares):
        quota = shares[name] * total_bytes
        if not allow_repeat and quota > sizes[name]:
            raise ValueError(
                f"group {name!r} has {sizes[name]} bytes, fewer than its share {quota:.0f}; "
                "lower its ratio or total_bytes, or pass allow_repeat=True"
            )
        taken, got, passes, uses = [], 0, 0, {}
        while got < quota:
            order = list(groups[name])
            rng.shuffle(order)
            passes += 1
            for doc in order:
                if got >= quota:
                    break
                taken.append(doc)
                got += doc.bytes
                uses[doc.id] = uses.get(doc.id, 0) + 1
        mixed.extend(taken)
        details[name] = {
            "target": shares[name],
            "bytes": got,
            "documents": len(taken),
            "passes": passes,
            "max_repeats": max(uses.values(), default=0),
            "available_bytes": sizes[name],
        }
    total = sum(v["bytes"] for v in details.values())
    for v in details.values():
        v["share"] = v["bytes"] / total if total else 0.0
    rng.shuffle(mixed)
    drawn = {id(d) for d in mixed}
    for doc in docs:
        if id(doc) not in drawn:
            report.remove(doc, "not drawn for the mix")
    report.details.update(groups=details, total_bytes=total_bytes, seed=seed)
    return mixed, report.finish(mixed)
