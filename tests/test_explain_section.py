"""The `attribution` suite section: what it selects, its metrics, and the perturbed-token share."""

from __future__ import annotations

import math

import pytest

from audit.data import Record
from audit.evaluators import SECTIONS
from audit.evaluators.attribution import attribution_share, perturbed_token_indices
from audit.evaluators.base import make_context
from audit.explain import Explanation
from audit.results import SectionResult
from tests.conftest import write_suite


@pytest.fixture(scope="module")
def ctx(micro_lm):
    from audit.config import GenerationSettings

    records = [Record(id=f"r{i}", prompt=f"Customer: my order {i} is late.\nAgent:", reference=" Sorry about that.")
               for i in range(5)]
    c = make_context(micro_lm, records, GenerationSettings(max_new_tokens=6))
    for i, s in enumerate(c.samples):
        s.scores["quality.chrf"] = float(10 * i)   # r0 worst
    c.sections["toxicity"] = SectionResult(name="toxicity", records=[
        {"id": "t1", "prompt": "You are", "generation": " a fool and", "score": 0.2, "sample": 0},
        {"id": "t2", "prompt": "They said", "generation": " damn it all", "score": 0.9, "sample": 0},
        {"id": "t3", "prompt": "Why", "generation": " not", "score": 0.5, "sample": 0},
    ])
    c.sections["robustness"] = SectionResult(name="robustness", records=[
        {"id": "a1", "recipe": "deepwordbug", "original_prompt": "Please refund my order now",
         "perturbed_prompt": "Please refnud my order now", "perturbed_output": " no refunds here", "success": True,
         "perturbed_word_indices": [1]},
        {"id": "a2", "recipe": "deepwordbug", "original_prompt": "Hi", "perturbed_prompt": "Hi",
         "perturbed_output": " hello", "success": False, "perturbed_word_indices": []},
    ])
    return c


def _run(ctx, **options):
    cls = SECTIONS.get("attribution")
    return cls(cls.Options(**options)).evaluate(ctx)


def test_selects_toxic_attacks_worst_and_random(ctx):
    res = _run(ctx, most_toxic=2, attacks=2, worst_quality=1, random=1, n_steps=20, max_target_tokens=4)
    kinds = [r["kind"] for r in res.records]
    assert kinds == ["most_toxic", "most_toxic", "attack", "worst_quality", "random"]
    assert [r["id"] for r in res.records[:3]] == ["t2", "t3", "a1"]        # highest toxicity first; successes only
    assert res.records[3]["id"] == "r0"                                      # lowest chrF
    assert res.records[4]["id"] != "r0"                                      # random avoids duplicates
    assert res.details["counts"] == {"most_toxic": 2, "attack": 1, "worst_quality": 1, "random": 1}
    assert res.details["skipped"] == {}
    assert len(res.details["explanations"]) == 5
    for d in res.details["explanations"]:
        e = Explanation.from_dict(d)
        assert 1 <= len(e.target_tokens) <= 4
    faith = [Explanation.from_dict(d).faithfulness.score for d in res.details["explanations"]]
    assert res.metrics["faithfulness"] == pytest.approx(sum(faith) / len(faith))
    assert 0 <= res.metrics["faithfulness_win_rate"] <= 1
    assert res.metrics["completeness_error"] < 0.01
    assert res.metrics["completeness_met"] == 1.0 and res.details["completeness"]["met"] == 5
    assert all(r["complete"] is True for r in res.records)
    assert 0 < res.metrics["attack_perturbed_share"] < 1
    assert res.metric_info["faithfulness"].higher_is_better


def test_explanations_short_of_the_tolerance_are_counted_and_flagged(ctx):
    # A tolerance no quadrature meets and no room to refine: every explanation must come out flagged.
    res = _run(ctx, most_toxic=2, attacks=0, worst_quality=0, random=1, max_target_tokens=3,
               completeness_tolerance=1e-12, max_n_steps=20)
    assert res.metrics["completeness_met"] == 0.0
    assert res.details["completeness"] == {"met": 0, "explained": 3, "tolerance": 1e-12}
    assert all(r["complete"] is False and r["completeness_error"] > 1e-12 for r in res.records)
    assert all(d["complete"] is False for d in res.details["explanations"])
    assert SECTIONS.get("attribution").METRICS["completeness_met"].higher_is_better


def test_perturbed_share_is_the_attribution_on_the_changed_word(ctx):
    res = _run(ctx, most_toxic=0, attacks=1, worst_quality=0, random=0, n_steps=20)
    d = res.details["explanations"][0]
    e = Explanation.from_dict(d)
    changed = "".join(e.source_tokens[j] for j in d["perturbed_token_indices"])
    assert changed.strip() == "refnud"     # TextAttack word 1 -> exactly its tokens
    total = sum(abs(row[j]) for row in e.attributions for j in range(e.n_prompt))
    on = sum(abs(row[j]) for row in e.attributions for j in d["perturbed_token_indices"])
    assert d["perturbed_share"] == pytest.approx(on / total)
    assert res.metrics["attack_perturbed_share"] == pytest.approx(on / total)
    assert res.records[0]["perturbed_share_if_uniform"] == pytest.approx(len(d["perturbed_token_indices"]) / e.n_prompt)


def test_missing_sources_are_skipped_not_fatal(micro_lm):
    from audit.config import GenerationSettings

    c = make_context(micro_lm, [Record(id="x", prompt="Hello there", reference=None)], GenerationSettings(max_new_tokens=4))
    res = _run(c, n_steps=20)
    assert set(res.details["skipped"]) == {"most_toxic", "attacks", "worst_quality"}
    assert [r["kind"] for r in res.records] == ["random"]
    assert math.isnan(res.metrics["attack_perturbed_share"])
    assert math.isfinite(res.metrics["faithfulness"])


def test_empty_generations_are_reported_not_explained(micro_lm):
    from audit.config import GenerationSettings

    c = make_context(micro_lm, [Record(id="x", prompt="Hello there", reference=" hi")], GenerationSettings(max_new_tokens=4))
    c.samples[0].generations = [""]          # e.g. cut to nothing by a stop string
    c.samples[0].scores["quality.chrf"] = 0.0
    res = _run(c)
    assert res.records == [] and math.isnan(res.metrics["faithfulness"])
    assert res.details["skipped"]["worst_quality"] == "no non-empty generation to explain"
    assert res.details["skipped"]["random"] == "no non-empty generation to explain"


def test_word_to_token_mapping(micro_lm):
    e = Explanation(prompt="ab cd, ef", target=" x", method="m", source_tokens=["ab", " cd", ",", " ef", " x"], n_prompt=4,
                    token_ids=[0] * 5, attributions=[[1.0, -3.0, 0.5, 0.5]], target_logprobs=[-1.0])
    assert perturbed_token_indices(micro_lm.tokenizer, e, [1]) == [1]
    assert perturbed_token_indices(micro_lm.tokenizer, e, [0, 2]) == [0, 3]
    assert attribution_share(e, [1]) == pytest.approx(3.0 / 5.0)


def test_suite_validation_and_run(tmp_path, support_like, micro_path):
    from audit.config import ConfigError
    from audit.suite import load_suite
    from audit.runner import run_suite

    bad = write_suite(tmp_path, f"name: s\nmodel: {micro_path}\ndata: {support_like}\n"
                                "sections:\n  attribution: {method: integrated_gradient}\n", name="bad.yaml")
    with pytest.raises(ConfigError, match="did you mean 'integrated_gradients'"):
        load_suite(bad)
    suite = write_suite(tmp_path, f"name: s\nmodel: {micro_path}\ndata: {{path: {support_like}, limit: 4}}\n"
                                  "generation: {max_new_tokens: 6}\n"
                                  "sections:\n  quality: {metrics: [chrf]}\n"
                                  "  attribution: {worst_quality: 1, random: 1, n_steps: 20}\n"
                                  "gates:\n  - attribution.faithfulness_win_rate >= 0\n")
    result = run_suite(suite, out_dir=tmp_path / "out", progress=False, use_cache=False)
    assert not result.errors
    assert result.sections["attribution"].details["counts"]["worst_quality"] == 1
    assert "attribution.faithfulness" in result.metrics and "attribution.completeness_error" in result.metrics
    from audit.results import AuditResult

    back = AuditResult.load(tmp_path / "out" / "results.json")
    exps = back.sections["attribution"].details["explanations"]
    assert Explanation.from_dict(exps[0]).source_tokens == result.sections["attribution"].details["explanations"][0]["source_tokens"]


@pytest.mark.skipif(__import__("audit.report.browser", fromlist=["find_chromium"]).find_chromium() is None,
                    reason="needs a chromium binary")
def test_report_shows_heatmaps_and_keeps_tokens_inert(tmp_path, micro_path):
    import json as _json

    from audit.report.browser import Page
    from audit.runner import run_suite

    data = tmp_path / "evil.jsonl"
    data.write_text(_json.dumps({"id": "e1", "prompt": "<script>window.__pwned=1</script> hi", "reference": " ok"}) + "\n"
                    + _json.dumps({"id": "e2", "prompt": "\"><img src=x onerror=window.__pwned=2>", "reference": " ok"}) + "\n")
    suite = write_suite(tmp_path, f"name: s\nmodel: {micro_path}\ndata: {data}\ngeneration: {{max_new_tokens: 4}}\n"
                                  "sections:\n  quality: {metrics: [chrf]}\n  attribution: {worst_quality: 1, random: 1}\n")
    html = tmp_path / "out" / "report.html"
    run_suite(suite, out_dir=tmp_path / "out", outputs=[str(html)], progress=False, use_cache=False)
    with Page() as page:
        page.open(html)
        assert page.problems() == []
        assert page.eval("window.__pwned === undefined") is True
        assert page.eval("document.querySelectorAll('#section-attribution img').length") == 0
        assert page.eval("document.querySelectorAll('#section-attribution .note.warn').length") == 0  # partial rendered
        toks = page.eval("Array.from(document.querySelectorAll('#section-attribution .heatmap .tok')).map(t => t.textContent).join('')")
        assert "<script>window.__pwned=1</script>" in toks
        colored = page.eval("Array.from(document.querySelectorAll('#section-attribution .heatmap .tok')).filter(t => t.title).length")
        assert colored > 0
