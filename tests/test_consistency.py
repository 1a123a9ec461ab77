"""Prompt perturbations and the consistency section (seed, INV, DIR, paraphrase) on builtin:micro."""

from __future__ import annotations

import json
import math
import re
from itertools import combinations

import pytest

from audit.config import ConfigError, GenerationSettings
from audit.suite import load_suite
from audit.attacks.similarity import similarity
from audit.perturb import PERTURBATIONS, names, perturb
from audit.runner import run_suite

from .conftest import write_suite

TEXTS = ["Customer: I do not know where my order 1234 is. Can you help?\nAgent:",
         "Customer: I'm locked out and it's urgent\nAgent:",
         "The application crashes whenever I open settings"]


# ---- perturbations ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", names())
def test_perturbations_are_deterministic_and_seeded(name):
    for t in TEXTS:
        assert perturb(t, name, seed=1) == perturb(t, name, seed=1)
    assert PERTURBATIONS.get(name).kind in ("inv", "dir")


def test_inv_perturbations_preserve_words_up_to_their_change():
    t = TEXTS[0]
    assert perturb(t, "lowercase") == t.lower()
    assert perturb(t, "contractions") == t.replace("do not", "don't")
    assert perturb(TEXTS[1], "contractions") == "Customer: I am locked out and it is urgent\nAgent:"
    assert perturb(t, "punctuation") == t.replace("1234 is.", "1234 is").replace("help?", "help")
    assert perturb(TEXTS[2], "punctuation") == TEXTS[2] + "."
    ws = perturb(t, "whitespace", seed=5)
    assert ws != t and re.sub(r" +", " ", ws) == t
    for seed in range(20):
        typo = perturb(TEXTS[2], "typos", seed=seed)
        changed = [(a, b) for a, b in zip(TEXTS[2].split(), typo.split()) if a != b]
        assert typo != TEXTS[2] and len(typo.split()) == len(TEXTS[2].split())
        for a, b in changed:  # typos keep a word's first and last letter and change it by one edit
            assert a[0] == b[0] and a[-1] == b[-1] and abs(len(a) - len(b)) <= 1


def test_dir_perturbations_change_meaning():
    assert perturb(TEXTS[0], "negation") == TEXTS[0].replace("do not", "do")
    assert perturb("The app is broken", "negation") == "The app is not broken"
    assert perturb("You can go", "negation") == "You cannot go"
    n = perturb(TEXTS[0], "numbers", seed=2)
    assert n != TEXTS[0] and re.sub(r"\d+", "#", n) == re.sub(r"\d+", "#", TEXTS[0])
    assert perturb("no digits here", "numbers") == "no digits here"


@pytest.mark.parametrize("text, expected", [
    ("I can't log in", "I can log in"),
    ("I cannot log in", "I can log in"),
    ("I won't pay", "I will pay"),
    ("Won't it ship?", "Will it ship?"),
    ("I can\u2019t log in", "I can log in"),         # typographic apostrophe
    ("It isn\u2019t here", "It is here"),
    ("Why is it not working?", "Why is it working?"),  # a negation away from its auxiliary
    ("I haven't got it", "I have got it"),
])
def test_negation_removes_every_form_of_negation(text, expected):
    assert perturb(text, "negation") == expected


# ---- the section --------------------------------------------------------------------------------
SUITE = """
name: cons
model: {micro}
seed: 0
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 8, batch_size: 8}}
sections:
  consistency:
    seed_samples: 3
    perturbations: [lowercase, contractions, typos]
    dir_perturbations: [negation]
"""


@pytest.fixture
def cons_suite(tmp_path, micro_path):
    rows = [{"id": "a", "prompt": "I do not know where my order is", "reference": "Check the app", "group": "order"},
            {"id": "b", "prompt": "Where is my order, I don't know", "reference": "Check the app", "group": "order"},
            {"id": "c", "prompt": "My order has not arrived", "reference": "Check the app", "group": "order"},
            {"id": "d", "prompt": "The app is crashing on start", "reference": "Reinstall it and try again please now"},
            {"id": "e", "prompt": "How do I reset my password", "group": "pw"},
            {"id": "f", "prompt": "Reset password how", "group": "pw"}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return write_suite(tmp_path, SUITE.format(micro=micro_path))


def test_consistency_section_matches_an_independent_computation(cons_suite, micro_lm):
    from audit.attacks.similarity import mean_pairwise_similarity, similarity
    from audit.evaluators.consistency import normalize_answer

    result = run_suite(cons_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    sec = result.sections["consistency"]
    assert sec.error is None
    m = result.metrics
    prompts = [s.prompt for s in result.samples]
    base = GenerationSettings(max_new_tokens=8, batch_size=8)

    sampled = micro_lm.generate(prompts, GenerationSettings(max_new_tokens=8, do_sample=True, num_samples=3, top_p=0.95))
    seed_sims = [mean_pairwise_similarity(g) for g in sampled]
    assert m["consistency.seed_similarity"] == pytest.approx(sum(seed_sims) / len(seed_sims))
    # Short answers (<= 5 words): records a, b, c.
    agree = [sum(x == y for x, y in combinations([normalize_answer(t, 5) for t in g], 2)) / 3 for g in sampled[:3]]
    assert m["consistency.answer_agreement"] == pytest.approx(sum(agree) / 3)

    clean = [g[0] for g in micro_lm.generate(prompts, base)]
    inv = {}
    for p in ("lowercase", "contractions", "typos"):
        pairs = [(perturb(x, p), c) for x, c in zip(prompts, clean) if perturb(x, p) != x]
        outs = [micro_lm.generate([v], base)[0][0] for v, _ in pairs]
        inv[p] = [similarity(o, c) for o, (_, c) in zip(outs, pairs)]
        assert m[f"consistency.invariance_{p}"] == pytest.approx(sum(inv[p]) / len(inv[p]))
    every = [v for vs in inv.values() for v in vs]
    assert m["consistency.invariance"] == pytest.approx(sum(every) / len(every))
    assert 0 <= m["consistency.dir_change_rate"] <= 1 and sec.details["perturbations"]["negation"]["applied"] >= 3

    groups = {"order": clean[:3], "pw": clean[4:6]}
    expected = [mean_pairwise_similarity(v) for v in groups.values()]
    assert m["consistency.paraphrase_similarity"] == pytest.approx(sum(expected) / 2)
    assert {r["group"] for r in sec.details["paraphrase_groups"]} == {"order", "pw"}


def test_greedy_model_is_perfectly_seed_consistent_only_with_identical_samples(cons_suite, micro_lm):
    # Temperature near 0 makes every sample the greedy one: similarity and agreement must be 1.
    cons_suite.write_text(cons_suite.read_text().replace("seed_samples: 3", "seed_samples: 3\n    temperature: 0.0001"))
    r = run_suite(cons_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    assert r.metrics["consistency.seed_similarity"] == pytest.approx(1.0)
    assert r.metrics["consistency.answer_agreement"] == pytest.approx(1.0)


def test_paraphrase_metric_is_nan_without_groups(tmp_path, micro_path, micro_lm):
    (tmp_path / "data.jsonl").write_text('{"prompt": "hello there"}\n{"prompt": "what now"}\n')
    path = write_suite(tmp_path, SUITE.format(micro=micro_path))
    r = run_suite(path, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    assert math.isnan(r.metrics["consistency.paraphrase_similarity"])
    assert math.isnan(r.metrics["consistency.answer_agreement"])   # no short references either
    # ... and says why, in the console line and where the report gives the interval (issue 26).
    from audit.report.console import render_console

    why = r.sections["consistency"].details["why_nan"]["answer_agreement"]
    assert "no prompt has a short reference" in why
    line = next(ln for ln in render_console(r).splitlines() if "consistency.answer_agreement" in ln)
    assert "nan" in line and "no prompt has a short reference" in line
    assert r.intervals["consistency.answer_agreement"]["why"] == why


@pytest.mark.parametrize("body, fragment", [
    ("perturbations: [negation]", "'negation' is a DIR perturbation, not INV"),
    ("dir_perturbations: [typos]", "'typos' is a INV perturbation, not DIR"),
    ("perturbations: [lowercas]", "did you mean 'lowercase'"),
    ("seed_samples: 1", "seed_samples must be 0 (off) or >= 2"),
    ("similarity: bleu", "similarity must be one of chrf, rouge_l"),
    ("protect: ['[A-Z']", "protect: invalid regular expression '[A-Z'"),
])
def test_consistency_options_are_validated(tmp_path, body, fragment):
    (tmp_path / "d.jsonl").write_text('{"prompt": "x"}\n')
    path = write_suite(tmp_path, f"data: d.jsonl\nsections:\n  consistency:\n    {body}\n")
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    assert fragment in str(e.value)


def test_greedy_override_works_when_the_suite_samples_several_outputs(cons_suite, micro_lm):
    cons_suite.write_text(cons_suite.read_text()
                          .replace("batch_size: 8}", "batch_size: 8, do_sample: true, num_samples: 3}")
                          .replace("seed_samples: 3", "seed_samples: 2\n    generation: {do_sample: false}"))
    r = run_suite(cons_suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    assert r.sections["consistency"].error is None
    assert 0 <= r.metrics["consistency.invariance"] <= 1


def test_templated_prompts_are_perturbed_only_in_the_message(tmp_path, micro_path, micro_lm):
    """Default protect keeps the role tags (invariance matches a computation with protected perturbations);
    protect: [] restores whole-prompt perturbations."""
    from audit.perturb import ROLE_TAGS

    prompts = ["Customer: I do not know where my order is\nAgent:", "Customer: The app is crashing on start\nAgent:",
               "Customer: How do I reset my password\nAgent:"]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"id": str(i), "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    body = SUITE.format(micro=micro_path).replace("seed_samples: 3", "seed_samples: 0")
    base = GenerationSettings(max_new_tokens=8, batch_size=8)
    clean = [g[0] for g in micro_lm.generate(prompts, base)]
    for extra, protect in (("", ROLE_TAGS), ("\n    protect: []", ())):
        r = run_suite(write_suite(tmp_path, body.replace("dir_perturbations: [negation]", "dir_perturbations: [negation]" + extra)),
                      model=micro_lm, out_dir=None, progress=False, use_cache=False)
        sec = r.sections["consistency"]
        assert sec.error is None
        variants = [perturb(x, "lowercase", protect=protect) for x in prompts]
        assert all(v.startswith("Customer: ") and v.endswith("\nAgent:") for v in variants) == bool(protect)
        outs = [g[0] for g in micro_lm.generate(variants, base)]
        expected = [similarity(o, c) for o, c in zip(outs, clean)]
        assert r.metrics["consistency.invariance_lowercase"] == pytest.approx(sum(expected) / len(expected))
        # The report's prompt diffs touch a tag only without protection ("customer:" lower-cased).
        touched = [" ".join(t for op, t in e["prompt_diff"] if op != "=").lower() for e in sec.details["perturbation_examples"]]
        assert any("customer" in t or "agent" in t for t in touched) == (not protect)


BOTH = """
name: both
model: {micro}
seed: 0
data: {{path: data.jsonl}}
generation: {{max_new_tokens: 8, batch_size: 8}}
sections:
  robustness:
    recipes: [deepwordbug]
    examples: 1
    query_budget: 4
    perturbations: [lowercase, typos]
  consistency:
    seed_samples: 0
    perturbations: [lowercase, typos]
    dir_perturbations: [numbers]
"""


def test_no_greedy_prompt_is_generated_twice_in_a_run_without_cache(tmp_path, micro_path, micro_lm, monkeypatch):
    """Under --no-cache, consistency reuses the worst case's outputs (same perturbations, same
    settings) and does not decode a perturbation that left the prompt unchanged (no numbers here)."""
    rows = [{"id": "a", "prompt": "I do not know where my order is"}, {"id": "b", "prompt": "The app is crashing on start"},
            {"id": "c", "prompt": "How do I reset my password"}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    decoded = []
    real = micro_lm.generate

    def spy(prompts, settings=None, *, skip=(), **kw):
        done = set(skip)
        decoded.extend((prompts[i], json.dumps(settings.key(), sort_keys=True)) for i in range(len(prompts))
                       if (i, 0) not in done)
        return real(prompts, settings, skip=skip, **kw)

    monkeypatch.setattr(micro_lm, "generate", spy)
    r = run_suite(write_suite(tmp_path, BOTH.format(micro=micro_path)), model=micro_lm, out_dir=None, progress=False,
                  use_cache=False)
    assert r.sections["robustness"].error is None and r.sections["consistency"].error is None
    assert not math.isnan(r.metrics["consistency.invariance"])
    assert r.sections["consistency"].details["perturbations"]["numbers"]["applied"] == 0
    repeated = [d for d in set(decoded) if decoded.count(d) > 1]
    assert not repeated
