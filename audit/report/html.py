"""The HTML report: one self-contained file (inline CSS, JS and SVG; no network), rendered with
Jinja2 autoescape from an :class:`~audit.results.AuditResult` alone.

Safety: every string from a model, dataset or attack is untrusted. Templates are autoescaped
(``autoescape=True`` for every template, whatever its name); data for scripts goes through
``|tojson`` into ``<script type="application/json">`` (``<``, ``>``, ``&``, ``'`` become ``\\u003c``...,
so ``</script>`` cannot close the block); the script renders it with ``textContent`` only; and a
Content-Security-Policy lets only our nonce-tagged script run and loads nothing from anywhere.
``|safe``/``Markup`` is used only for assets we ship and HTML our own templates rendered.

Sections: a section named ``X`` is rendered by ``assets/section_X.html.j2`` when that template
exists, else by ``assets/section.html.j2`` (the generic rendering). See docs/reports.md,
"Adding a section to the report".

Example:
    >>> from audit.results import AuditResult
    >>> html = render_html(AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0))
    >>> "<!doctype html>" in html and "PASS" in html
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import secrets
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader, TemplateNotFound
from markupsafe import Markup

from ..results import AuditResult, SectionResult, json_safe
from . import WRITERS, charts
from .view import fmt, fmt_delta, is_num, metric_rows, sample_rows, sort_spec, verdict, with_intervals

log = logging.getLogger("audit")

ASSETS = Path(__file__).parent / "assets"


def _dumps(obj: Any, **kwargs) -> str:
    # JSON has no NaN/inf: JSON.parse would throw on them, so they become null first.
    return json.dumps(json_safe(obj), allow_nan=False, ensure_ascii=False, **kwargs)


class _Ids:
    """Element ids unique within one rendered report (numbered afresh per render: output is reproducible)."""

    def __init__(self):
        self.n = 0

    def __call__(self, prefix: str = "el") -> str:
        self.n += 1
        return f"{prefix}-{self.n}"


# The counter of the page being rendered. Per render, not in the (shared, cached) environment:
# two renders at once (threads) or one inside another each number their own ids from 1.
_IDS: contextvars.ContextVar[_Ids] = contextvars.ContextVar("audit_report_ids")


def uid(prefix: str = "el") -> str:
    """The next element id of the page being rendered (the templates' ``uid()``)."""
    ids = _IDS.get(None)
    if ids is None:
        raise RuntimeError("uid() numbers the elements of one page: call it while rendering, inside fresh_ids()")
    return ids(prefix)


@contextlib.contextmanager
def fresh_ids():
    """Number element ids from 1 for the page rendered inside this block."""
    token = _IDS.set(_Ids())
    try:
        yield
    finally:
        _IDS.reset(token)


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> Markup:
    # Only files we ship are marked safe; a name never comes from results.
    return Markup((ASSETS / name).read_text(encoding="utf-8"))


def table_data(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, sort: str | None = None,
               higher_is_better: bool | None = None, limit: int | None = None) -> dict[str, Any]:
    """Normalise records for the interactive table: columns, rows as lists, worst first.

    Nested values (lists, dicts) are shown as compact JSON text. With ``sort`` and a known
    ``higher_is_better`` the rows start worst first (lowest first if higher is better).
    """
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns and not str(k).startswith("_"):
                    columns.append(k)
    columns = [str(c) for c in columns]

    def cell(v):
        if v is None or isinstance(v, (str, bool)) or is_num(v):
            return v
        return json.dumps(json_safe(v), ensure_ascii=False)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    if sort in columns and higher_is_better is not None:
        i = columns.index(sort)
        nums = [row for row in body if is_num(row[i]) and row[i] == row[i]]
        rest = [row for row in body if not (is_num(row[i]) and row[i] == row[i])]
        body = sorted(nums, key=lambda row: row[i], reverse=not higher_is_better) + rest
    total = len(body)
    if limit is not None:
        body = body[:limit]
    numeric = [bool(body) and all(v is None or is_num(v) for v in (row[j] for row in body)) and
               any(is_num(row[j]) for row in body) for j in range(len(columns))]
    return {"columns": columns, "numeric": numeric, "rows": body, "sort": sort if sort in columns else None,
            "higher_is_better": higher_is_better, "total": total}


def classify(value: Any) -> str:
    """How the generic rendering shows a ``details`` value.

    ``scalar`` (a key-value row), ``numbers`` (dict of numbers: bar chart), ``table`` (dict of
    dicts of scalars: one row per key, bars of the first numeric column), ``rows`` (list of dicts:
    interactive table), ``list`` (list of scalars) or ``other`` (pretty-printed JSON text).
    """
    def scalar(v):
        return v is None or isinstance(v, (str, bool)) or is_num(v)

    if scalar(value):
        return "scalar"
    if isinstance(value, dict) and value:
        vals = list(value.values())
        if all(is_num(v) for v in vals):
            return "numbers"
        if all(isinstance(v, dict) and all(scalar(x) for x in v.values()) for v in vals):
            return "table"
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(v, dict) for v in value):
            return "rows"
        if all(scalar(v) for v in value):
            return "list"
    return "other"


def table_bars(table: dict[str, dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Bars of the first numeric column of a dict-of-dicts table (e.g. a per-group score)."""
    cols = list(dict.fromkeys(k for row in table.values() for k in row))
    for c in cols:
        if all(is_num(row.get(c)) for row in table.values()):
            return c, [{"label": k, "value": row[c], "low": row.get(f"{c}_low"), "high": row.get(f"{c}_high")}
                       for k, row in table.items()]
    return None, []


def bar_items(numbers: dict[str, float]) -> list[dict[str, Any]]:
    return [{"label": k, "value": v} for k, v in numbers.items()]


def table_rows(table: dict[str, dict[str, Any]], key: str = "name") -> list[dict[str, Any]]:
    """A dict-of-dicts as rows, the outer key first (under ``key``)."""
    return [{key: k, **row} for k, row in table.items()]


def failed_sections(result: AuditResult) -> set[str]:
    """Sections with at least one failed gate (for the contents' status dots)."""
    return {g.metric.partition(".")[0] for g in result.gates if not g.passed}


def all_samples(result: AuditResult) -> list[dict[str, Any]]:
    return sample_rows(result)[0]


def interval_note(result: AuditResult) -> str:
    """One line on how the intervals were computed."""
    ivs = [iv for iv in result.intervals.values() if iv.get("low") is not None]
    if not ivs:
        return "no metric of this run is a mean over samples, so none has an interval."
    level = ivs[0].get("level", 0.95)
    res = max((iv.get("resamples") or 0) for iv in ivs)
    return (f"two-sided {level:.0%} intervals of per-sample means: Wilson score for 0/1 rates, otherwise a percentile "
            f"bootstrap with {res} seeded resamples. Corpus-level metrics (not means over samples) have none.")


def pretty_json(value: Any) -> str:
    return json.dumps(json_safe(value), indent=2, ensure_ascii=False)


def wbr(text: Any) -> Markup:
    """Escaped ``text`` with line-break opportunities after ``_`` and ``.``: a long metric name or gate
    (``bias.max_significant_toxicity_gap``) wraps inside its cell instead of widening the table off the page.

    Example:
        >>> str(wbr("a.b_c<"))
        'a.<wbr>b_<wbr>c&lt;'
    """
    return Markup(str(Markup.escape(text)).replace("_", "_<wbr>").replace(".", ".<wbr>"))


@functools.lru_cache(maxsize=None)
def environment() -> Environment:
    """The Jinja environment of every report template (autoescape on for all of them)."""
    env = Environment(loader=FileSystemLoader(str(ASSETS)), autoescape=True, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.policies["json.dumps_function"] = _dumps
    env.filters.update(num=fmt, delta=fmt_delta, wbr=wbr)
    env.globals.update(asset=_asset, bar_geometry=charts.bar_chart, hist_geometry=charts.histogram, table_data=table_data,
                       classify=classify, table_bars=table_bars, bar_items=bar_items, table_rows=table_rows,
                       failed_sections=failed_sections, all_samples=all_samples, interval_note=interval_note, pretty_json=pretty_json, is_num=is_num, uid=uid)
    return env


def has_section_template(name: str) -> bool:
    try:
        environment().get_template(f"section_{name}.html.j2")
        return True
    except TemplateNotFound:
        return False


def _section_context(result: AuditResult, section: SectionResult, rows) -> dict[str, Any]:
    """What a section template sees: the section, its metric rows and pre-rendered generic parts."""
    macros = environment().get_template("macros.html.j2").module
    if section.records:
        cols = list(dict.fromkeys(k for r in section.records for k in r if not str(k).startswith("_")))
        sort, hib = sort_spec(section, cols)
        records = macros.records_table(section.records, columns=cols, sort=sort, higher_is_better=hib,
                                       caption=f"{len(section.records)} records")
    else:
        srows, score_cols = sample_rows(result, section.name)
        sort, hib = sort_spec(section, score_cols)
        records = macros.records_table(srows, sort=sort, higher_is_better=hib,
                                       caption=f"{len(srows)} samples with {section.name} scores") if srows else Markup("")
    parts = {
        "metrics": macros.metric_table(rows),
        "charts": macros.metric_charts(rows),
        "distributions": macros.distributions(section, rows),
        "details": macros.details(section.details),
        "records": records,
    }
    return {"result": result, "section": section, "rows": rows, "parts": parts, "m": macros}


def render_section(result: AuditResult, section: SectionResult, rows) -> Markup:
    """One section's HTML: its own template if it has one, else the generic rendering.

    A bug in a section's template must not cost the whole report: it falls back to the generic
    rendering with a visible note.
    """
    if _IDS.get(None) is None:  # rendered on its own, not as part of a page: number its ids from 1
        with fresh_ids():
            return render_section(result, section, rows)
    env = environment()
    if section.error:
        # Markup: our own template's output (section.error is escaped inside it), not text to escape again.
        return Markup(env.get_template("section_error.html.j2").render(section=section))
    ctx = _section_context(result, section, rows)
    name = f"section_{section.name}.html.j2"
    if has_section_template(section.name):
        try:
            return Markup(env.get_template(name).render(**ctx))
        except Exception as e:  # noqa: BLE001 - reported in the page and the log
            log.warning("report: template %s failed (%s: %s); using the generic rendering", name, type(e).__name__, e)
            ctx["template_error"] = f"{name} failed: {type(e).__name__}: {e}"
    return Markup(env.get_template("section.html.j2").render(**ctx))


def render_html(result: AuditResult) -> str:
    """The report as one HTML document (writer for ``.html``).

    Pure: ``result`` is only read, and the same result renders to the same page (but for the
    Content-Security-Policy nonce, new in every page), also when several render at once.
    """
    env = environment()
    # Results written before intervals existed get them here (seeded, so reproducible), on a copy.
    result = with_intervals(result)
    with fresh_ids():
        rows = metric_rows(result)
        sections = [{"name": name, "section": sec, "html": render_section(result, sec, rows.get(name, []))}
                    for name, sec in result.sections.items()]
        return env.get_template("report.html.j2").render(result=result, verdict=verdict(result), sections=sections,
                                                        rows=rows, nonce=secrets.token_urlsafe(16))


WRITERS.register(".html")(render_html)
WRITERS.register(".htm")(render_html)
