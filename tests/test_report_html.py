"""The HTML report: structure, the section seam, safety of untrusted text, and a real headless Chromium."""

from __future__ import annotations

import json
import re

import pytest

from audit.gates import apply_gates, parse_gate
from audit.report import write_report
from audit.report.browser import Page, find_chromium
from audit.report.html import environment, render_html, table_data
from audit.results import MetricInfo, SectionResult
from audit.runner import run_suite
from tests.conftest import write_suite

PAYLOADS = ["<script>window.__pwned=1</script>", '"><img src=x onerror="window.__pwned=2">', "</script>",
            "{{7*7}}", "' onmouseover='window.__pwned=3", "<svg onload=window.__pwned=4>"]
PAYLOAD = " ".join(PAYLOADS)


@pytest.fixture(scope="module")
def payload_result(micro_lm, tmp_path_factory):
    """A real run on the micro model, with payloads in a prompt, a generation, records, details and an error."""
    tmp = tmp_path_factory.mktemp("payload")
    rows = [{"id": f"r{i}", "prompt": f"Customer: question {i}?\nAgent:", "reference": " Open settings."} for i in range(8)]
    rows[2]["prompt"] = f"Customer: {PAYLOAD}\nAgent:"
    (tmp / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = write_suite(tmp, "name: payload\nmodel: builtin:micro\ndata: d.jsonl\ngeneration: {max_new_tokens: 6}\n"
                             "sections:\n  quality: {}\n  diversity: {}\n"
                             "gates:\n  - quality.perplexity < 1e9\n  - quality.rouge_l >= 0.5 @ 95%\n  - diversity.distinct_1 >= 0.99\n")
    result = run_suite(suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    result.samples[2].generations = [PAYLOAD]
    result.samples[5].generations = [PAYLOAD + " second"]
    attack = SectionResult(
        "robustness", metrics={"attack_success_rate": 0.25},
        metric_info={"attack_success_rate": MetricInfo("attack_success_rate", False, "share of prompts an attack flipped")},
        sample_values={"attack_success_rate": [0, 1, 0, 0]},
        details={"recipe": PAYLOAD, "per_recipe": {PAYLOAD: 0.5, "swap": 0.1},
                 "groups": {"<b>group</b>": {"rate": 0.3, "n": 10}, "plain": {"rate": 0.1, "n": 12}},
                 "nested": {"a": [1, {"b": PAYLOAD}]}, "_hidden": "not shown"},
        records=[{"prompt": PAYLOAD, "perturbed": f"x {PAYLOADS[1]}", "attack_success_rate": 1.0, "tokens": ["a", "b"]},
                 {"prompt": "benign", "perturbed": "benign 2", "attack_success_rate": 0.0, "tokens": []},
                 {"prompt": "middle", "perturbed": "middle 2", "attack_success_rate": 0.5, "tokens": []}])
    result.sections["robustness"] = attack
    result.sections["broken"] = SectionResult("broken", error=f"RuntimeError: model said {PAYLOADS[0]}")
    result.metrics["robustness.attack_success_rate"] = 0.25
    gates = [parse_gate(g.expression) for g in result.gates] + [parse_gate("robustness.attack_success_rate <= 0.5")]
    apply_gates(result, gates)
    return result


def test_structure_and_escaping(payload_result):
    html = render_html(payload_result)
    assert html.startswith("<!doctype html>") and "Content-Security-Policy" in html
    # Self-contained: no external resource anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html
    # Untrusted text never appears raw, in markup or in script data.
    for p in PAYLOADS[:2] + PAYLOADS[4:]:
        assert p not in html
    assert html.count("</script>") == html.count("<script")          # no stray closer from the data
    assert "window.__pwned=1" in html.replace("\\u003c", "<") or "&lt;script&gt;window.__pwned=1" in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html    # autoescaped where rendered by Jinja
    assert "{{7*7}}" in html.replace("\\u007b", "{") or "{{7*7}}" in html
    assert "not shown" not in html
    # Every section renders; the failed one says why; the gate table lists every gate.
    for name in ("quality", "diversity", "robustness", "broken"):
        assert f'id="section-{name}"' in html
    assert "This section failed" in html and html.count('<tr class="failed">') + html.count('<tr class="passed">') == 4
    assert 'data-verdict="error"' in html


def test_records_table_is_worst_first():
    rows = [{"s": 0.5, "t": "b"}, {"s": None, "t": "n"}, {"s": 0.1, "t": "a"}, {"s": 0.9, "t": "c"}]
    assert [r[0] for r in table_data(rows, sort="s", higher_is_better=True)["rows"]] == [0.1, 0.5, 0.9, None]
    assert [r[0] for r in table_data(rows, sort="s", higher_is_better=False)["rows"]] == [0.9, 0.5, 0.1, None]
    data = table_data([{"a": 1, "b": {"x": [1]}}])
    assert data["numeric"] == [True, False] and data["rows"] == [[1, '{"x": [1]}']]


def test_section_template_seam(payload_result, tmp_path):
    """A template named section_<name>.html.j2 renders that section; a broken one falls back."""
    environment.cache_clear()   # a fresh environment: earlier tests compiled the shipped partials
    loader = environment().loader
    (tmp_path / "section_robustness.html.j2").write_text(
        '<div id="custom">{{ section.details.recipe }}</div>{{ parts.metrics }}'
        '{{ m.token_heatmap([{"label": "p", "tokens": section.records[0].tokens, "scores": [0.5, -1]}], title="attr") }}')
    (tmp_path / "section_diversity.html.j2").write_text("{{ section.details.missing.attribute }}")
    loader.searchpath.insert(0, str(tmp_path))
    try:
        html = render_html(payload_result)
    finally:
        loader.searchpath.remove(str(tmp_path))
        environment.cache_clear()   # drop the compiled test templates
    custom = re.search(r'<div id="custom">(.*?)</div>', html).group(1)
    assert custom.startswith("&lt;script&gt;window.__pwned=1")       # autoescaped in partials too
    assert "data-heatmap=" in html
    assert "section_diversity.html.j2 failed" in html and 'id="section-diversity"' in html


def test_written_beside_results_by_audit_run(payload_result, tmp_path):
    path = write_report(payload_result, tmp_path / "r.html")
    assert path.read_text().startswith("<!doctype html>")


needs_chromium = pytest.mark.skipif(find_chromium() is None, reason="Debian chromium is not installed (make sysdeps)")


@needs_chromium
@pytest.mark.slow
def test_real_chromium_renders_everything_and_runs_nothing(payload_result, tmp_path):
    path = write_report(payload_result, tmp_path / "report.html")
    with Page(width=1280, height=900) as page:
        page.open(path)
        assert page.eval("document.documentElement.getAttribute('data-report-ready')") == "1"
        # Nothing injected ran or was created.
        assert page.eval("typeof window.__pwned") == "undefined"
        assert page.eval("document.querySelectorAll('img, iframe, object, embed, svg[onload], [onerror], [onmouseover]').length") == 0
        assert page.eval("document.scripts.length") == page.eval("document.querySelectorAll('script[type=\"application/json\"]').length + 1")
        # The gate table and every section rendered.
        assert page.eval("document.querySelectorAll('table.gates tbody tr').length") == len(payload_result.gates)
        sections = page.eval("Array.from(document.querySelectorAll('section.audit-section')).map(s => [s.dataset.section, s.innerText.length])")
        assert [s for s, _ in sections] == list(payload_result.sections) and all(n > 40 for _, n in sections)
        # Interactive tables were built from JSON, with the payload shown as text.
        n_tables = page.eval("document.querySelectorAll('[data-records] table').length")
        assert n_tables == page.eval("document.querySelectorAll('[data-records]').length") >= 3
        body = page.eval("document.body.innerText")
        for p in PAYLOADS:
            assert p in body, p
        # Search filters the table; the payload row is found as text.
        found = page.eval("""(() => { const root = document.querySelector('#samples [data-records]');
            const box = root.querySelector('input[type=search]'); box.value = 'onerror'; box.dispatchEvent(new Event('input'));
            return Array.from(root.querySelectorAll('tbody tr')).map(tr => tr.innerText); })()""")
        assert len(found) == 2 and all(PAYLOADS[1] in row for row in found)
        # Worst first in the robustness records (lower attack success is better -> 1.0 first); clicking sorts.
        order = "Array.from(document.querySelectorAll('#section-robustness [data-records] tbody tr')).map(tr => tr.children[2].innerText)"
        assert page.eval(order) == ["1", "0.5", "0"]
        page.eval("document.querySelectorAll('#section-robustness [data-records] thead tr:first-child th')[2].click()")
        page.eval("document.querySelectorAll('#section-robustness [data-records] thead tr:first-child th')[2].click()")
        assert page.eval(order) == ["1", "0.5", "0"]
        page.eval("document.querySelectorAll('#section-robustness [data-records] thead tr:first-child th')[2].click()")
        assert page.eval(order) == ["0", "0.5", "1"]
        # Numeric column filter.
        page.eval("""(() => { const f = document.querySelectorAll('#section-robustness [data-records] tr.filters input')[2];
            f.value = '>0.2'; f.dispatchEvent(new Event('input')); })()""")
        assert page.eval(order) == ["0.5", "1"]
        shot = page.screenshot(tmp_path / "shot.png")
        problems = page.problems()
    assert problems == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_failed_section_renders_as_markup_not_escaped_source(payload_result):
    """The error note is HTML once (the error text inside it escaped), not its own source shown as text."""
    html = render_html(payload_result)
    note = re.search(r'<section[^>]*id="section-broken".*?</section>', html, re.S).group(0)
    assert '<p class="note bad"><b>This section failed</b>' in note
    assert "&lt;p class=" not in note and "&amp;lt;script" not in note
    assert "model said &lt;script&gt;window.__pwned=1&lt;/script&gt;" in note


def _without_nonce(html: str) -> str:
    """The page minus its Content-Security-Policy nonce, which is new in every page by design."""
    nonces = set(re.findall(r"'nonce-([A-Za-z0-9_-]+)'", html))
    assert len(nonces) == 1 and html.count(next(iter(nonces))) == 2
    return html.replace(next(iter(nonces)), "NONCE")


def test_render_html_is_pure_and_reentrant(payload_result, monkeypatch, request, tmp_path):
    """Rendering reads the result only, and gives the same page twice, or from two threads at once."""
    import copy
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from audit.report.compare import write_comparison

    old = copy.deepcopy(payload_result)
    old.intervals = {}                          # a results.json written before intervals existed
    before = old.to_dict()
    first = render_html(old)
    assert old.intervals == {} and old.to_dict() == before          # nothing written into the result
    assert _without_nonce(render_html(old)) == _without_nonce(first)
    assert 'id="records-1-data"' in first and first.count('data-records="records-1-data"') == 1
    # The comparison page reads its two runs the same way.
    write_comparison(old, old, tmp_path / "compare.html")
    assert old.intervals == {} and old.to_dict() == before

    # Two renders at once: both threads stop inside the page (at their first interactive table)
    # until the other is there too, so a counter shared between them would number them wrong.
    environment.cache_clear()   # a fresh environment: compiled templates keep the globals they saw
    env = environment()
    barrier = threading.Barrier(2, timeout=30)
    waited: set[int] = set()
    real = env.globals["table_data"]

    def table_data_meeting(*args, **kwargs):
        if threading.get_ident() not in waited:
            waited.add(threading.get_ident())
            barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setitem(env.globals, "table_data", table_data_meeting)
    request.addfinalizer(environment.cache_clear)   # later tests get templates without the patch
    with ThreadPoolExecutor(2) as pool:
        pages = list(pool.map(render_html, [old, old]))
    assert len(waited) == 2
    assert [_without_nonce(p) for p in pages] == [_without_nonce(first)] * 2
    assert old.to_dict() == before


def test_diagnostic_metrics_have_no_direction():
    """A p-value or a query count has no better direction: no '(higher is better)', no arrow, no
    regression gate; results.json keeps the key (null) so older readers still load it."""
    from audit.report.console import render_console
    from audit.results import AuditResult
    from audit.evaluators.robustness import RobustnessEvaluator
    from audit.evaluators.bias import BiasEvaluator

    assert RobustnessEvaluator.METRICS["queries_per_example"].higher_is_better is None
    assert RobustnessEvaluator.METRICS["words_perturbed_pct"].higher_is_better is None
    assert BiasEvaluator.METRICS["stereotype_preference_p"].higher_is_better is None
    sec = SectionResult(name="bias", metrics={"stereotype_preference_p": 0.03, "stereotype_preference": 0.6},
                        metric_info={"stereotype_preference_p": BiasEvaluator.METRICS["stereotype_preference_p"],
                                     "stereotype_preference": BiasEvaluator.METRICS["stereotype_preference"]})
    run = AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0, sections={"bias": sec},
                      metrics={"bias.stereotype_preference_p": 0.03, "bias.stereotype_preference": 0.6},
                      baseline={"metrics": {"bias.stereotype_preference_p": 0.5}})
    apply_gates(run, [parse_gate("bias.stereotype_preference_p regression <= 0.01")])
    assert not run.gates[0].passed and "diagnostic" in run.gates[0].reason
    text = render_console(run)
    p_line = next(line for line in text.splitlines() if "stereotype_preference_p" in line and "gates" not in line and "FAIL" not in line)
    assert "better" not in p_line and "(diagnostic)" in p_line
    assert "(lower is better)" in next(line for line in text.splitlines() if "stereotype_preference " in line)
    page = render_html(run).replace("<wbr>", "")
    row = re.search(r"<code>stereotype_preference_p</code>(.*?)</td>", page, re.S).group(1)
    assert "diagnostic" in row and "↑" not in row and "↓" not in row
    back = AuditResult.from_json(run.to_json())
    assert json.loads(run.to_json())["sections"]["bias"]["metric_info"]["stereotype_preference_p"]["higher_is_better"] is None
    assert back.sections["bias"].metric_info["stereotype_preference_p"].higher_is_better is None


def test_gate_rows_show_the_interval_beside_the_threshold_and_say_when_it_crosses():
    from audit.results import AuditResult

    sec = SectionResult(name="q", metrics={"m": 0.5, "c": 0.3},
                        metric_info={"m": MetricInfo("m", True, "a rate"), "c": MetricInfo("c", True, "corpus", per_sample=False)},
                        sample_values={"m": [0.0, 1.0] * 10})
    run = AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0, sections={"q": sec},
                      metrics={"q.m": 0.5, "q.c": 0.3})
    apply_gates(run, [parse_gate("q.m >= 0.45"), parse_gate("q.c >= 0.2")])
    page = render_html(run)
    gates = page[page.index('<table class="gates">'):]
    gates = gates[:gates.index("</table>")]
    rows = gates.split("<tr")[2:]
    lo, hi = run.intervals["q.m"]["low"], run.intervals["q.m"]["high"]
    assert lo < 0.45 < hi
    assert "interval crosses the threshold" in rows[0] and "95%" in rows[0]
    assert "corpus-level" in rows[1] and "crosses" not in rows[1]


@needs_chromium
def test_long_names_wrap_inside_the_page_ids_stay_on_one_line_and_cut_text_says_so(tmp_path):
    """Issue 26's readability: a section with bias-length metric names and gates fits the page width (the
    right-hand column was clipped), record ids are not split one letter a line, and a long answer shown
    cut says it is cut (and opens on a click)."""
    from audit.results import AuditResult

    names = [f"scorer_{kind}_gap_unmasked_{axis}" for kind in ("toxicity", "sentiment")
             for axis in ("sexual_orientation", "nationality", "disability")]
    long_answer = "\n".join(f"Step {i}: open the settings page and look for the option." for i in range(30))
    sec = SectionResult(name="bias", metrics={n: 0.25 for n in names},
                        metric_info={n: MetricInfo(n, False, "max - min group mean toxicity on the axis, group terms "
                                                  "not masked, over every template and term", per_sample=False)
                                     for n in names},
                        records=[{"id": f"heated_argument-{i:02d}", "generation": long_answer if i == 0 else "Short.",
                                  "score": i / 10} for i in range(3)])
    run = AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0, sections={"bias": sec},
                      metrics={f"bias.{n}": 0.25 for n in names})
    apply_gates(run, [parse_gate(f"bias.{n} <= 0.2") for n in names])
    path = tmp_path / "r.html"
    path.write_text(render_html(run), encoding="utf-8")
    with Page(width=1280, height=900) as page:
        page.open(path)
        overflow = page.eval("""Array.from(document.querySelectorAll('table.metrics, table.gates')).map(
            t => t.getBoundingClientRect().right - t.parentElement.getBoundingClientRect().right)""")
        assert overflow and max(overflow) <= 1, overflow
        ids = page.eval("""Array.from(document.querySelectorAll('#section-bias [data-records] tbody tr')).map(tr => {
            const r = document.createRange(); r.selectNodeContents(tr.children[0]); return r.getClientRects().length; })""")
        assert ids == [1, 1, 1], ids   # each id on one line
        cut = "document.querySelector('#section-bias [data-records] td.text.clipped')"
        assert page.eval(f"{cut} !== null && getComputedStyle({cut}, '::after').content.includes('show all')")
        page.eval(f"{cut}.click()")
        assert page.eval(f"{cut}.classList.contains('open') && {cut}.firstChild.scrollHeight <= {cut}.firstChild.clientHeight + 2")
        assert page.problems() == []
