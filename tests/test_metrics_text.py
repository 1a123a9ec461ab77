"""Diversity metrics vs. hand-computed values, quality wrappers vs. the libraries,
and the ``evaluate`` modules loaded by path, offline."""

import doctest
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
from rouge_score import rouge_scorer

import audit.metrics as M
from audit.metrics import (
    corpus_bleu,
    corpus_chrf,
    distinct_n,
    module_path,
    ngram_entropy,
    perplexity,
    rep_n,
    rep_n_per_text,
    rouge_l,
    sentence_bleu,
    sentence_chrf,
    sentence_rouge_l,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- distinct-n ---------------------------------------------------------------


def test_distinct_n_hand_values():
    texts = ["a b a b", "a b c"]
    # unigrams: a b a b a b c -> {a, b, c} = 3 / 7
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    # bigrams: ab ba ab | ab bc -> {ab, ba, bc} = 3 / 5 (never "b a" across texts)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)
    # trigrams: aba bab | abc -> 3 / 3
    assert distinct_n(texts, 3) == 1.0


def test_distinct_n_edge_cases():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["", "a"], 2) == 0.0  # no bigrams anywhere
    # n-grams don't cross text boundaries: "a" + "b" is not the bigram "a b".
    assert distinct_n(["a", "b", "a b"], 2) == 1.0
    assert distinct_n([["x", "y"], "x y"], 2) == 0.5  # token lists and strings mix
    assert distinct_n(["ab", "ba"], 1, tokenizer=list) == 0.5
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)


# --- rep-n --------------------------------------------------------------------


def test_rep_n_hand_values():
    texts = ["a a a a", "a b c", "x y x y", "z"]
    # bigrams: aa aa aa -> 1 - 1/3 | ab bc -> 0 | xy yx xy -> 1 - 2/3 | none -> nan
    per_text = rep_n_per_text(texts, 2)
    assert per_text[:3] == pytest.approx([2 / 3, 0.0, 1 / 3])
    assert math.isnan(per_text[3])
    # mean skips the text without bigrams
    assert rep_n(texts, 2) == pytest.approx((2 / 3 + 0 + 1 / 3) / 3)
    # unigrams: 1 - 1/4 | 0 | 1 - 2/4 | 0
    assert rep_n(texts, 1) == pytest.approx((0.75 + 0 + 0.5 + 0) / 4)


def test_rep_n_without_ngrams_is_nan():
    assert math.isnan(rep_n(["a", ""], 2))
    assert math.isnan(rep_n([], 1))
    assert rep_n_per_text([], 1) == []


# --- entropy --------------------------------------------------------------------


def test_ngram_entropy_hand_values():
    assert ngram_entropy(["a b c d"], 1) == pytest.approx(2.0)  # uniform over 4, in bits
    # counts a:2 b:1 c:1 -> -(1/2 log2 1/2 + 2 * 1/4 log2 1/4) = 1.5 bits
    assert ngram_entropy(["a b", "a c"], 1) == pytest.approx(1.5)
    # bigrams ab, ac -> 1 bit
    assert ngram_entropy(["a b", "a c"], 2) == pytest.approx(1.0)
    assert ngram_entropy(["a a a"], 1) == 0.0
    assert ngram_entropy(["a"], 2) == 0.0
    assert ngram_entropy([], 1) == 0.0


# --- perplexity -----------------------------------------------------------------


def test_perplexity_is_token_weighted():
    assert perplexity([2.0, 4.0], [2, 4]) == pytest.approx(math.e)
    # Short, badly predicted sample: the token-weighted value is not the
    # mean of per-sample perplexities (which would be (e^5 + e^0.1)/2).
    nll, n = [5.0, 10.0], [1, 100]
    assert perplexity(nll, n) == pytest.approx(math.exp(15 / 101))
    assert perplexity([0.0], [3]) == 1.0
    assert perplexity([1e6], [1]) == math.inf


def test_perplexity_accepts_numpy_and_torch():
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    assert perplexity(np.array([2.0, 4.0]), np.array([2, 4])) == pytest.approx(math.e)
    assert perplexity(torch.tensor([2.0, 4.0]), torch.tensor([2, 4])) == pytest.approx(math.e)


@pytest.mark.parametrize(
    "nll, counts",
    [([1.0], [1, 2]), ([], []), ([1.0], [0]), ([1.0, 1.0], [2, -1])],
)
def test_perplexity_errors(nll, counts):
    with pytest.raises(ValueError):
        perplexity(nll, counts)


# --- quality wrappers -------------------------------------------------------------

HYPS = [
    "the cat sat on the mat",
    "a quick brown fox jumps over a lazy dog",
    "hello there general kenobi",
    "",
]
REFS = [
    "the cat is sitting on the mat",
    "the quick brown fox jumped over the lazy dog",
    "hello there",
    "nothing",
]
MULTI = [
    ["the cat is on the mat", "there is a cat on the mat"],
    ["a fast brown fox leaps over a lazy dog"],  # ragged: one reference only
    ["general kenobi, hello there", "hello"],
    ["nothing"],
]


def test_corpus_bleu_and_chrf_match_sacrebleu():
    assert corpus_bleu(HYPS, REFS) == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert corpus_chrf(HYPS, REFS) == sacrebleu.corpus_chrf(HYPS, [REFS]).score
    streams = [[r[0] for r in MULTI], [r[1] if len(r) > 1 else None for r in MULTI]]
    assert corpus_bleu(HYPS, MULTI) == sacrebleu.corpus_bleu(HYPS, streams).score
    assert corpus_chrf(HYPS, MULTI) == sacrebleu.corpus_chrf(HYPS, streams).score
    assert 0 < corpus_bleu(HYPS, REFS) < 100  # sacrebleu's 0-100 scale


def test_sentence_bleu_and_chrf_match_sacrebleu():
    assert sentence_bleu(HYPS, REFS) == [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)]
    assert sentence_chrf(HYPS, REFS) == [sacrebleu.sentence_chrf(h, [r]).score for h, r in zip(HYPS, REFS)]
    assert sentence_bleu(HYPS, MULTI) == [sacrebleu.sentence_bleu(h, r).score for h, r in zip(HYPS, MULTI)]
    assert sentence_chrf(HYPS, MULTI) == [sacrebleu.sentence_chrf(h, r).score for h, r in zip(HYPS, MULTI)]


def test_rouge_l_matches_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS)]
    assert sentence_rouge_l(HYPS, REFS) == expected
    assert rouge_l(HYPS, REFS) == pytest.approx(sum(expected) / len(expected), abs=1e-15)
    expected_multi = [scorer.score_multi(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, MULTI)]
    assert sentence_rouge_l(HYPS, MULTI) == expected_multi
    # No stemming: "sitting" vs "sits" do not match.
    assert sentence_rouge_l(["sits"], ["sitting"]) == [0.0]


def test_quality_wrapper_errors():
    for fn in (corpus_bleu, corpus_chrf, rouge_l):
        with pytest.raises(ValueError, match="no hypotheses"):
            fn([], [])
    for fn in (sentence_bleu, sentence_chrf, sentence_rouge_l):
        assert fn([], []) == []
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="non-empty list"):
        sentence_bleu(["a"], [[]])
    with pytest.raises(TypeError):
        corpus_chrf("a b", "a b")


# --- package surface --------------------------------------------------------------


def test_docstring_examples_run():
    import importlib

    for name in ("__init__", "_tokens", "self_bleu", "distinct", "repetition", "entropy",
                 "text_quality", "perplexity", "evaluate_modules"):
        module = importlib.import_module("audit.metrics" if name == "__init__" else f"audit.metrics.{name}")
        result = doctest.testmod(module)
        assert result.failed == 0, name
        assert result.attempted > 0, name


def test_module_path():
    for name in M.MODULE_NAMES:
        path = Path(module_path(name))
        assert path.is_absolute() and (path / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="available"):
        module_path("bleurt")


def test_evaluate_modules_load_by_path_offline(tmp_path):
    # A fresh interpreter with the hub switched off and an empty module cache,
    # run from an unrelated directory: evaluate copies the scripts into its
    # cache, so they only work if they import the installed audit package.
    script = """
import json, sys, evaluate
from audit.metrics import module_path, self_bleu, distinct_n
texts = ["the cat sat", "the cat sat", "a dog ran", "a cat ran on"]
sb = evaluate.load(module_path("self_bleu"), keep_in_memory=True, cache_dir=sys.argv[1])
dn = evaluate.load(module_path("distinct_n"), keep_in_memory=True, cache_dir=sys.argv[1])
print(json.dumps({
    "self_bleu": sb.compute(predictions=texts, max_n=2),
    "self_bleu_default": sb.compute(predictions=texts),
    "distinct": dn.compute(predictions=texts, n=1),
    "direct": [self_bleu(texts, 2), self_bleu(texts), distinct_n(texts, 1)],
}))
"""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HOME=str(tmp_path / "hf"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cache")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    sb, sb_default, dn = out["direct"]
    assert out["self_bleu"] == {"self_bleu": sb}
    assert out["self_bleu_default"] == {"self_bleu": sb_default}
    assert out["distinct"] == {"distinct_n": dn}
    # The scripts really were copied into (and imported from) the fresh cache.
    copied = {p.name for p in (tmp_path / "modules").rglob("*.py")}
    assert {"self_bleu.py", "distinct_n.py"} <= copied
