"""Two runs side by side: every metric's old and new value, the delta coloured by the metric's
direction (better / worse), whether the intervals separate, gates before and after, and the
samples whose scores moved most. ``audit compare`` and ``audit harden`` (before/after) use it.

Example:
    >>> from audit.results import AuditResult
    >>> old = AuditResult(suite={"name": "s"}, model={"spec": "a"}, generation={}, seed=0, metrics={"q.m": 1.0})
    >>> new = AuditResult(suite={"name": "s"}, model={"spec": "b"}, generation={}, seed=0, metrics={"q.m": 2.0})
    >>> comparison(old, new)["metrics"][0]["delta"]
    1.0
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from ..baseline import identity, incompatibilities
from ..registry import Registry
from ..results import AuditResult, json_safe, atomic_write
from .view import change, finite, fmt, fmt_delta, verdict, with_intervals

COMPARE_WRITERS: Registry[Callable[[dict[str, Any]], str]] = Registry("comparison format")


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
