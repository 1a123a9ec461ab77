"""Plain-text console summary: verdict, metrics per section, gates.

Every string from a suite, a model, a dataset or an exception goes through ``one_line``: a suite
``name`` with a newline and ANSI escapes must not print a fake ``PASS`` line in live colour.
"""

from __future__ import annotations

import math

from ..results import AuditResult
from ..io.untrusted import one_line
from . import WRITERS


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.4g}"


@WRITERS.register(".txt")
def render_console(result: AuditResult) -> str:
    """A compact text summary (what ``audit run`` prints).

    Example:
        >>> from audit.results import AuditResult
        >>> print(render_console(AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0)).splitlines()[0])
        audit s on m: PASS
    """
    s = one_line
    lines = [f"audit {s(result.suite.get('name'))} on {s(result.model.get('spec'))}: {'PASS' if result.passed else 'FAIL'}"]
    for name, sec in result.sections.items():
        head = f"  [{s(name)}] ({sec.seconds:.1f}s)"
        if sec.error:
            lines.append(f"{head} ERROR: {s(sec.error)}")
            continue
        lines.append(head)
        # One column per section, as wide as its longest name (per-category metrics run long).
        width = max([28] + [len(s(k)) for k in sec.metrics])
        why_nan = sec.details.get("why_nan", {}) if isinstance(sec.details, dict) else {}
        for k, v in sec.metrics.items():
            info = sec.metric_info.get(k)
            arrow = "" if info is None else {True: " (higher is better)", False: " (lower is better)"}.get(info.higher_is_better,
                                                                                                        " (diagnostic)")
            if (v is None or v != v) and k in why_nan:   # NaN: say why
                arrow += f"  ({s(why_nan[k])})"
            lines.append(f"    {s(name)}.{s(k):<{width}} {_fmt(v):>10}{arrow}")
    if result.gates:
        lines.append("  gates:")
        for g in result.gates:
            lines.append(f"    {'PASS' if g.passed else 'FAIL'}  {s(g.expression)}  ({s(g.reason)})")
    return "\n".join(lines) + "\n"
