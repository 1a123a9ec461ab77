"""Chart geometry for the HTML report: numbers in, pixel positions out.

The SVG itself is written by the Jinja macros in ``assets/macros.html.j2`` (autoescaped, so a
label from a dataset stays text); this module only does the arithmetic, so charts render without
JavaScript and show in a screenshot or a printed page.

Example:
    >>> c = bar_chart([{"label": "a", "value": 1.0}, {"label": "b", "value": -0.5}], width=300)
    >>> [round(b["x"]) for b in c["bars"]], round(c["zero"])
    ([123, 70], 123)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .view import finite, fmt

LABEL_W = 160      # px reserved for bar labels at most (a label that needs more is cut with "…", in full on hover)
CHAR_W = 6.4       # px per character of an 11px label (sans-serif, a generous average: digits and "_" are wide)
ROW_H = 22         # px per bar


def label_width(labels: Sequence[str], *, most: float = LABEL_W) -> tuple[float, int]:
    """Room for bar labels: (px reserved, characters that fit). As wide as the longest label needs, at most ``most``.

    Example:
        >>> label_width(["a", "bb"])
        (60, 7)
        >>> label_width(["x" * 100])
        (160, 23)
    """
    need = max((len(t) for t in labels), default=0) * CHAR_W + 12
    w = min(max(60, math.ceil(need)), most)
    return w, int((w - 12) // CHAR_W)


def _domain(values: Sequence[float], include_zero: bool = True) -> tuple[float, float]:
    vals = [v for v in values if finite(v)]
    if include_zero:
        vals.append(0.0)
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if lo == hi:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    pad = (hi - lo) * 0.06
    return (lo - pad if lo < 0 or not include_zero else lo), hi + pad


def _scaler(lo: float, hi: float, x0: float, x1: float):
    span = (hi - lo) or 1.0
    return lambda v: x0 + (min(max(v, lo), hi) - lo) / span * (x1 - x0)


def bar_chart(items: Sequence[dict[str, Any]], *, width: int = 560, threshold: float | None = None,
              baseline: float | None = None) -> dict[str, Any]:
    """Horizontal bars with optional interval whiskers, a threshold line and a baseline line.

    Args:
        items: ``{"label": str, "value": float, "low"?: float, "high"?: float}`` each.
        width: SVG width in px.
        threshold: draw a dashed line here (e.g. a gate's threshold).
        baseline: draw a solid marker line here (e.g. the baseline's value).
    """
    vals = [it.get(k) for it in items for k in ("value", "low", "high")] + [threshold, baseline]
    lo, hi = _domain(vals)
    label_w, label_chars = label_width([str(it.get("label", "")) for it in items], most=min(LABEL_W * 1.4, width * 0.42))
    x = _scaler(lo, hi, label_w, width - 60)
    zero = x(0.0) if lo <= 0 <= hi else x(lo)
    bars = []
    for i, it in enumerate(items):
        v = it.get("value")
        y = 8 + i * ROW_H
        bar = {"label": str(it.get("label", "")), "y": y, "value": v, "text": fmt(v), "ok": finite(v),
               "x": zero, "w": 0.0}
        if finite(v):
            xv = x(v)
            bar["x"], bar["w"] = min(zero, xv), abs(xv - zero)
            bar["end"] = xv
        if finite(it.get("low")) and finite(it.get("high")):
            bar["whisker"] = (x(it["low"]), x(it["high"]))
        bars.append(bar)
    height = 16 + len(items) * ROW_H
    return {"width": width, "height": height, "bars": bars, "zero": zero, "label_w": label_w, "label_chars": label_chars,
            "threshold": x(threshold) if finite(threshold) else None,
            "baseline": x(baseline) if finite(baseline) else None,
            "ticks": [{"x": x(t), "text": fmt(t, 3)} for t in _ticks(lo, hi)]}


def histogram(values: Sequence[float], *, bins: int = 20, width: int = 560, height: int = 120,
              marks: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A histogram of per-sample values with vertical marks (mean, threshold, baseline).

    ``marks`` are ``{"value": float, "label": str, "kind": "mean"|"threshold"|"baseline"}``.
    """
    vals = [float(v) for v in values if finite(v)]
    if not vals:
        return {"empty": True, "width": width, "height": height}
    lo, hi = min(vals), max(vals)
    for m in marks:
        if finite(m.get("value")):
            lo, hi = min(lo, m["value"]), max(hi, m["value"])
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    nb = max(1, min(bins, len(set(vals)) if len(set(vals)) > 1 else 1, bins))
    step = (hi - lo) / nb
    counts = [0] * nb
    for v in vals:
        counts[min(nb - 1, int((v - lo) / step))] += 1
    left, right, top, bottom = 8, width - 8, 8, height - 22
    cmax = max(counts)
    bw = (right - left) / nb
    rects = [{"x": left + i * bw + 1, "w": max(bw - 2, 1), "y": bottom - (c / cmax) * (bottom - top),
              "h": (c / cmax) * (bottom - top), "count": c,
              "range": f"{fmt(lo + i * step, 3)} – {fmt(lo + (i + 1) * step, 3)}"} for i, c in enumerate(counts)]
    sx = _scaler(lo, hi, left, right)
    return {"empty": False, "width": width, "height": height, "rects": rects, "bottom": bottom, "n": len(vals),
            "marks": [{"x": sx(m["value"]), "label": str(m.get("label", "")), "kind": m.get("kind", "mean")}
                      for m in marks if finite(m.get("value"))],
            "ticks": [{"x": sx(t), "text": fmt(t, 3)} for t in _ticks(lo, hi)]}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values in [lo, hi]."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return []
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=mag * 10)
    start = math.ceil(lo / step) * step
    out, t = [], start
    while t <= hi + 1e-12 and len(out) < 20:
        out.append(round(t, 12))
        t += step
    return out
