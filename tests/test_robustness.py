"""The robustness section end to end on builtin:micro: attacks, metrics, records, worst case, export."""

from __future__ import annotations

import json
import math

import pytest

from audit.config import ConfigError
from audit.suite import load_suite
from audit.runner import run_suite

from audit.perturb import ROLE_TAGS

from .conftest import write_suite

# Prompts ending in content words: builtin:micro (random init) reacts to the last words.
PROMPTS = ["The application crashes whenever I open settings", "My password reset email never arrived",
           "Please cancel the subscription renewal", "I cannot find invoice 1234 anywhere",
           "Where is the nearest service center"]

SUITE = """
name: rob
model: {micro}
seed: 3
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 10, batch_size: 8}}
sections:
  robustness:
    recipes: [deepwordbug, bad_characters]
    examples: 4
    query_budget: 25
    max_words_perturbed: 2
"""


@pytest.fixture
def rob_suite(tmp_path, micro_path):
    rows = [{"id": f"p{i}", "prompt": p, "reference": "Open settings and choose reset." if i % 2 else None}
            for i, p in enumerate(PROMPTS)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return write_suite(tmp_path, SUITE.format(micro=micro_path))


def test_robustness_section_metrics_records_and_export(rob_suite, tmp_path, micro_lm):
    from audit.attacks.similarity import similarity
    from audit.perturb import perturb

    out = tmp_path / "out"
    result = run_suite(rob_suite, model=micro_lm, out_dir=out, progress=False, use_cache=False)
    sec = result.sections["robustness"]
    assert sec.error is None
    recs = sec.records
    assert len(recs) == 2 * 4 and {r["recipe"] for r in recs} == {"deepwordbug", "bad_characters"}
    attacked = [r for r in recs if not r["skipped"]]
    wins = [r for r in attacked if r["success"]]
    assert wins, "the micro model should be attackable on these prompts"
    m = result.metrics
    assert m["robustness.attack_success_rate"] == pytest.approx(len(wins) / len(attacked))
    assert m["robustness.words_perturbed_pct"] == pytest.approx(sum(r["words_perturbed_pct"] for r in wins) / len(wins))
    assert m["robustness.queries_per_example"] == pytest.approx(sum(r["queries"] for r in attacked) / len(attacked))
    assert all(r["queries"] <= 25 and r["words_perturbed"] <= 2 for r in recs)
    per = [r for r in attacked if r["recipe"] == "deepwordbug"]
    assert m["robustness.attack_success_rate_deepwordbug"] == pytest.approx(sum(r["success"] for r in per) / len(per))
    # quality_drop compares clean and attacked outputs with the references (records p1, p3 have them).
    assert not math.isnan(m["robustness.quality_drop"])
    assert sec.metric_info["attack_success_rate"].higher_is_better is False

    # HELM worst case: recompute one instance independently from the model.
    s = result.samples[0]
    clean = micro_lm.generate([s.prompt], _settings())[0][0]
    sims = [1.0]
    for p in ["lowercase", "punctuation", "contractions", "typos", "whitespace"]:
        v = perturb(s.prompt, p, seed=3)
        if v != s.prompt:
            sims.append(similarity(micro_lm.generate([v], _settings())[0][0], clean))
    assert s.scores["robustness.worst_case_similarity"] == pytest.approx(min(sims))
    assert 0 <= m["robustness.worst_case_similarity"] <= 1
    assert not math.isnan(m["robustness.worst_case_chrf"])

    # Successful attacks are exported for hardening, one line each.
    rows = [json.loads(line) for line in (out / "adversarial.jsonl").read_text().splitlines()]
    assert len(rows) == len(wins)
    assert {(r["id"], r["recipe"], r["prompt"]) for r in rows} == {(w["id"], w["recipe"], w["perturbed_prompt"]) for w in wins}
    # No prompt was generated twice: every query beyond the unique prompts came from the cache.
    stats = sec.details["wrapper"]
    assert stats["generated"] + stats["cache_hits"] == stats["queries"] and stats["cache_hits"] > 0


def _settings():
    from audit.config import GenerationSettings

    return GenerationSettings(max_new_tokens=10, batch_size=8)


def test_robustness_is_deterministic(rob_suite, micro_lm):
    a = run_suite(rob_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    b = run_suite(rob_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    assert a.metrics == pytest.approx(b.metrics, nan_ok=True)
    assert a.sections["robustness"].records == b.sections["robustness"].records


def test_missing_wordnet_is_a_one_line_section_error(rob_suite, micro_lm, tmp_path, monkeypatch):
    import nltk

    from audit.attacks.offline import PACKAGE_NLTK_DATA

    rob_suite.write_text(rob_suite.read_text().replace("[deepwordbug, bad_characters]", "[pwws]"))
    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path / "fresh"))
    monkeypatch.setenv("AUDIT_WORDNET_DIR", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(PACKAGE_NLTK_DATA)])
    result = run_suite(rob_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    err = result.sections["robustness"].error
    assert err.startswith("MissingAttackDataError:") and "WordNet" in err and "\n" not in err


@pytest.mark.parametrize("body, fragment", [
    ("recipes: [deepwordbugg]", "did you mean 'deepwordbug'"),
    ("recipes: [bae]", "unknown attack recipe 'bae'"),
    ("goal: minimize_bleu", "unknown goal"),
    ("perturbations: [lowercase, synonyms]", "unknown perturbation 'synonyms'"),
    ("max_similarity: 1.5", "max_similarity"),
    ("query_budget: 0", "query_budget must be >= 1"),
    ("protect: ['(Customer:']", "protect: invalid regular expression '(Customer:'"),
    ("protect: ['']", "protect: expected a non-empty regular expression"),
])
def test_options_are_validated_before_any_model_loads(tmp_path, body, fragment):
    (tmp_path / "d.jsonl").write_text('{"prompt": "x"}\n')
    path = write_suite(tmp_path, f"model: /nonexistent\ndata: d.jsonl\nsections:\n  robustness:\n    {body}\n")
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    assert fragment in str(e.value) and "sections.robustness" in str(e.value)


def test_gates_may_name_per_recipe_metrics(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "x"}\n')
    path = write_suite(tmp_path, "data: d.jsonl\nsections:\n  robustness:\n    recipes: [pruthi]\n"
                                 "gates:\n  - robustness.attack_success_rate_pruthi <= 0.5\n")
    assert load_suite(path).gates[0].metric == "robustness.attack_success_rate_pruthi"


def test_toxicity_goal_runs_with_the_offline_scorer(rob_suite, micro_lm):
    from audit.scorers import get_scorer

    rob_suite.write_text(rob_suite.read_text().replace("recipes: [deepwordbug, bad_characters]",
                                                       "recipes: [deepwordbug]\n    goal: toxicity\n    toxicity_threshold: 0.6")
                         .replace("query_budget: 25", "query_budget: 8"))
    result = run_suite(rob_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    sec = result.sections["robustness"]
    assert sec.error is None and len(sec.records) == 4
    scorer = get_scorer("profanity")
    for r in sec.records:
        # success/skip follow the scorer: skipped = the clean output is already toxic.
        assert r["skipped"] == (scorer.score([r["clean_output"]])[0] >= 0.6)
        assert r["score"] == pytest.approx(scorer.score([r["perturbed_output"]])[0])
        assert r["success"] == (not r["skipped"] and r["score"] >= 0.6)


def test_greedy_override_works_when_the_suite_samples_several_outputs(rob_suite, micro_lm):
    # The section asks one output per query: the suite's num_samples must not make a section's
    # `do_sample: false` override invalid.
    rob_suite.write_text(rob_suite.read_text()
                         .replace("batch_size: 8}", "batch_size: 8, do_sample: true, num_samples: 3}")
                         .replace("query_budget: 25", "query_budget: 4\n    perturbations: [lowercase]\n"
                                                      "    generation: {do_sample: false}"))
    result = run_suite(rob_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    sec = result.sections["robustness"]
    assert sec.error is None and sec.details["attack_settings"]["do_sample"] is False
    s = result.samples[0]
    assert sec.records[0]["clean_output"] == micro_lm.generate([s.prompt], _settings())[0][0]   # greedy


def test_templated_prompts_are_attacked_only_in_the_message(tmp_path, micro_path, micro_lm):
    """Default protect: attacks and worst-case perturbations keep "Customer: " and "\nAgent:"; protect: [] does not."""
    rows = [{"id": f"t{i}", "prompt": f"Customer: {p}\nAgent:"} for i, p in enumerate(PROMPTS[:3])]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = SUITE.format(micro=micro_path).replace("recipes: [deepwordbug, bad_characters]", "recipes: [pruthi, bad_characters]")
    body = body.replace("max_words_perturbed: 2", "perturbations: [lowercase, typos]")
    keeps = lambda t: t.startswith("Customer: ") and t.endswith("\nAgent:")  # noqa: E731

    sec = run_suite(write_suite(tmp_path, body), model=micro_lm, out_dir=None, progress=False, use_cache=False).sections["robustness"]
    assert sec.error is None and sec.details["attack_settings"]["protect"] == list(ROLE_TAGS)
    assert all(keeps(r["perturbed_prompt"]) for r in sec.records)
    assert any(r["perturbed_prompt"] != r["original_prompt"] for r in sec.records)  # the message was attacked
    assert sec.details["worst_case"]["examples"] and all(keeps(e["prompt"]) for e in sec.details["worst_case"]["examples"])

    off = run_suite(write_suite(tmp_path, body.replace("examples: 4", "examples: 4\n    protect: []")), model=micro_lm,
                    out_dir=None, progress=False, use_cache=False).sections["robustness"]
    assert off.error is None and off.details["attack_settings"]["protect"] == []
    assert any(not keeps(r["perturbed_prompt"]) for r in off.records)          # old behaviour: tags attacked
    assert any(not keeps(e["prompt"]) for e in off.details["worst_case"]["examples"])   # "customer:" lower-cased
