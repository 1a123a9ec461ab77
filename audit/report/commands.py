"""``audit report`` (re-render a results.json without re-running) and ``audit compare`` (two runs
side by side). Each output's extension picks its format.

Example:
    $ audit report reports/demo/results.json --html demo.html -o summary.md -o junit.xml
    $ audit compare reports/baselines/demo.json reports/demo/results.json --html compare.html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from ..errors import AuditError
from ..results import read_results as load_results


def rerender(results: str | os.PathLike, outputs: Sequence[str]) -> list[Path]:
    """Write every file in ``outputs`` (format by extension) from an existing results file."""
    from . import WRITERS, write_report

    for out in outputs:  # fail on an unknown format before writing anything
        WRITERS.get(Path(out).suffix.lower())
    result = load_results(results)
    return [write_report(result, out) for out in outputs]


def compare_files(old: str | os.PathLike, new: str | os.PathLike, outputs: Sequence[str], *,
                  labels: tuple[str, str] = ("before", "after")) -> str | None:
    """Compare two results files into ``outputs``; with none, return the Markdown comparison."""
    from .compare import COMPARE_WRITERS, comparison, write_comparison

    for out in outputs:
        COMPARE_WRITERS.get(Path(out).suffix.lower())
    a, b = load_results(old), load_results(new)
    if not outputs:
        return COMPARE_WRITERS.get(".md")(comparison(a, b, labels=labels))
    for out in outputs:
        write_comparison(a, b, out, labels=labels)
    return None


def cmd_report(args) -> int:
    outputs = ([args.html] if args.html else []) + args.output
    if not outputs:
        raise AuditError("audit report: name at least one output (--html OUT.html or -o FILE)")
    for path in rerender(args.results, outputs):
        print(f"wrote {path}")
    return 0


def cmd_compare(args) -> int:
    outputs = ([args.html] if args.html else []) + args.output
    text = compare_files(args.old, args.new, outputs, labels=tuple(args.labels))
    if text is not None:
        sys.stdout.write(text)
    for out in outputs:
        print(f"wrote {out}")
    return 0


def add_commands(sub, *, common, run_args) -> None:
    p = sub.add_parser("report", help="re-render reports (HTML, JUnit, Markdown, JSON) from a results.json",
                       description="Render RESULTS (a results.json) again without re-running anything; "
                                   "each output's extension picks the format (.html, .xml JUnit, .md, .json, .txt).")
    p.add_argument("results", help="results.json of an earlier run")
    p.add_argument("--html", metavar="FILE", help="write the HTML report here")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE", help="also write FILE (repeatable)")
    common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="compare two runs side by side with deltas",
                       description="Compare OLD and NEW results.json: deltas coloured by each metric's direction, "
                                   "gates before and after, samples that changed most. Outputs: .html, .md, .json; "
                                   "with none, the Markdown comparison is printed.")
    p.add_argument("old", help="results.json of the earlier run (e.g. the baseline)")
    p.add_argument("new", help="results.json of the later run")
    p.add_argument("--html", metavar="FILE", help="write the HTML comparison here")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE", help="also write FILE (repeatable)")
    p.add_argument("--labels", nargs=2, default=["before", "after"], metavar=("OLD", "NEW"), help="names of the two runs")
    common(p)
    p.set_defaults(func=cmd_compare)
