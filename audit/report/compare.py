"""Two runs side by side: every metric's old and new value, the delta coloured by the metric's
direction (better / worse), whether the intervals separate, gates before and after, and the
samples whose scores moved most. ``audit compare`` and ``audit harden`` (before/after) use it.

N runs (:func:`leaderboard`): one table of every run's metrics with intervals, the delta from a
reference run and a paired sign-flip permutation test on per-sample scores where the samples line
up (Holm-corrected across the metrics tested for each run), plus each run's gate summary. Runs of
another suite or other data are refused (:func:`check_comparable`) unless forced.

Example:
    >>> from audit.results import AuditResult
    >>> old = AuditResult(suite={"name": "s"}, model={"spec": "a"}, generation={}, seed=0, metrics={"q.m": 1.0})
    >>> new = AuditResult(suite={"name": "s"}, model={"spec": "b"}, generation={}, seed=0, metrics={"q.m": 2.0})
    >>> comparison(old, new)["metrics"][0]["delta"]
    1.0
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from ..baseline import identity, incompatibilities
from ..errors import AuditError
from ..registry import Registry
from ..results import AuditResult, json_safe, atomic_write
from ..stats import holm, metric_seed, paired_permutation_test
from .view import change, finite, fmt, fmt_delta, verdict, with_intervals

COMPARE_WRITERS: Registry[Callable[[dict[str, Any]], str]] = Registry("comparison format")
BOARD_WRITERS: Registry[Callable[[dict[str, Any]], str]] = Registry("comparison format")


class IncomparableRuns(AuditError):
    """Runs of different suites or data (exit 2 unless forced)."""


def _direction(old: AuditResult, new: AuditResult, key: str) -> bool | None:
    info = new.metric_info(key) or old.metric_info(key)
    return info.higher_is_better if info else None


def _separated(a: dict | None, b: dict | None) -> bool | None:
    """True when two intervals do not overlap (a conservative sign the change is not noise)."""
    if not a or not b or a.get("low") is None or b.get("low") is None:
        return None
    return a["high"] < b["low"] or b["high"] < a["low"]


def comparison(old: AuditResult, new: AuditResult, *, labels: tuple[str, str] = ("before", "after"),
               max_samples: int = 200) -> dict[str, Any]:
    """The comparison as plain data (what every format renders; ``.json`` writes it as is)."""
    old, new = with_intervals(old), with_intervals(new)
    keys = list(dict.fromkeys([*old.metrics, *new.metrics]))
    metrics = []
    for key in keys:
        a, b = old.metrics.get(key), new.metrics.get(key)
        hib = _direction(old, new, key)
        info = new.metric_info(key) or old.metric_info(key)
        metrics.append({
            "key": key, "section": key.partition(".")[0], "higher_is_better": hib,
            "description": info.description if info else "",
            "old": a, "new": b, "delta": (b - a) if finite(a) and finite(b) else None,
            "relative": ((b - a) / abs(a)) if finite(a) and finite(b) and a != 0 else None,
            "change": change(a, b, hib) if (a is not None and b is not None) else ("missing" if b is None else "new"),
            "old_interval": old.intervals.get(key), "new_interval": new.intervals.get(key),
            "separated": _separated(old.intervals.get(key), new.intervals.get(key)),
        })
    gate_keys = list(dict.fromkeys([g.expression for g in old.gates] + [g.expression for g in new.gates]))
    og, ng = {g.expression: g for g in old.gates}, {g.expression: g for g in new.gates}
    gates = [{"expression": e,
              "old": None if e not in og else {"passed": og[e].passed, "value": og[e].value, "reason": og[e].reason},
              "new": None if e not in ng else {"passed": ng[e].passed, "value": ng[e].value, "reason": ng[e].reason}}
             for e in gate_keys]
    return {
        "labels": list(labels),
        "runs": [_run_summary(old), _run_summary(new)],
        "incompatible": incompatibilities(identity(old), identity(new)),
        "metrics": metrics,
        "summary": {c: sum(1 for m in metrics if m["change"] == c) for c in ("better", "worse", "same")},
        "gates": gates,
        "samples": _sample_changes(old, new, max_samples),
    }


def _run_summary(r: AuditResult) -> dict[str, Any]:
    return {"model": r.model.get("spec") or r.model.get("path"), "fingerprint": r.model.get("fingerprint"),
            "suite": r.suite.get("name"), "created": r.created, "verdict": verdict(r), "passed": r.passed,
            "gates_passed": sum(g.passed for g in r.gates), "gates": len(r.gates), "errors": r.errors}


def _sample_changes(old: AuditResult, new: AuditResult, limit: int) -> dict[str, Any]:
    """Samples present in both runs with their generations and score deltas, worst change first."""
    olds = {s.id: s for s in old.samples}
    score_keys: list[str] = []
    rows = []
    for s in new.samples:
        o = olds.get(s.id)
        if o is None:
            continue
        row: dict[str, Any] = {"id": s.id, "prompt": s.prompt,
                               "before": "\n\n".join(o.generations), "after": "\n\n".join(s.generations)}
        for k, v in s.scores.items():
            if k in o.scores and finite(v) and finite(o.scores[k]):
                if k not in score_keys:
                    score_keys.append(k)
                row[f"Δ {k}"] = v - o.scores[k]
        rows.append(row)
    sort, hib = None, None
    for k in score_keys:
        info = new.metric_info(k) or old.metric_info(k)
        if info is not None:
            sort, hib = f"Δ {k}", info.higher_is_better
            break
    if sort:
        # Worst change first: the biggest drop of a higher-is-better score (rise of a lower-is-better one).
        rows.sort(key=lambda r: (r.get(sort) is None, (r.get(sort) or 0) * (1 if hib else -1)))
    return {"rows": rows[:limit], "total": len(rows), "sort": sort, "higher_is_better": hib}


@COMPARE_WRITERS.register(".json")
def _json(data: dict[str, Any]) -> str:
    return json.dumps(json_safe(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


@COMPARE_WRITERS.register(".html")
def _html(data: dict[str, Any]) -> str:
    import secrets

    from .html import environment, fresh_ids

    with fresh_ids():
        return environment().get_template("compare.html.j2").render(c=data, nonce=secrets.token_urlsafe(16))


@COMPARE_WRITERS.register(".md")
def _markdown(data: dict[str, Any]) -> str:
    from .markdown import md_code as c, md_escape as e

    a, b = data["labels"]
    ra, rb = data["runs"]
    s = data["summary"]
    lines = [f"## audit compare: {e(a)} {c(ra['model'])} → {e(b)} {c(rb['model'])}", "",
             f"**{ra['verdict'].upper()} → {rb['verdict'].upper()}** · {s['better']} metrics better, "
             f"{s['worse']} worse, {s['same']} unchanged", ""]
    if data["incompatible"]:
        lines += [f"> ⚠️ The runs are not like for like: {e('; '.join(data['incompatible']))}", ""]
    lines += [f"| metric | {e(a)} | {e(b)} | Δ | |", "|---|---:|---:|---:|---|"]
    icon = {"better": "🟢 better", "worse": "🔴 worse", "same": "same", "missing": "missing", "new": "new"}
    for m in data["metrics"]:
        arrow = "" if m["higher_is_better"] is None else (" ↑" if m["higher_is_better"] else " ↓")
        lines.append(f"| {c(m['key'])}{arrow} | {fmt(m['old'])} | {fmt(m['new'])} | {fmt_delta(m['delta'])} | "
                     f"{icon.get(m['change'], '')}{' (intervals separate)' if m['separated'] else ''} |")
    if data["gates"]:
        lines += ["", "| gate | " + e(a) + " | " + e(b) + " |", "|---|---|---|"]
        for g in data["gates"]:
            cell = lambda x: "—" if x is None else ("✅ pass" if x["passed"] else "❌ fail") + f" ({fmt(x['value'])})"
            lines.append(f"| {c(g['expression'])} | {cell(g['old'])} | {cell(g['new'])} |")
    return "\n".join(lines) + "\n"


def write_comparison(old: AuditResult, new: AuditResult, path: str | os.PathLike, *,
                     labels: tuple[str, str] = ("before", "after")) -> Path:
    """Write the comparison of two runs; the extension picks the format (``.html``, ``.md``, ``.json``).

    Example:
        >>> write_comparison(AuditResult.load("before/results.json"), AuditResult.load("after/results.json"),
        ...                  "compare.html")  # doctest: +SKIP
    """
    path = Path(path)
    writer = COMPARE_WRITERS.get(path.suffix.lower())
    atomic_write(path, writer(comparison(old, new, labels=labels)))
    return path


# ---- N runs: the leaderboard -----------------------------------------------------------------
TEST_NAME = "paired sign-flip permutation test of the mean per-sample difference"


def differences(reference: AuditResult, run: AuditResult) -> tuple[list[str], list[str]]:
    """``(refusals, notes)`` between a run and the reference run of a leaderboard.

    Refusals: another suite (name, version, schema) or other data (split, limit, record count,
    prompt-set fingerprint) — the numbers would measure something else. Notes: what may differ
    between candidates but is worth saying (seed, generation settings, suite options).
    """
    a, b = identity(reference), identity(run)
    refuse: list[str] = []
    notes: list[str] = []

    def diff(out: list[str], label: str, x: Any, y: Any) -> None:
        if x is not None and y is not None and x != y:
            out.append(f"{label} is {x!r} in the reference but {y!r} here")

    diff(refuse, "schema_version", a["schema_version"], b["schema_version"])
    diff(refuse, "suite", a["suite"], b["suite"])
    diff(refuse, "suite version", a["suite_version"], b["suite_version"])
    for k in ("split", "limit", "records"):
        if a["data"].get(k) != b["data"].get(k) and (k != "records" or None not in (a["data"].get(k), b["data"].get(k))):
            refuse.append(f"data.{k} is {a['data'].get(k)!r} in the reference but {b['data'].get(k)!r} here")
    diff(refuse, "the prompt set (data fingerprint)", a["data"].get("fingerprint"), b["data"].get("fingerprint"))
    diff(notes, "seed", a["seed"], b["seed"])
    ag, bg = a["generation"] or {}, b["generation"] or {}
    for k in sorted(set(ag) & set(bg)):
        diff(notes, f"generation.{k}", ag[k], bg[k])
    diff(notes, "suite fingerprint (section options)", a["suite_fingerprint"], b["suite_fingerprint"])
    return refuse, notes


def check_comparable(runs: list[AuditResult], labels: list[str], reference: int = 0, *,
                     force: bool = False) -> dict[str, list[str]]:
    """Raise :class:`IncomparableRuns` (one line) when a run is of another suite or other data than
    the reference; with ``force``, return those reasons by label instead (shown in the outputs)."""
    forced: dict[str, list[str]] = {}
    for i, run in enumerate(runs):
        if i == reference:
            continue
        refuse, _ = differences(runs[reference], run)
        if refuse and not force:
            raise IncomparableRuns(f"run {labels[i]!r} is not comparable with the reference {labels[reference]!r}: "
                                   f"{'; '.join(refuse)}; use --force to compare anyway")
        if refuse:
            forced[labels[i]] = refuse
    return forced


def _scores_by_id(run: AuditResult, key: str) -> tuple[dict[str, float] | None, str]:
    """Sample id -> score (NaN kept: a sample with no value is still the same sample) for ``key``."""
    vals = [(s.id, s.scores[key]) for s in run.samples if key in s.scores]
    if not vals:
        return None, "no per-sample scores"
    by_id = {i: (float(v) if finite(v) else math.nan) for i, v in vals}
    if len(by_id) != len(vals):
        return None, "sample ids repeat"
    present = [v for v in by_id.values() if not math.isnan(v)]
    if not present:
        return None, "no finite per-sample scores"
    value = run.metrics.get(key)
    if not finite(value) or not math.isclose(sum(present) / len(present), value, rel_tol=1e-6, abs_tol=1e-9):
        return None, "the metric is not the mean of its per-sample scores"
    return by_id, ""


def paired_values(reference: AuditResult, run: AuditResult, key: str) -> tuple[list[float] | None, list[float] | None, str]:
    """The per-sample scores behind metric ``key`` in both runs, in the same sample order, or
    ``(None, None, why not paired)``. Pairs only when both runs scored exactly the same sample ids
    and each run's metric is the mean of its finite scores; a pair with a NaN (a sample too short
    for the metric, say) stays in the lists and the test drops it."""
    info = run.metric_info(key) or reference.metric_info(key)
    if info is not None and not info.per_sample:
        return None, None, "corpus-level metric"
    a, why = _scores_by_id(reference, key)
    if a is None:
        return None, None, f"{why} in the reference"
    b, why = _scores_by_id(run, key)
    if b is None:
        return None, None, why
    if set(a) != set(b):
        return None, None, (f"samples don't line up ({len(a)} in the reference, {len(b)} here, "
                            f"{len(set(a) & set(b))} in common)")
    ids = sorted(a)
    return [a[i] for i in ids], [b[i] for i in ids], ""


def _default_labels(paths: list[str] | None, n: int) -> list[str]:
    if not paths:
        return [f"run {i + 1}" for i in range(n)]
    labels = []
    for p in paths:
        p = Path(p)
        labels.append(p.parent.name if p.name == "results.json" and p.parent.name else p.stem)
    return [f"{lab} #{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def leaderboard(runs: list[AuditResult], *, labels: list[str] | None = None, reference: int = 0,
                paths: list[str] | None = None, alpha: float = 0.05, n_permutations: int = 2000,
                force: bool = False, metrics: list[str] | None = None) -> dict[str, Any]:
    """N runs as one table (plain data; every leaderboard format renders it, ``.json`` as is).

    Each run gets, per metric: value, interval, delta from the reference run, and where the
    per-sample scores line up a paired permutation test against the reference, Holm-corrected
    across the metrics tested for that run; ``significant`` is ``p_holm <= alpha``. ``metrics``
    keeps only those metrics (a full key, or a section name for all of its metrics); the Holm
    family is then the metrics shown.
    Raises :class:`IncomparableRuns` for runs of another suite or other data unless ``force``.

    Example:
        >>> from audit.results import AuditResult
        >>> runs = [AuditResult(suite={"name": "s"}, model={"spec": m}, generation={}, seed=0, metrics={"q.m": v})
        ...         for m, v in (("a", 1.0), ("b", 2.0), ("c", 0.5))]
        >>> [r["cells"]["q.m"]["delta"] for r in leaderboard(runs)["runs"]]
        [None, 1.0, -0.5]
    """
    if len(runs) < 2:
        raise AuditError(f"a comparison needs at least 2 runs, got {len(runs)}")
    labels = list(labels) if labels else _default_labels(paths, len(runs))
    if len(labels) != len(runs):
        raise AuditError(f"--labels: {len(labels)} labels for {len(runs)} runs")
    if not 0 <= reference < len(runs):
        raise AuditError(f"--reference: run {reference + 1} does not exist (there are {len(runs)})")
    if not 0 < alpha < 1:
        raise AuditError(f"--alpha must be between 0 and 1, got {alpha!r}")
    forced = check_comparable(runs, labels, reference, force=force)
    runs = [with_intervals(r) for r in runs]
    ref = runs[reference]
    keys = list(dict.fromkeys(k for r in [ref, *runs] for k in r.metrics))
    if metrics:
        for want in metrics:
            if not any(k == want or k.partition(".")[0] == want for k in keys):
                raise AuditError(f"--metric {want}: no run has this metric or section (they have: {', '.join(keys)})")
        keys = [k for k in keys if k in metrics or k.partition(".")[0] in metrics]
    metrics = []
    for key in keys:
        info = next((i for i in (r.metric_info(key) for r in [ref, *runs]) if i is not None), None)
        metrics.append({"key": key, "section": key.partition(".")[0],
                        "higher_is_better": info.higher_is_better if info else None,
                        "description": info.description if info else "", "per_sample": info.per_sample if info else None})
    hib = {m["key"]: m["higher_is_better"] for m in metrics}
    out_runs = []
    for i, run in enumerate(runs):
        cells: dict[str, dict[str, Any]] = {}
        for key in keys:
            v, r0 = run.metrics.get(key), ref.metrics.get(key)
            iv = run.intervals.get(key) or {}
            cell: dict[str, Any] = {"value": v, "low": iv.get("low"), "high": iv.get("high"), "level": iv.get("level"),
                                    "delta": None, "relative": None, "change": None, "n": None, "p": None,
                                    "p_holm": None, "significant": None, "verdict": "reference" if i == reference else ""}
            if i != reference:
                if finite(v) and finite(r0):
                    cell["delta"] = v - r0
                    cell["relative"] = (v - r0) / abs(r0) if r0 != 0 else None
                    cell["change"] = change(r0, v, hib[key])
                a, b, why = paired_values(ref, run, key) if key in run.metrics and key in ref.metrics else (None, None, "missing in one run")
                if a is None:
                    cell["verdict"] = f"not paired: {why}"
                else:
                    n = sum(1 for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y)))
                    if n == 0:
                        cell["verdict"] = "not paired: no sample has a score in both runs"
                    else:
                        cell["n"] = n
                        cell["p"] = paired_permutation_test(a, b, n_permutations=n_permutations, seed=metric_seed(0, key))
            cells[key] = cell
        if i != reference:
            tested = [k for k in keys if cells[k]["p"] is not None and not math.isnan(cells[k]["p"])]
            for k, p in zip(tested, holm([cells[k]["p"] for k in tested])):
                c = cells[k]
                c["p_holm"], c["significant"] = p, p <= alpha
                if c["significant"]:
                    c["verdict"] = f"significantly {c['change']}" if c["change"] in ("better", "worse") else "significantly different"
                else:
                    c["verdict"] = "not significant"
        summary = {"significantly better": 0, "significantly worse": 0, "significantly different": 0,
                   "not significant": 0, "not paired": 0}
        for c in cells.values():
            if c["verdict"].startswith("not paired"):
                summary["not paired"] += 1
            elif c["verdict"] in summary:
                summary[c["verdict"]] += 1
        refuse, notes = differences(ref, run) if i != reference else ([], [])
        out_runs.append({**_run_summary(run), "label": labels[i], "path": str(paths[i]) if paths else None,
                         "reference": i == reference, "notes": refuse + notes, "summary": summary, "cells": cells,
                         "failed_gates": [g.expression for g in run.gates if not g.passed]})
    return {"kind": "leaderboard", "reference": reference, "reference_label": labels[reference], "alpha": alpha,
            "test": f"{TEST_NAME} ({n_permutations} sign flips, exact when fewer patterns exist), "
                    f"Holm-corrected across each run's tested metrics",
            "forced": forced, "metrics": metrics, "runs": out_runs}


@BOARD_WRITERS.register(".json")
def _board_json(data: dict[str, Any]) -> str:
    return _json(data)


def _p(v: Any) -> str:
    return "—" if not finite(v) else (f"{v:.2g}" if v >= 0.001 else "<0.001")


@BOARD_WRITERS.register(".md")
def _board_markdown(data: dict[str, Any]) -> str:
    from .markdown import md_code as c, md_escape as e

    runs, metrics = data["runs"], data["metrics"]
    lines = [f"## audit compare: {len(runs)} runs against {e(data['reference_label'])}", "",
             f"Δ = run − reference; p = {e(data['test'])}; significant at α = {data['alpha']:g}.", ""]
    for label, reasons in data["forced"].items():
        lines += [f"> ⚠️ {e(label)} is of other suite or data (forced): {e('; '.join(reasons))}", ""]
    head = "| run | model | gates | " + " | ".join(
        c(m["key"]) + ("" if m["higher_is_better"] is None else (" ↑" if m["higher_is_better"] else " ↓")) for m in metrics) + " |"
    lines += [head, "|---|---|---|" + "---:|" * len(metrics)]
    icon = {"significantly better": "🟢 significant", "significantly worse": "🔴 significant",
            "significantly different": "significant", "not significant": "not significant"}
    for r in runs:
        gates = ("✅" if r["passed"] else "❌") + f" {r['gates_passed']}/{r['gates']}" + (" (error)" if r["errors"] else "")
        cells = []
        for m in metrics:
            x = r["cells"][m["key"]]
            text = fmt(x["value"])
            if x["low"] is not None and x["high"] is not None:
                text += f" [{fmt(x['low'])}, {fmt(x['high'])}]"
            if r["reference"]:
                text += " (reference)"
            else:
                text += f" · Δ {fmt_delta(x['delta'])}"
                if x["p_holm"] is not None:
                    text += f" · p {_p(x['p_holm'])} {icon.get(x['verdict'], '')}"
                elif x["verdict"]:
                    text += f" · {e(x['verdict'])}"
            cells.append(text)
        name = e(r["label"]) + (" **(reference)**" if r["reference"] else "")
        lines.append(f"| {name} | {c(r['model'])} | {gates} | " + " | ".join(cells) + " |")
    notes = [(r["label"], n) for r in runs for n in r["notes"]]
    if notes:
        lines += [""] + [f"- {e(label)}: {e(n)}" for label, n in notes]
    return "\n".join(lines) + "\n"


@BOARD_WRITERS.register(".html")
def _board_html(data: dict[str, Any]) -> str:
    import secrets

    from .html import environment, fresh_ids

    with fresh_ids():
        return environment().get_template("compare_board.html.j2").render(c=data, p_text=_p,
                                                                          nonce=secrets.token_urlsafe(16))


def write_leaderboard(runs: list[AuditResult], path: str | os.PathLike, **options: Any) -> Path:
    """Write the leaderboard of ``runs`` (options as :func:`leaderboard`); the extension picks the format."""
    path = Path(path)
    writer = BOARD_WRITERS.get(path.suffix.lower())
    atomic_write(path, writer(leaderboard(runs, **options)))
    return path
