"""``audit report`` (re-render a results.json without re-running) and ``audit compare`` (two runs
side by side, or N runs as a leaderboard with paired significance tests against a reference).
Each output's extension picks its format.

Example:
    $ audit report reports/demo/results.json --html demo.html -o summary.md -o junit.xml
    $ audit compare reports/baselines/demo.json reports/demo/results.json --html compare.html
    $ audit compare ckpt-100/results.json ckpt-200/results.json ckpt-300/results.json --html board.html
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
                  labels: tuple[str, str] = ("before", "after"), force: bool = False) -> str | None:
    """Compare two results files into ``outputs``; with none, return the Markdown comparison.

    Runs of another suite or other data are refused (:class:`~audit.report.compare.IncomparableRuns`,
    exit 2) unless ``force``."""
    from .compare import COMPARE_WRITERS, check_comparable, comparison, write_comparison

    for out in outputs:
        COMPARE_WRITERS.get(Path(out).suffix.lower())
    a, b = load_results(old), load_results(new)
    check_comparable([a, b], [f"{labels[0]} ({old})", f"{labels[1]} ({new})"], force=force)
    if not outputs:
        return COMPARE_WRITERS.get(".md")(comparison(a, b, labels=labels))
    for out in outputs:
        write_comparison(a, b, out, labels=labels)
    return None


def compare_many(paths: Sequence[str | os.PathLike], outputs: Sequence[str], *, labels: Sequence[str] | None = None,
                 reference: int = 0, force: bool = False, alpha: float = 0.05, n_permutations: int = 2000,
                 metrics: Sequence[str] | None = None) -> str | None:
    """The leaderboard of N results files (``reference`` indexes ``paths``) into ``outputs``; with
    none, return it as Markdown."""
    from .compare import BOARD_WRITERS, leaderboard

    writers = [BOARD_WRITERS.get(Path(out).suffix.lower()) for out in outputs]
    runs = [load_results(p) for p in paths]
    data = leaderboard(runs, labels=list(labels) if labels else None, reference=reference,
                       paths=[str(p) for p in paths], alpha=alpha, n_permutations=n_permutations, force=force,
                       metrics=list(metrics) if metrics else None)
    if not outputs:
        return BOARD_WRITERS.get(".md")(data)
    from ..results import atomic_write

    for out, writer in zip(outputs, writers):
        atomic_write(out, writer(data))
    return None


def _reference_index(reference: str | None, paths: list[str]) -> tuple[list[str], int]:
    """``--reference``: a 1-based index into the runs, one of the files, or another file (put first)."""
    if reference is None:
        return paths, 0
    if reference.isdigit():
        i = int(reference) - 1
        if not 0 <= i < len(paths):
            raise AuditError(f"--reference {reference}: there are {len(paths)} runs (give 1..{len(paths)} or a file)")
        return paths, i
    for i, p in enumerate(paths):
        if os.path.abspath(p) == os.path.abspath(reference):
            return paths, i
    return [reference, *paths], 0


def cmd_report(args) -> int:
    outputs = ([args.html] if args.html else []) + args.output
    if not outputs:
        raise AuditError("audit report: name at least one output (--html OUT.html or -o FILE)")
    for path in rerender(args.results, outputs):
        print(f"wrote {path}")
    return 0


def cmd_compare(args) -> int:
    outputs = ([args.html] if args.html else []) + args.output
    paths, ref = _reference_index(args.reference, list(args.runs))
    if len(paths) < 2:
        raise AuditError("audit compare: give at least two results files (or one and --reference FILE)")
    if args.labels is not None and len(args.labels) != len(paths):
        raise AuditError(f"--labels: {len(args.labels)} labels for {len(paths)} runs")
    if args.metric and len(paths) == 2 and not args.leaderboard and args.reference is None:
        raise AuditError("--metric selects leaderboard columns: add --leaderboard to compare two runs that way")
    if len(paths) == 2 and not args.leaderboard and args.reference is None:
        text = compare_files(paths[0], paths[1], outputs, labels=tuple(args.labels or ("before", "after")),
                             force=args.force)
    else:
        text = compare_many(paths, outputs, labels=args.labels, reference=ref, force=args.force, alpha=args.alpha,
                            metrics=args.metric)
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

    p = sub.add_parser("compare", help="compare two runs side by side, or N runs as a leaderboard",
                       description="Compare results.json files. Two: OLD and NEW side by side (deltas coloured by each "
                                   "metric's direction, gates before and after, samples that changed most). Three or "
                                   "more (or --leaderboard): one table of every run's metrics with intervals, the delta "
                                   "from the reference run (the first, or --reference) and a paired permutation test on "
                                   "per-sample scores where the samples line up (Holm-corrected), plus each run's gates. "
                                   "Runs of another suite or other data are refused (exit 2) unless --force. "
                                   "Outputs: .html, .md, .json; with none, the Markdown is printed.")
    p.add_argument("runs", nargs="+", metavar="RESULTS", help="results.json files (the first is the reference)")
    p.add_argument("--html", metavar="FILE", help="write the HTML comparison here")
    p.add_argument("-o", "--output", action="append", default=[], metavar="FILE", help="also write FILE (repeatable)")
    p.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                   help="names of the runs, one per file (default: before after for two; else each file's directory)")
    p.add_argument("--reference", metavar="N|FILE",
                   help="the run the others are tested against: its 1-based position or a results file (default: the first)")
    p.add_argument("--leaderboard", action="store_true", help="the leaderboard table even for two runs")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction (default 0.05)")
    p.add_argument("--metric", action="append", default=[], metavar="KEY",
                   help="leaderboard columns: a metric (quality.rouge_l) or a section (diversity); repeatable; default all "
                        "(Holm corrects across the metrics shown)")
    p.add_argument("--force", action="store_true", help="compare runs of different suites or data anyway")
    common(p)
    p.set_defaults(func=cmd_compare)
