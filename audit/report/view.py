"""Format-agnostic views of an :class:`~audit.results.AuditResult` shared by the HTML, Markdown and
comparison renderers: the verdict, metric rows (value, interval, baseline, delta, direction) and the
"worst first" ordering of per-sample tables.

Everything here is plain data; escaping is the renderers' job.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..results import AuditResult, GateResult
from ..stats import compute_intervals


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v: Any) -> bool:
    return is_num(v) and math.isfinite(v)


def fmt(v: Any, digits: int = 4) -> str:
    """A number for humans: 4 significant digits, ``nan``, ``—`` for missing.

    Example:
        >>> fmt(0.123456), fmt(None), fmt(float("nan")), fmt(12345.6)
        ('0.1235', '—', 'nan', '1.235e+04')
    """
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if not is_num(v):
        return str(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}g}"


def gate_failure_message(g: GateResult) -> str:
    """``expression: value V, 95% bound B, threshold OP T, baseline X; reason`` for CI failure messages."""
    parts = [f"value {fmt(g.value)}"]
    if g.bound is not None:
        parts.append(f"{g.confidence:.0%} bound {fmt(g.bound)}")
    if g.threshold is not None:
        parts.append(f"threshold {g.op} {fmt(g.threshold)}")
    if g.baseline is not None:
        parts.append(f"baseline {fmt(g.baseline)}")
    return f"{g.expression}: {', '.join(parts)}; {g.reason}"


def fmt_delta(v: Any) -> str:
    if not finite(v):
        return "—"
    return ("+" if v > 0 else "") + fmt(v)


def verdict(result: AuditResult) -> str:
    """``"error"`` if a section failed, else ``"pass"`` or ``"fail"`` (the exit code's meaning)."""
    if result.errors:
        return "error"
    return "pass" if result.passed else "fail"


def change(old: Any, new: Any, higher_is_better: bool | None, *, rel_tol: float = 1e-9) -> str | None:
    """Whether ``new`` is ``"better"``, ``"worse"`` or ``"same"`` as ``old`` (None: unknown).

    Example:
        >>> change(0.2, 0.3, True), change(0.2, 0.3, False), change(1.0, 1.0, True), change(1, 2, None)
        ('better', 'worse', 'same', None)
    """
    if not (finite(old) and finite(new)):
        return None
    if math.isclose(old, new, rel_tol=rel_tol, abs_tol=1e-12):
        return "same"
    if higher_is_better is None:
        return None
    return "better" if (new > old) == higher_is_better else "worse"


@dataclass
class MetricRow:
    """One metric as every report shows it."""

    key: str                          # "section.metric"
    section: str
    name: str
    value: float | None
    higher_is_better: bool | None = None
    description: str = ""
    per_sample: bool = True
    low: float | None = None          # two-sided interval bounds (None: no interval)
    high: float | None = None
    level: float | None = None
    method: str = ""
    why: str = ""                     # why there is no interval
    baseline: float | None = None
    delta: float | None = None
    change: str | None = None         # better / worse / same vs the baseline
    gates: list[GateResult] = field(default_factory=list)

    @property
    def arrow(self) -> str:
        return "" if self.higher_is_better is None else ("↑" if self.higher_is_better else "↓")

    @property
    def interval_text(self) -> str:
        if self.low is None or self.high is None:
            return "corpus-level" if not self.per_sample else (self.why or "—")
        return f"[{fmt(self.low)}, {fmt(self.high)}]"


def with_intervals(result: AuditResult) -> AuditResult:
    """``result`` itself, or for results written before intervals existed, a shallow copy with them
    computed (seeded, so reproducible). Renderers only read: the caller's result is left as it is.
    """
    if result.intervals or not result.metrics:
        return result
    return dataclasses.replace(result, intervals=compute_intervals(result))


def metric_rows(result: AuditResult, baseline_metrics: dict[str, float] | None = None) -> dict[str, list[MetricRow]]:
    """Metric rows grouped by section, in the sections' order.

    ``baseline_metrics`` defaults to the baseline recorded in ``result.baseline`` (if any).
    """
    if baseline_metrics is None:
        baseline_metrics = (result.baseline or {}).get("metrics") or {}
    gates_by_metric: dict[str, list[GateResult]] = {}
    for g in result.gates:
        gates_by_metric.setdefault(g.metric, []).append(g)
    out: dict[str, list[MetricRow]] = {name: [] for name in result.sections}
    for key, value in result.metrics.items():
        section, _, name = key.partition(".")
        info = result.metric_info(key)
        iv = result.intervals.get(key) or {}
        base = baseline_metrics.get(key)
        hib = info.higher_is_better if info else None
        row = MetricRow(key=key, section=section, name=name, value=value, higher_is_better=hib,
                        description=info.description if info else "", per_sample=info.per_sample if info else True,
                        low=iv.get("low"), high=iv.get("high"), level=iv.get("level"), method=iv.get("method", ""),
                        why=iv.get("why", ""), baseline=base,
                        delta=(value - base) if finite(value) and finite(base) else None,
                        change=change(base, value, hib), gates=gates_by_metric.get(key, []))
        out.setdefault(section, []).append(row)
    return out


def sort_spec(section, columns: list[str]) -> tuple[str | None, bool | None]:
    """The column to sort a section's records by, worst first, and its direction.

    A section may say so in ``details["records_sort"] = {"key": ..., "higher_is_better": ...}``;
    otherwise the first column named like one of its declared metrics is used.
    """
    hint = (section.details or {}).get("records_sort") if section is not None else None
    if isinstance(hint, dict) and hint.get("key") in columns:
        return hint["key"], hint.get("higher_is_better")
    if section is not None:
        for col in columns:
            info = section.metric_info.get(col)
            if info is not None:
                return col, info.higher_is_better
    for col in columns:
        if col in ("score", "value"):
            return col, None
    return None, None


def sample_rows(result: AuditResult, section: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the main prompt set: id, prompt, generation(s), reference and per-sample scores.

    With ``section``, only that section's scores (``section.x`` -> column ``x``); rows without
    any of them are dropped. Returns (rows, score columns).
    """
    prefix = f"{section}." if section else ""
    rows, score_cols = [], []
    for s in result.samples:
        scores = {k[len(prefix):]: v for k, v in s.scores.items() if k.startswith(prefix)}
        if section and not scores:
            continue
        for k in scores:
            if k not in score_cols:
                score_cols.append(k)
        gens = s.generations or []
        row = {"id": s.id, "prompt": s.prompt,
               "generation": gens[0] if len(gens) == 1 else "\n\n".join(f"[{i + 1}] {g}" for i, g in enumerate(gens))}
        if s.reference is not None:
            row["reference"] = s.reference
        row.update(scores)
        rows.append(row)
    return rows, score_cols
