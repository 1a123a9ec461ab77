"""Release gates: thresholds, confidence bounds and regressions against a baseline.

Three forms, as strings or mappings in a suite's ``gates:`` list:

* threshold: ``quality.perplexity < 300`` / ``{metric: quality.perplexity, op: "<", value: 300}``
* confidence bound: ``toxicity.toxic_rate <= 0.02 @ 95%`` / ``{..., confidence: 0.95}``: the
  one-sided 95% bound (upper for ``<``/``<=``, lower for ``>``/``>=``) must pass, not just the point
  value, so a gate does not pass by luck on a small sample (see :mod:`audit.stats`).
* regression: ``quality.rouge_l regression <= 0.02`` (absolute) or ``quality.perplexity regression
  <= 5%`` (relative to the baseline value) / ``{metric: ..., max_regression: 0.02}``: the metric may
  be worse than the baseline's by at most this much. "Worse" comes from the metric's declared
  direction (``MetricInfo.higher_is_better``); the suite never restates it. ``@ 95%`` applies too
  (the pessimistic bound is compared).

A missing or NaN metric fails, with a reason; so does a regression gate without a baseline.

Example:
    >>> parse_gate("toxicity.toxic_rate <= 0.02 @ 95%").confidence
    0.95
    >>> parse_gate("quality.perplexity regression <= 5%").max_regression
    0.05
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from .results import AuditResult, GateResult
from .stats import ConfidenceSettings, compute_intervals, interval, metric_seed, metric_values

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_METRIC = r"[A-Za-z_][\w]*\.[A-Za-z_][\w.]*"
_LEVEL = r"(?:\s*@\s*(?P<level>\d+(?:\.\d+)?%|0?\.\d+))?"
_GATE_RE = re.compile(rf"^\s*(?P<metric>{_METRIC})\s*(?P<op><=|>=|==|<|>)\s*(?P<value>{_NUM}){_LEVEL}\s*$")
_REGRESSION_RE = re.compile(rf"^\s*(?P<metric>{_METRIC})\s+regression\s*<=\s*(?P<tol>{_NUM})(?P<pct>%)?{_LEVEL}\s*$")


def _level(text: Any) -> float:
    """``"95%"``, ``95``-as-percent string, or ``0.95`` -> 0.95 (validated)."""
    if isinstance(text, str):
        t = text.strip()
        level = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        level = float(text)
    else:
        raise ValueError(f"confidence must be a number like 0.95 or '95%', got {text!r}")
    if not 0.5 <= level < 1:
        raise ValueError(f"confidence must be in [50%, 100%), got {text!r}")
    return level


@dataclass
class Gate:
    """One release gate (a threshold gate unless ``max_regression`` is set)."""

    metric: str                          # "section.metric"
    op: str = "<="                       # one of < <= > >= == (threshold gates)
    threshold: float | None = None       # threshold gates: the number the value (or bound) is compared to
    expression: str = ""                 # as written in the suite (built when empty)
    confidence: float | None = None      # e.g. 0.95: the one-sided bound at this level must pass
    resamples: int | None = None         # bootstrap resamples for this gate (None: the suite's setting)
    max_regression: float | None = None  # regression gates: how much worse than the baseline is allowed
    relative: bool = False               # max_regression is a fraction of the baseline value

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op must be one of {' '.join(OPS)}, got {self.op!r}")
        if self.max_regression is None and self.threshold is None:
            raise ValueError("a gate needs a threshold (value) or max_regression")
        if self.max_regression is not None and not (math.isfinite(self.max_regression) and self.max_regression >= 0):
            raise ValueError(f"max_regression must be a finite number >= 0, got {self.max_regression!r}")
        if self.confidence is not None:
            self.confidence = _level(self.confidence)
            if self.max_regression is None and self.op == "==":
                raise ValueError("a confidence bound needs < <= > or >=, not ==")
        if self.resamples is not None and self.resamples < 100:
            raise ValueError(f"resamples must be >= 100, got {self.resamples!r}")
        if not self.expression:
            at = f" @ {self.confidence:.0%}" if self.confidence else ""
            if self.max_regression is not None:
                tol = f"{self.max_regression * 100:g}%" if self.relative else f"{self.max_regression:g}"
                self.expression = f"{self.metric} regression <= {tol}{at}"
            else:
                self.expression = f"{self.metric} {self.op} {self.threshold:g}{at}"

    @property
    def kind(self) -> str:
        return "regression" if self.max_regression is not None else "threshold"


def _tolerance(value: Any) -> tuple[float, bool]:
    if isinstance(value, str) and value.strip().endswith("%"):
        return float(value.strip()[:-1]) / 100, True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), False
    raise ValueError(f"max_regression must be a number or a percentage like '5%', got {value!r}")


_FIELDS = {"metric", "op", "value", "confidence", "resamples", "max_regression"}


def parse_gate(spec: Any) -> Gate:
    """Parse a gate from its string or mapping form.

    Example:
        >>> parse_gate("diversity.distinct_2 >= 0.3").threshold
        0.3
        >>> g = parse_gate({"metric": "quality.rouge_l", "max_regression": 0.02, "confidence": "90%"})
        >>> g.expression, g.kind
        ('quality.rouge_l regression <= 0.02 @ 90%', 'regression')
    """
    if isinstance(spec, str):
        m = _REGRESSION_RE.match(spec)
        if m:
            tol = float(m.group("tol")) / (100 if m.group("pct") else 1)
            return Gate(metric=m.group("metric"), max_regression=tol, relative=bool(m.group("pct")),
                        confidence=m.group("level"), expression=spec.strip())
        m = _GATE_RE.match(spec)
        if not m:
            raise ValueError(f"cannot parse gate {spec!r}; expected 'section.metric OP number [@ 95%]' with OP in "
                             "< <= > >= ==, or 'section.metric regression <= number[%] [@ 95%]'")
        return Gate(metric=m.group("metric"), op=m.group("op"), threshold=float(m.group("value")),
                    confidence=m.group("level"), expression=spec.strip())
    if isinstance(spec, dict):
        unknown = set(spec) - _FIELDS
        if unknown:
            raise ValueError(f"unknown gate field(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_FIELDS))}")
        metric = spec.get("metric")
        if not isinstance(metric, str) or "." not in metric:
            raise ValueError(f"gate metric must be 'section.metric', got {metric!r}")
        resamples = spec.get("resamples")
        if resamples is not None and (not isinstance(resamples, int) or isinstance(resamples, bool)):
            raise ValueError(f"gate resamples must be an integer, got {resamples!r}")
        if "max_regression" in spec:
            if "value" in spec or "op" in spec:
                raise ValueError("a regression gate takes max_regression, not op/value (the metric's direction decides)")
            tol, rel = _tolerance(spec["max_regression"])
            return Gate(metric=metric, max_regression=tol, relative=rel, confidence=spec.get("confidence"),
                        resamples=resamples)
        for key in ("op", "value"):
            if key not in spec:
                raise ValueError(f"gate mapping needs {key!r} (or max_regression for a regression gate)")
        value = spec["value"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            # A NaN threshold fails every comparison: the gate could never pass and would say nothing.
            raise ValueError(f"gate value must be a finite number, got {value!r}")
        return Gate(metric=metric, op=str(spec["op"]), threshold=float(value), confidence=spec.get("confidence"),
                    resamples=resamples)
    raise ValueError(f"a gate must be a string or a mapping, got {type(spec).__name__}")


def _bound(gate: Gate, result: AuditResult | None, sided: str, settings: ConfidenceSettings) -> tuple[float | None, str]:
    """The one-sided bound of ``gate.metric`` at ``gate.confidence``, or (None, why not)."""
    if result is None:
        return None, "no per-sample values available"
    values, why = metric_values(result, gate.metric)
    if values is None:
        return None, why
    seed = result.seed if settings.seed is None else settings.seed
    iv = interval(values, level=gate.confidence, resamples=gate.resamples or settings.resamples,
                  seed=metric_seed(seed, gate.metric), sided=sided)
    bound = iv["high"] if sided == "upper" else iv["low"]
    return bound, f"n={iv['n']}, {iv['method']}"


def evaluate_gate(gate: Gate, metrics: dict[str, float], *, result: AuditResult | None = None,
                  baseline: dict[str, float] | None = None, settings: ConfidenceSettings | None = None) -> GateResult:
    """Check one gate; missing or NaN fails with a reason.

    Args:
        gate: the gate.
        metrics: the run's flat metrics.
        result: the run (for per-sample values behind confidence bounds and metric directions).
        baseline: the baseline's flat metrics (regression gates fail without them).
        settings: interval settings (resamples, seed) when the gate does not set its own.

    Example:
        >>> evaluate_gate(parse_gate("q.m < 1"), {"q.m": float("nan")}).reason
        'metric q.m is NaN'
    """
    settings = settings or ConfidenceSettings()
    value = metrics.get(gate.metric)

    def res(passed, reason, *, op=gate.op, threshold=gate.threshold, base=None, bound=None):
        return GateResult(gate.expression, gate.metric, op, threshold, value, passed, reason, baseline=base,
                          bound=bound, confidence=gate.confidence)

    if value is None:
        return res(False, f"metric {gate.metric} is missing (section failed or not run)")
    value = float(value)
    if math.isnan(value):
        return res(False, f"metric {gate.metric} is NaN")
    if gate.kind == "threshold":
        if gate.confidence is None:
            ok = OPS[gate.op](value, gate.threshold)
            return res(ok, f"{value:.6g} {gate.op} {gate.threshold:g}" + ("" if ok else " is false"))
        sided = "upper" if gate.op in ("<", "<=") else "lower"
        bound, how = _bound(gate, result, sided, settings)
        if bound is None or math.isnan(bound):
            return res(False, f"no {gate.confidence:.0%} bound for {gate.metric}: {how}")
        ok = OPS[gate.op](bound, gate.threshold)
        return res(ok, f"{gate.confidence:.0%} {sided} bound {bound:.6g} (value {value:.6g}, {how}) {gate.op} "
                       f"{gate.threshold:g}" + ("" if ok else " is false"), bound=bound)

    # Regression gate: compare with the baseline in the metric's own direction.
    info = result.metric_info(gate.metric) if result is not None else None
    if info is None or info.higher_is_better is None:
        why = "is a diagnostic with no better direction" if info is not None else "declares no direction"
        return res(False, f"metric {gate.metric} {why}, so a regression cannot be judged", op="")
    op = ">=" if info.higher_is_better else "<="
    if baseline is None:
        return res(False, "no baseline to compare with (pass --baseline FILE)", op=op)
    base = baseline.get(gate.metric)
    try:  # numpy floats and hand-edited values too: only a finite number can be compared with
        base = None if base is None or isinstance(base, bool) else float(base)
    except (TypeError, ValueError):
        base = None
    if base is None or not math.isfinite(base):
        return res(False, f"metric {gate.metric} is missing or not a finite number in the baseline", op=op)
    tol = gate.max_regression * abs(base) if gate.relative else gate.max_regression
    limit = base - tol if info.higher_is_better else base + tol
    compared, bound, how = value, None, ""
    if gate.confidence is not None:
        bound, how = _bound(gate, result, "lower" if info.higher_is_better else "upper", settings)
        if bound is None or math.isnan(bound):
            return res(False, f"no {gate.confidence:.0%} bound for {gate.metric}: {how}", op=op, threshold=limit, base=base)
        compared = bound
    worse_by = (base - compared) if info.higher_is_better else (compared - base)
    ok = OPS[op](compared, limit)
    what = f"{gate.confidence:.0%} bound {compared:.6g} (value {value:.6g}, {how})" if bound is not None else f"{value:.6g}"
    allowed = f"{tol:.6g}" + (f" ({gate.max_regression:.0%} of baseline)" if gate.relative else "")
    if worse_by > 0:
        reason = f"{what} vs baseline {base:.6g}: worse by {worse_by:.6g}, allowed {allowed}" + ("" if ok else " (exceeded)")
    else:
        reason = f"{what} vs baseline {base:.6g}: not worse"
    return res(ok, reason, op=op, threshold=limit, base=base, bound=bound)


def apply_gates(result: AuditResult, gates: list[Gate], *, baseline: AuditResult | None = None,
                confidence: ConfidenceSettings | None = None) -> AuditResult:
    """Fill ``result.intervals``, evaluate every gate into ``result.gates`` and set ``result.passed``.

    Regression gates compare with ``baseline`` (or, when None, the metrics recorded in
    ``result.baseline``). A failed section also makes the run not pass.
    """
    settings = confidence or ConfidenceSettings()
    result.intervals = compute_intervals(result, settings)
    base_metrics = baseline.metrics if baseline is not None else (result.baseline or {}).get("metrics")
    result.gates = [evaluate_gate(g, result.metrics, result=result, baseline=base_metrics, settings=settings) for g in gates]
    for g in result.gates:
        # A section may qualify a metric for every gate on it (e.g. bias: a gap the scorer alone produces).
        section, _, name = g.metric.partition(".")
        sec = result.sections.get(section)
        notes = sec.details.get("gate_notes") if sec is not None and isinstance(sec.details, dict) else None
        if isinstance(notes, dict) and isinstance(notes.get(name), str):
            g.reason = f"{g.reason}; {notes[name]}"
    result.passed = all(g.passed for g in result.gates) and not result.errors
    return result
