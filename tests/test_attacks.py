"""TextAttack glue: offline provisioning, the generation wrapper, goals, recipes and real attacks on builtin:micro."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.attacks import RECIPES, MissingAttackDataError, build_attack
from audit.attacks.offline import (DEBIAN_WORDNET_DIR, LEXNAMES_TABLE, PACKAGE_NLTK_DATA, WORDNET_FILES, cache_nltk_data,
                                   ensure_wordnet, import_textattack, no_nltk_downloads)
from audit.config import GenerationSettings

# builtin:micro is random-init: its greedy continuation depends mostly on the last words of the
# prompt, so prompts ending in a content word can be attacked successfully.
PROMPTS = ["The application crashes whenever I open settings", "My password reset email never arrived",
           "Please cancel the subscription renewal"]
SETTINGS = GenerationSettings(max_new_tokens=12, batch_size=8)
RECORD_KEYS = {"id", "recipe", "original_prompt", "perturbed_prompt", "clean_output", "perturbed_output", "reference",
               "success", "skipped", "score", "words_perturbed", "words_perturbed_pct", "queries", "perturbed_word_indices"}
needs_debian_wordnet = pytest.mark.skipif(not (DEBIAN_WORDNET_DIR / "data.noun").exists(),
                                          reason="Debian wordnet-base/wordnet-sense-index not installed (make sysdeps installs them)")


@pytest.fixture
def wrapper(micro_lm):
    from audit.attacks import GenerationModelWrapper

    return GenerationModelWrapper(micro_lm, SETTINGS)


def _goal(wrapper, budget=40, **kw):
    from audit.attacks import make_goal

    return make_goal("output_change", wrapper, query_budget=budget, **kw)


# ---- offline provisioning ---------------------------------------------------------------------
def test_textattack_imports_offline_with_shipped_stopwords():
    ta = import_textattack()
    from textattack.constraints.pre_transformation import StopwordModification

    shipped = (PACKAGE_NLTK_DATA / "corpora/stopwords/english").read_text().split()
    assert len(shipped) == 179 and "ourselves" in shipped
    # TextAttack's default stop words are read through NLTK from the project's own file.
    assert StopwordModification().stopwords == set(shipped)
    assert ta.Attack.__name__ == "Attack"


def test_nltk_downloads_are_intercepted_and_restored():
    import nltk

    real = nltk.download
    with no_nltk_downloads() as asked:
        assert nltk.download("stopwords") is True          # shipped: found locally
        assert nltk.download("surely-not-a-corpus") is False  # never reaches the network
    assert asked == ["stopwords", "surely-not-a-corpus"]
    assert nltk.download is real


@needs_debian_wordnet
def test_wordnet_tree_is_assembled_from_debian_files(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path / "cache"))
    tree = ensure_wordnet(source=DEBIAN_WORDNET_DIR)
    assert tree == cache_nltk_data() / "corpora" / "wordnet"
    for f in WORDNET_FILES:
        assert (tree / f).stat().st_size == (DEBIAN_WORDNET_DIR / f).stat().st_size
    lexnames = [line.split("\t") for line in (tree / "lexnames").read_text().splitlines()]
    assert len(lexnames) == 45 and [int(n) for n, _, _ in lexnames] == list(range(45))   # NLTK asserts index == line
    # The table must agree with the database: every synset's lex_filenum names a file of its part of speech.
    for pos in ("noun", "verb"):
        with open(tree / f"data.{pos}", encoding="utf-8") as f:
            nums = {int(line.split()[1]) for line in f if not line.startswith("  ")}
        assert nums and all(lexnames[n][1].startswith(pos + ".") and lexnames[n][2] == str(1 if pos == "noun" else 2)
                            for n in nums)
    assert ensure_wordnet(source=tmp_path / "gone") == tree   # assembled once, reused


def test_recipe_needing_missing_wordnet_fails_with_one_line(tmp_path, monkeypatch, wrapper):
    import nltk

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIT_WORDNET_DIR", str(empty))
    # Only audit's own data dirs: a WordNet the developer downloaded must not hide the absence.
    monkeypatch.setattr(nltk.data, "path", [str(PACKAGE_NLTK_DATA), str(tmp_path / "cache" / "nltk_data")])
    with pytest.raises(MissingAttackDataError) as e:
        build_attack("pwws", _goal(wrapper))
    msg = str(e.value)
    assert "\n" not in msg
    assert "pwws" in msg and "WordNet" in msg and str(empty) in msg and "wordnet-base" in msg
    build_attack("deepwordbug", _goal(wrapper))   # recipes without WordNet are unaffected


# ---- the wrapper --------------------------------------------------------------------------------
def test_wrapper_matches_one_at_a_time_generation_and_never_generates_twice(micro_lm, wrapper):
    from audit.attacks import GenerationModelWrapper

    prompts = PROMPTS + [PROMPTS[0], "  spaced prompt  "]
    out = wrapper(prompts)
    single = [micro_lm.generate([p], SETTINGS, seed=0)[0][0] for p in prompts]
    assert out == single
    assert wrapper.stats == {"calls": 1, "queries": 5, "batches": 1, "generated": 4, "cache_hits": 1}
    assert wrapper(PROMPTS[::-1]) == single[:3][::-1]
    assert wrapper.stats["generated"] == 4 and wrapper.stats["cache_hits"] == 4
    naive = GenerationModelWrapper(micro_lm, SETTINGS, cache=False, batch_size=1)
    assert naive(prompts) == single and naive(prompts) == single
    assert naive.stats["generated"] == 10


def test_wrapper_disk_cache_reuses_outputs_across_wrappers(micro_lm, tmp_path):
    from audit.attacks import GenerationModelWrapper
    from audit.io.cache import DiskCache

    first = GenerationModelWrapper(micro_lm, SETTINGS, disk_cache=DiskCache(tmp_path, "gen"))
    a = first(PROMPTS)
    second = GenerationModelWrapper(micro_lm, SETTINGS, disk_cache=DiskCache(tmp_path, "gen"))
    assert second(PROMPTS) == a and second.stats["generated"] == 0


def test_wrapper_disk_cache_is_not_shared_across_dtypes(micro_path, micro_lm, tmp_path):
    # Same weights file (same fingerprint, same cache namespace), other dtype: other generations,
    # so the cache must not answer a bfloat16 run with float32 outputs.
    from audit.attacks import GenerationModelWrapper
    from audit.io.cache import DiskCache
    from audit.models.local import LanguageModel

    bf16 = LanguageModel.load(str(micro_path), dtype="bfloat16")
    assert bf16.fingerprint == micro_lm.fingerprint
    GenerationModelWrapper(micro_lm, SETTINGS, disk_cache=DiskCache(tmp_path, "gen"))(PROMPTS)
    second = GenerationModelWrapper(bf16, SETTINGS, disk_cache=DiskCache(tmp_path, "gen"))
    assert second(PROMPTS) == [g[0] for g in bf16.generate(PROMPTS, SETTINGS)]
    assert second.stats["generated"] == len(PROMPTS)


# ---- goals --------------------------------------------------------------------------------------
def test_output_change_goal_scores_against_the_clean_output(wrapper):
    from audit.attacks.similarity import similarity

    goal = _goal(wrapper, max_similarity=0.5)
    goal.ground_truth_output = "open the settings page and press reset"
    assert goal._get_score(goal.ground_truth_output, None) == 0.0
    assert not goal._is_goal_complete("open the settings page and press reset now", None)
    other = "zzz qqq"
    assert goal._get_score(other, None) == pytest.approx(1 - similarity(other, goal.ground_truth_output))
    assert goal._is_goal_complete(other, None)


@pytest.mark.parametrize("kind", ["chrf", "rouge_l"])
def test_blank_outputs_differing_only_in_whitespace_are_identical(kind, wrapper):
    # Both measures ignore whitespace: "\n" and "\n\n" (a model that only emits newlines) are the
    # same output, not completely different ones, and no attack succeeds by changing between them.
    from audit.attacks.similarity import similarity

    assert similarity("\n", "\n\n", kind) == 1.0 and similarity("", " ", kind) == 1.0
    assert similarity("", "word", kind) == 0.0 and similarity("\n", "word", kind) == 0.0
    goal = _goal(wrapper, max_similarity=0.5, measure=kind)
    goal.ground_truth_output = "\n"
    assert not goal._is_goal_complete("\n\n", None)


def test_non_overlapping_goal_counts_positions_past_a_short_output(wrapper):
    from audit.attacks import make_goal
    from audit.attacks.goals import non_overlap

    assert non_overlap("x y", "a b c d") == 1.0        # TextAttack's version would give 0.5
    assert non_overlap("a y", "a b c d") == 0.75
    assert non_overlap("", "") == 0.0 and non_overlap("w", "") == 1.0
    goal = make_goal("non_overlapping", wrapper, min_fraction=0.75)
    goal.ground_truth_output = "a b c d"
    assert goal._is_goal_complete("a y", None) and not goal._is_goal_complete("a b y", None)


def test_toxicity_goal_uses_the_scorer_and_skips_already_toxic_outputs(wrapper):
    from textattack.goal_function_results import GoalFunctionResultStatus
    from textattack.shared import AttackedText

    from audit.attacks import make_goal

    goal = make_goal("toxicity", wrapper, scorer="profanity", threshold=0.5)
    toxic, polite = "shut up you stupid idiot", "have a lovely day"
    assert goal._toxicity(toxic) > 0.5 > goal._toxicity(polite)
    # The wrapper is primed so the prompt's output is known: an already-toxic clean output is skipped.
    wrapper.prime(["prompt one", "prompt two"], [toxic, polite])
    r, _ = goal.init_attack_example(AttackedText("prompt one"), toxic)
    assert r.goal_status == GoalFunctionResultStatus.SKIPPED
    r, _ = goal.init_attack_example(AttackedText("prompt two"), polite)
    assert r.goal_status == GoalFunctionResultStatus.SEARCHING and r.score == pytest.approx(goal._toxicity(polite))


# ---- real attacks -------------------------------------------------------------------------------
def test_real_attack_succeeds_and_changes_the_output(micro_lm, wrapper):
    """A real TextAttack Attack (transformation, constraints, greedy WIR search) via attack.attack()."""
    from textattack import Attack

    from audit.attacks import Target, attack_targets
    from audit.attacks.similarity import similarity

    attack = build_attack("deepwordbug", _goal(wrapper, budget=40, max_similarity=0.5), max_words=2)
    assert isinstance(attack, Attack)
    clean = wrapper(PROMPTS)
    records = attack_targets(attack, [Target(str(i), p, c) for i, (p, c) in enumerate(zip(PROMPTS, clean))],
                             recipe="deepwordbug", seed=0)
    wins = [r for r in records if r["success"]]
    assert wins, [(r["perturbed_prompt"], r["perturbed_output"]) for r in records]
    for r in records:
        assert set(r) == RECORD_KEYS and r["queries"] <= 40 and r["words_perturbed"] <= 2
    for r in wins:
        assert r["perturbed_prompt"] != r["original_prompt"]
        assert r["perturbed_output"] != r["clean_output"]
        assert similarity(r["perturbed_output"], r["clean_output"]) <= 0.5
        # The output is the model's real output for the perturbed prompt, not a cached artefact.
        assert micro_lm.generate([r["perturbed_prompt"]], SETTINGS)[0][0] == r["perturbed_output"]
        assert 1 <= r["words_perturbed"] == len(r["perturbed_word_indices"])
    # Seeded per example: the same attack again gives the same records.
    again = attack_targets(attack, [Target(str(i), p, c) for i, (p, c) in enumerate(zip(PROMPTS, clean))],
                           recipe="deepwordbug", seed=0)
    assert again == records


def test_textattack_attacker_runs_a_recipe_on_the_micro_model(wrapper):
    """TextAttack's own Attacker loop drives our wrapper, goal and recipe unchanged."""
    import textattack
    from textattack.attack_results import SuccessfulAttackResult

    clean = wrapper(PROMPTS)
    attack = build_attack("bad_characters", _goal(wrapper, budget=30))
    dataset = textattack.datasets.Dataset(list(zip(PROMPTS, clean)))
    args = textattack.AttackArgs(num_examples=len(PROMPTS), silent=True, disable_stdout=True, random_seed=0,
                                 query_budget=30)
    results = textattack.Attacker(attack, dataset, args).attack_dataset()
    assert len(results) == len(PROMPTS)
    wins = [r for r in results if isinstance(r, SuccessfulAttackResult)]
    assert wins
    for r in wins:
        assert r.perturbed_result.output != r.original_result.output
        assert r.perturbed_result.num_queries <= 30


@pytest.mark.slow
@needs_debian_wordnet
@pytest.mark.parametrize("name", RECIPES.names())
def test_every_recipe_builds_and_runs_offline(name, wrapper):
    from audit.attacks import Target, attack_targets

    prompt = "I do not know where order 1234 is, the application crashes whenever I open settings"
    attack = build_attack(name, _goal(wrapper, budget=12))
    (rec,) = attack_targets(attack, [Target("x", prompt, wrapper([prompt])[0])], recipe=name)
    assert set(rec) == RECORD_KEYS and rec["recipe"] == name
    assert 1 <= rec["queries"] <= 12 and 0 <= rec["words_perturbed_pct"] <= 100
    assert rec["success"] == (rec["perturbed_output"] != rec["clean_output"] and rec["score"] >= 0.5)


def test_contraction_swap_contracts_and_expands():
    from textattack.shared import AttackedText

    from audit.attacks.transformations import WordSwapContractions

    t = WordSwapContractions()
    assert sorted(x.text for x in t(AttackedText("I do not know it"))) == ["I don't know it"]
    assert sorted(x.text for x in t(AttackedText("Don't go, it's late"))) == ["Do not go, it's late", "Don't go, it is late"]


def test_recipe_registry_is_listed_by_the_cli(capsys):
    from audit.cli import main

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "attack recipes:" in out and all(f"  {n}" in out for n in RECIPES.names())
    assert "prompt perturbations:" in out


def test_export_writes_only_successful_attacks(tmp_path):
    from audit.attacks.export import FIELDS, write_adversarial_jsonl
    from audit.results import AuditResult, SectionResult

    base = dict(recipe="deepwordbug", clean_output="c", reference=None, score=0.7, words_perturbed=1,
                words_perturbed_pct=10.0, queries=5, perturbed_word_indices=[0])
    recs = [dict(base, id="a", original_prompt="p", perturbed_prompt="q", perturbed_output="o", success=True, skipped=False,
                 reference="ref"),
            dict(base, id="b", original_prompt="p2", perturbed_prompt="q2", perturbed_output="o2", success=False, skipped=False),
            dict(base, id="c", original_prompt="p3", perturbed_prompt="p3", perturbed_output="c", success=False, skipped=True)]
    result = AuditResult(suite={}, model={}, generation={}, seed=0,
                         sections={"robustness": SectionResult(name="robustness", records=recs)})
    path = write_adversarial_jsonl(result, tmp_path / "adv" / "adversarial.jsonl")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert rows == [{"id": "a", "prompt": "q", "original_prompt": "p", "target": "c", "reference": "ref",
                     "recipe": "deepwordbug", "clean_output": "c", "perturbed_output": "o"}]
    assert tuple(rows[0]) == FIELDS


def test_goal_names_match_the_goal_registry():
    from audit.attacks import GOAL_NAMES, GOALS

    assert sorted(GOAL_NAMES) == GOALS.names()
    assert LEXNAMES_TABLE.is_file()
