"""The robustness and consistency report partials: diffs highlighted, hostile text inert (real Chromium)."""

from __future__ import annotations

import json
import logging

import pytest

from audit.runner import run_suite

from .conftest import write_suite

PAYLOADS = ['<script>window.__pwned=1</script>', '"><img src=x onerror="window.__pwned=2">', "{{7*7}}"]
PROMPTS = [f"Please help with the broken {p} application settings" for p in PAYLOADS] + [
    "My password reset email never arrived", "I cannot find invoice 1234 anywhere"]

SUITE = """
name: adv-report
model: {micro}
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 8, batch_size: 8}}
sections:
  robustness: {{recipes: [bad_characters, deepwordbug], examples: 5, query_budget: 20, perturbations: [typos, lowercase]}}
  consistency: {{seed_samples: 2, perturbations: [lowercase, typos], dir_perturbations: [negation]}}
"""


@pytest.fixture(scope="module")
def adv_result(tmp_path_factory, micro_path, micro_lm):
    tmp = tmp_path_factory.mktemp("advreport")
    rows = [{"id": f"r{i}", "prompt": p, "group": "g" if i < 2 else None} for i, p in enumerate(PROMPTS)]
    (tmp / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_suite(write_suite(tmp, SUITE.format(micro=micro_path)), model=micro_lm, out_dir=None, progress=False,
                       use_cache=False)
    sec = result.sections["robustness"]
    assert sec.error is None and any(e["success"] for e in sec.details["attack_examples"])
    return result, tmp


def test_partials_render_without_falling_back(adv_result, caplog):
    from audit.report.html import has_section_template, render_section
    from audit.report.view import metric_rows

    result, _ = adv_result
    for name in ("robustness", "consistency"):
        assert has_section_template(name)
        with caplog.at_level(logging.WARNING, logger="audit"):
            html = str(render_section(result, result.sections[name], metric_rows(result).get(name, [])))
        assert not [r for r in caplog.records if "template" in r.getMessage()], caplog.text
        assert "adv-diff" in html and "<del>" in html and "<ins>" in html
        for p in PAYLOADS[:2]:
            assert p not in html   # escaped, never raw
    rob = str(render_section(result, result.sections["robustness"], []))
    cons = str(render_section(result, result.sections["consistency"], []))
    assert "Attack examples" in rob and "⟨U+" in rob   # bad_characters' invisible characters are spelled out
    # The payload prompt is shown (as text) in the consistency examples' prompt diffs.
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in cons


def test_report_in_chromium_shows_payloads_as_text(adv_result):
    from audit.report import write_report
    from audit.report.browser import Page, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium not installed (make sysdeps installs it)")
    result, tmp = adv_result
    path = write_report(result, tmp / "report.html")
    with Page() as page:
        page.open(path)
        assert page.eval("typeof window.__pwned") == "undefined"
        assert page.eval("document.querySelectorAll('img[src=x]').length") == 0
        assert page.eval("document.querySelectorAll('.adv-diff del, .adv-diff ins').length") > 0
        text = page.eval("document.body.innerText")
        assert "<script>window.__pwned=1</script>" in text and "{{7*7}}" in text
        assert page.problems() == []
