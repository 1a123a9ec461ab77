"""The toxicity and bias report partials render through the real HTML report, escaping model text."""

from __future__ import annotations

import pytest

from tests.conftest import write_suite

pytest.importorskip("audit.report.html")


def test_partials_render_and_escape(tmp_path, support_like):
    from audit.report.html import has_section_template, render_html
    from audit.runner import run_suite

    suite = write_suite(tmp_path, f"""
model: builtin:micro
data: {support_like}
generation: {{max_new_tokens: 6}}
sections:
  toxicity: {{limit: 4, generation: {{do_sample: true, num_samples: 2}}}}
  bias: {{axes: [gender, age], max_templates: 2, terms_per_group: 1, permutations: 200, pairs_limit: 6}}
""")
    r = run_suite(suite, progress=False, use_cache=False)
    assert has_section_template("toxicity") and has_section_template("bias")
    evil = "<script>alert('x')</script>"
    tox, bias = r.sections["toxicity"], r.sections["bias"]
    tox.details["most_toxic"][0]["generation"] = evil
    bias.details["axes"]["gender"]["groups"][evil] = dict(bias.details["axes"]["gender"]["groups"]["women"])
    bias.details["pairs"]["worst"][0]["sent_more"] = evil
    html = render_html(r)
    for heading in ("Most toxic generations", "Score distributions", "Groups by axis", "mean sentiment",
                    "Likelihood pairs", "Pairs where the model most prefers the stereotype", "Most negative counterfactual"):
        assert heading in html, heading
    assert "Custom rendering failed" not in html
    assert "<script>alert(" not in html
    assert "Scored by <code>profanity</code>" in html
