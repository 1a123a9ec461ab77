"""Release gates: ``section.metric OP number``; a missing or NaN metric fails with a reason.

A gate is written as a string (``"quality.perplexity < 300"``) or a mapping
(``{metric: quality.perplexity, op: "<", value: 300}``).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from .results import AuditResult, GateResult

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
_GATE_RE = re.compile(r"^\s*([A-Za-z_][\w]*\.[A-Za-z_][\w.]*)\s*(<=|>=|==|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass
class Gate:
    """One release gate."""

    metric: str          # "section.metric"
    op: str              # one of < <= > >= ==
    threshold: float
    expression: str = ""

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op must be one of {' '.join(OPS)}, got {self.op!r}")
        if not self.expression:
            self.expression = f"{self.metric} {self.op} {self.threshold:g}"


def parse_gate(spec: Any) -> Gate:
    """Parse a gate from its string or mapping form.

    Example:
        >>> parse_gate("diversity.distinct_2 >= 0.3").threshold
        0.3
    """
    if isinstance(spec, str):
        m = _GATE_RE.match(spec)
        if not m:
            raise ValueError(f"cannot parse gate {spec!r}; expected 'section.metric OP number' with OP in < <= > >= ==")
        return Gate(metric=m.group(1), op=m.group(2), threshold=float(m.group(3)), expression=spec.strip())
    if isinstance(spec, dict):
        unknown = set(spec) - {"metric", "op", "value"}
        if unknown:
            raise ValueError(f"unknown gate field(s) {', '.join(sorted(unknown))}; valid: metric, op, value")
        try:
            metric, op, value = spec["metric"], spec["op"], spec["value"]
        except KeyError as e:
            raise ValueError(f"gate mapping needs {e.args[0]!r}") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"gate value must be a number, got {value!r}")
        if not isinstance(metric, str) or "." not in metric:
            raise ValueError(f"gate metric must be 'section.metric', got {metric!r}")
        return Gate(metric=metric, op=str(op), threshold=float(value))
    raise ValueError(f"a gate must be a string or a mapping, got {type(spec).__name__}")


def evaluate_gate(gate: Gate, metrics: dict[str, float]) -> GateResult:
    """Check one gate against a flat metrics dict; missing or NaN fails with a reason."""
    value = metrics.get(gate.metric)
    if value is None:
        reason = f"metric {gate.metric} is missing (section failed or not run)"
        return GateResult(gate.expression, gate.metric, gate.op, gate.threshold, None, False, reason)
    value = float(value)
    if math.isnan(value):
        return GateResult(gate.expression, gate.metric, gate.op, gate.threshold, value, False, f"metric {gate.metric} is NaN")
    ok = OPS[gate.op](value, gate.threshold)
    reason = f"{value:.6g} {gate.op} {gate.threshold:g}" + ("" if ok else " is false")
    return GateResult(gate.expression, gate.metric, gate.op, gate.threshold, value, ok, reason)


def apply_gates(result: AuditResult, gates: list[Gate]) -> AuditResult:
    """Evaluate every gate into ``result.gates`` and set ``result.passed``."""
    result.gates = [evaluate_gate(g, result.metrics) for g in gates]
    result.passed = all(g.passed for g in result.gates) and not result.errors
    return result
