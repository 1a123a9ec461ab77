"""Markdown summary for a pull-request comment or ``$GITHUB_STEP_SUMMARY``: verdict, gate table,
metric table with intervals and baseline deltas, section errors.

Untrusted text (section errors, model specs, paths) is escaped so it cannot open a link, image,
HTML tag, table cell or @-mention: GitHub renders Markdown comments, and a model's output is not
allowed to write into them. Per-sample text is left to the HTML report.

Example:
    >>> from audit.results import AuditResult
    >>> render_markdown(AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0)).splitlines()[0]
    '## ✅ audit PASS: suite `s` on `m`'
"""

from __future__ import annotations

import re

from ..results import AuditResult
from ..io.untrusted import one_line
from . import WRITERS
from .view import fmt, fmt_delta, metric_rows, verdict

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text) -> str:
    """Plain Markdown text that renders literally (no markup, HTML, links, cells or mentions).

    Example:
        >>> md_escape('<img src=x> [a](b) | @team')
        '&lt;img src=x&gt; \\\\[a\\\\]\\\\(b\\\\) \\\\| @\\u200bteam'
    """
    # One line without control characters (ANSI escapes are live in a terminal that prints summary.md).
    s = one_line(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _SPECIAL.sub(r"\\\1", s)
    return s.replace("@", "@\u200b")


def md_code(text) -> str:
    """A code span that cannot be closed early nor split a table cell."""
    s = one_line(text).replace("`", "'").replace("|", "\\|")
    return f"`{s}`"


_ICON = {"pass": "✅", "fail": "❌", "error": "⚠️"}


def render_markdown(result: AuditResult) -> str:
    """The summary as GitHub-flavoured Markdown (writer for ``.md``)."""
    v = verdict(result)
    model = result.model.get("spec") or result.model.get("path") or "model"
    lines = [f"## {_ICON[v]} audit {v.upper()}: suite {md_code(result.suite.get('name'))} on {md_code(model)}", ""]
    npass = sum(g.passed for g in result.gates)
    facts = [f"{npass} of {len(result.gates)} gates passed" if result.gates else "no gates",
             f"{len(result.sections)} sections", f"{result.data.get('records', len(result.samples))} prompts"]
    if result.baseline:
        facts.append(f"baseline {md_code(result.baseline.get('label') or result.baseline.get('path'))}")
    lines += [" · ".join(facts), ""]
    for name, err in result.errors.items():
        lines.append(f"> ⚠️ section **{md_escape(name)}** failed: {md_escape(err)}")
    if result.errors:
        lines.append("")
    if result.baseline and result.baseline.get("incompatible"):
        lines += [f"> ⚠️ baseline forced despite: {md_escape(result.baseline['incompatible'])}", ""]
    if result.gates:
        lines += ["| | gate | value | bound | threshold | baseline | reason |", "|---|---|---:|---:|---:|---:|---|"]
        for g in sorted(result.gates, key=lambda g: g.passed):  # failures first
            bound = f"{fmt(g.bound)} @ {g.confidence:.0%}" if g.bound is not None and g.confidence else "—"
            thr = f"{md_escape(g.op)} {fmt(g.threshold)}" if g.threshold is not None else "—"
            lines.append(f"| {'✅' if g.passed else '❌'} | {md_code(g.expression)} | {fmt(g.value)} | {bound} | {thr} | "
                         f"{fmt(g.baseline)} | {md_escape(g.reason)} |")
        lines.append("")
    rows = [r for section_rows in metric_rows(result).values() for r in section_rows]
    if rows:
        has_base = any(r.baseline is not None for r in rows)
        level = next((r.level for r in rows if r.level), 0.95)
        head = f"| metric | value | {level:.0%} interval |" + (" baseline | Δ |" if has_base else "")
        lines += ["<details><summary>All metrics</summary>", "", head,
                  "|---|---:|---:|" + ("---:|---:|" if has_base else "")]
        mark = {"better": " 🟢", "worse": " 🔴"}
        for r in rows:
            iv = f"[{fmt(r.low)}, {fmt(r.high)}]" if r.low is not None else md_escape(r.interval_text)
            line = f"| {md_code(r.key)} {r.arrow} | {fmt(r.value)} | {iv} |"
            if has_base:
                line += f" {fmt(r.baseline)} | {fmt_delta(r.delta)}{mark.get(r.change or '', '')} |"
            lines.append(line)
        lines += ["", "</details>", ""]
    lines.append(f"<sub>model fingerprint {md_code(result.model.get('fingerprint', '?'))} · suite fingerprint "
                 f"{md_code(result.suite.get('fingerprint', '?'))} · seed {result.seed} · audit "
                 f"{md_escape(result.versions.get('audit', '?'))}</sub>")
    return "\n".join(lines) + "\n"


WRITERS.register(".md")(render_markdown)
