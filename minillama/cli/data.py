"""``minillama data build|stats``: run the §3.1 pipeline on a corpus from the command line.

    minillama data stats --data stdlib                 # documents and bytes by source and kind
    minillama data build --data stdlib --out data/     # clean, dedup, filter, mix -> data/documents.jsonl + report
    minillama data build --data ~/notes --mix code=0.3,prose=0.7 --limit-bytes 2000000

``--data`` takes ``stdlib``, ``stdlib:code``, ``stdlib:prose``, a ``.jsonl`` written by ``build``, or a text file or
folder of .txt/.md/.py files. The output ``documents.jsonl`` is what ``minillama pretrain --data`` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minillama.data.corpus import corpus_summary, load_corpus, save_documents, synthetic_contaminants
from minillama.data.mix import mix_by_ratio
from minillama.data.pipeline import default_pipeline
from minillama.data.report import format_reports


def _parse_mix(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    try:
        pairs = [item.split("=") for item in text.split(",")]
        return {name.strip(): float(share) for name, share in pairs}
    except ValueError:
        raise ValueError(f"--mix must look like code=0.7,prose=0.3, got {text!r}") from None


def _print_summary(summary: dict) -> None:
    print(f"{summary['documents']} documents, {summary['bytes'] / 1e6:.2f} MB")
    for key in ("by_source", "by_kind"):
        for name, v in summary[key].items():
            print(f"  {key[3:]:<7}{name:<16}{v['documents']:>7} docs {v['bytes'] / 1e6:>9.2f} MB")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minillama data", description="Build and inspect corpora (paper §3.1).")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("stats", "print documents and bytes by source and kind"),
        ("build", "clean, dedup, filter and mix a corpus into documents.jsonl"),
    ):
        q = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        q.add_argument("--data", default="stdlib", help="stdlib, stdlib:code, stdlib:prose, a .jsonl, a file or folder")
        q.add_argument("--limit-bytes", type=int, default=None, help="use a seeded random subset of this many bytes")
        q.add_argument("--seed", type=int, default=0)
    b = sub.choices["build"]
    b.add_argument("--out", default="data", help="output folder (documents.jsonl, report.json)")
    b.add_argument("--mix", default=None, help="byte shares per kind after filtering, e.g. code=0.7,prose=0.3")
    b.add_argument(
        "--total-bytes",
        type=int,
        default=None,
        help="size of the mix (default: the filtered corpus's size; small groups are repeated)",
    )
    b.add_argument("--no-quality", action="store_true", help="skip the quality classifier step")
    b.add_argument("--contaminants", action="store_true", help="add the six synthetic bad documents (a demo)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        docs = load_corpus(args.data, limit_bytes=args.limit_bytes, seed=args.seed)
        if args.command == "stats":
            _print_summary(corpus_summary(docs))
            return 0
        mix = _parse_mix(args.mix)
        if args.contaminants:
            docs = docs + synthetic_contaminants(docs, seed=args.seed)
        pipeline = default_pipeline(seed=args.seed, quality_threshold=None if args.no_quality else 0.25)
        kept, reports = pipeline.run(docs, progress=True)
        if mix:
            total = args.total_bytes or sum(d.bytes for d in kept)
            kept, mix_report = mix_by_ratio(kept, mix, total_bytes=total, seed=args.seed)
            mix_report.name = "mix"
            reports.append(mix_report)
    except ValueError as e:
        print(f"minillama data: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    save_documents(kept, out / "documents.jsonl")
    (out / "report.json").write_text(
        json.dumps(
            {"input": corpus_summary(docs), "output": corpus_summary(kept), "steps": [r.to_dict() for r in reports]},
            indent=1,
            default=str,
        )
    )
    print(format_reports(reports))
    _print_summary(corpus_summary(kept))
    print(f"wrote {out / 'documents.jsonl'} and {out / 'report.json'}")
    return 0
