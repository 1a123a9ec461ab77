"""Embedding similarity (all-MiniLM-L6-v2 cosine): the real model, batched and cached, a choice everywhere a
similarity is used, and TextAttack's sentence-encoder constraint on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audit.attacks import similarity as sim_mod
from audit.attacks.similarity import mean_pairwise_similarity, prefetch, similarity
from audit.scorers.encoder import SentenceEncoder

RESET = "You can reset your password from the sign-in page."
REWORDED = "To reset the password, open the sign-in screen and follow the link."
UNRELATED = "Shipping is free on orders over 50 dollars."


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder.shared()


def test_it_is_the_real_model_known_orderings_and_unit_norms(encoder):
    vecs = encoder.embed([RESET, REWORDED, UNRELATED, "A man is eating food.", "A man is eating a piece of bread."])
    assert vecs.shape == (5, 384)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # sentence-transformers' documented example pair.
    assert abs(float(vecs[3] @ vecs[4]) - 0.755) < 0.005
    # A paraphrase is far closer than an unrelated answer.
    assert float(vecs[0] @ vecs[1]) > 0.8 > 0.2 > float(vecs[0] @ vecs[2])


def test_embedding_scores_a_rewording_as_the_same_answer_where_chrf_does_not():
    assert similarity(RESET, RESET, "embedding") == 1.0
    assert similarity("", "  ", "embedding") == 1.0 and similarity("", RESET, "embedding") == 0.0
    emb_same, emb_other = similarity(RESET, REWORDED, "embedding"), similarity(RESET, UNRELATED, "embedding")
    chrf_same, chrf_other = similarity(RESET, REWORDED, "chrf"), similarity(RESET, UNRELATED, "chrf")
    assert emb_same > 0.8 and emb_other < 0.2
    assert chrf_same < 0.5                            # chrF calls the rewording a different answer
    assert emb_same - emb_other > 2 * (chrf_same - chrf_other)
    assert 0.0 <= similarity("Yes.", "No.", "embedding") <= 1.0


@pytest.fixture
def embed_calls(monkeypatch, encoder):
    """The texts of every call to the shared encoder from here on (one list per call), on an empty cache."""
    calls = []
    real = encoder.embed

    def counting(texts, **kw):
        calls.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(sim_mod, "_embeddings", type(sim_mod._embeddings)())
    monkeypatch.setattr(encoder, "embed", counting)
    return calls


def test_texts_are_embedded_once_and_in_one_batch(embed_calls):
    calls = embed_calls
    texts = [f"Order {i} ships on Monday from the warehouse in Leeds." for i in range(6)]
    m = mean_pairwise_similarity(texts, "embedding")
    assert len(calls) == 1 and sorted(calls[0]) == sorted(texts)   # 15 pairs, one batch of 6 texts
    assert 0.8 < m <= 1.0
    prefetch(texts + [texts[0]], "embedding")
    similarity(texts[0], texts[5] + " ", "embedding")
    assert len(calls) == 2 and calls[1] == [texts[5] + " "]        # only the new text is embedded
    prefetch(["anything"], "chrf")                                # other measures embed nothing
    assert len(calls) == 2


def test_a_missing_encoder_is_a_one_line_error_when_the_suite_is_read(monkeypatch, tmp_path):
    import importlib.util

    from audit.config import ConfigError
    from audit.suite import load_suite

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "a", "prompt": "Hi", "reference": "Hello"}) + "\n")
    (tmp_path / "s.yaml").write_text("name: s\nmodel: builtin:micro\ndata: d.jsonl\n"
                                     "sections:\n  consistency: {similarity: embedding}\n")
    with pytest.raises(ConfigError) as e:
        load_suite(tmp_path / "s.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "sections.consistency" in msg and "sentence-transformers" in msg and "pip install" in msg


def test_sections_run_through_it_and_say_which_similarity_they_measured(micro_lm, tmp_path):
    from audit.runner import run_suite
    from tests.conftest import write_suite

    rows = [{"id": f"r{i}", "prompt": f"Customer: where is order {i}?\nAgent:", "reference": "It ships today."} for i in range(4)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = write_suite(tmp_path, "name: e\nmodel: builtin:micro\ndata: d.jsonl\ngeneration: {max_new_tokens: 6}\n"
                                  "sections:\n  consistency: {similarity: embedding, seed_samples: 2, dir_perturbations: []}\n"
                                  "  robustness: {similarity: embedding, recipes: [deepwordbug], examples: 2, query_budget: 4}\n")
    result = run_suite(suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    con, rob = result.sections["consistency"], result.sections["robustness"]
    assert con.error is None and rob.error is None
    assert 0.0 <= result.metrics["consistency.invariance"] <= 1.0
    assert "MiniLM embedding cosine" in con.metric_info["invariance"].description
    assert "MiniLM embedding cosine" in rob.metric_info["worst_case_similarity"].description
    # The attack success rate says what it counts under its goal.
    assert "any change that large counts" in rob.metric_info["attack_success_rate"].description
    # The worst case equals the measure recomputed from the section's own per-sample scores.
    per = [s.scores["robustness.worst_case_similarity"] for s in result.samples if "robustness.worst_case_similarity" in s.scores]
    assert per and abs(result.metrics["robustness.worst_case_similarity"] - sum(per) / len(per)) < 1e-9


def test_output_change_goal_does_not_count_a_rewording_under_embedding(micro_lm):
    from textattack.shared import AttackedText

    from audit.attacks import GenerationModelWrapper, make_goal
    from audit.config import GenerationSettings

    wrapper = GenerationModelWrapper(micro_lm, GenerationSettings(max_new_tokens=4, do_sample=False))
    for measure, done in (("chrf", True), ("embedding", False)):
        goal = make_goal("output_change", wrapper, query_budget=5, max_similarity=0.5, measure=measure)
        goal.init_attack_example(AttackedText("where is my order"), RESET)
        assert goal._is_goal_complete(REWORDED, None) is done, measure
        assert goal._is_goal_complete(UNRELATED, None) is True, measure


def test_textattack_sentence_encoder_constraint_keeps_synonyms_and_rejects_a_changed_meaning():
    from audit.attacks.constraints import MiniLMSentenceEncoder  # first: the offline NLTK set-up textattack needs
    from textattack.shared import AttackedText

    c = MiniLMSentenceEncoder()
    orig = AttackedText("My order arrived damaged and I would like a refund for the broken lamp please")
    i, j = orig.words.index("refund"), orig.words.index("lamp")
    keep = [orig.replace_word_at_index(i, "reimbursement"), orig.replace_word_at_index(j, "light")]
    drop = [orig.replace_word_at_index(i, "pizza"), orig.replace_word_at_index(j, "cat")]
    kept = {t.text for t in c._check_constraint_many(keep + drop, orig)}
    assert kept == {t.text for t in keep}
    # A prompt shorter than the 15-word window is still checked (TextFooler would wave it through).
    short = AttackedText("My package arrived damaged")
    assert not c._check_constraint_many([short.replace_word_at_index(3, "blue")], short).size
    assert len(c._check_constraint_many([short.replace_word_at_index(3, "broken")], short)) == 1


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(sim_mod, "_EMBED_CACHE_SIZE", 3)
    prefetch([f"bounded cache text {i}" for i in range(5)], "embedding")
    assert len(sim_mod._embeddings) <= 3


def test_sentence_encoder_constraint_embeds_each_distinct_window_once(encoder, embed_calls):
    """TextAttack asks for the original's window again with every candidate: through the shared cache each
    distinct window is embedded once, and the decisions are those of the uncached encoder."""
    from audit.attacks.constraints import MiniLMSentenceEncoder  # first: the offline NLTK set-up textattack needs
    from textattack.shared import AttackedText

    c = MiniLMSentenceEncoder()
    orig = AttackedText("Please cancel my subscription before the next billing date because I am moving abroad")
    swaps = ["stop", "end", "pizza", "renew"]
    i = orig.words.index("cancel")
    candidates = [orig.replace_word_at_index(i, w) for w in swaps]
    for t in candidates:   # what TextAttack's check needs to know which word changed
        t.attack_attrs["newly_modified_indices"] = {i}
    calls = embed_calls
    first = {t.text for t in c._check_constraint_many(candidates, orig)}
    embedded = [t for call in calls for t in call]
    assert len(embedded) == len(set(embedded))                 # no text embedded twice
    assert len(embedded) <= len(candidates) + 1                # the candidates' windows and the original's, once
    again = {t.text for t in c._check_constraint_many(candidates, orig)}
    assert again == first and len([t for call in calls for t in call]) == len(embedded)   # all from the cache
    # Same decisions as the encoder without the cache.
    direct = np.asarray(encoder.embed([orig.text] + [t.text for t in candidates]))   # straight from the encoder
    cos = direct[1:] @ direct[0]
    angular = 1 - np.arccos(np.clip(cos, -1, 1)) / np.pi
    assert first == {t.text for t, a in zip(candidates, angular) if a >= c.threshold}
    assert "pizza" not in " ".join(first) and first
