"""Self-BLEU must equal the quadratic NLTK loop (the definition) on every corpus."""

import math
import random
import time
import warnings

import pytest
from nltk.translate.bleu_score import SmoothingFunction
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu

from audit.metrics import self_bleu, self_bleu_per_text

TOL = 1e-9


def nltk_self_bleu_per_text(token_lists, max_n):
    """The reference definition, verbatim: each text vs. all the others."""
    smooth = SmoothingFunction().method1
    weights = (1 / max_n,) * max_n
    scores = []
    for i, hyp in enumerate(token_lists):
        refs = [t for j, t in enumerate(token_lists) if j != i]
        scores.append(nltk_sentence_bleu(refs, hyp, weights=weights, smoothing_function=smooth))
    return scores


def nltk_self_bleu(token_lists, max_n):
    scores = nltk_self_bleu_per_text(token_lists, max_n)
    return sum(scores) / len(scores)


def random_corpus(rng):
    """Tiny vocab (overlaps everywhere), lengths 0..12, duplicates, 1-token texts."""
    vocab = "abcdefgh"[: rng.randint(1, 8)]
    corpus = []
    for _ in range(rng.randint(2, 12)):
        kind = rng.random()
        if kind < 0.1:
            corpus.append([])
        elif kind < 0.25:
            corpus.append([rng.choice(vocab)])
        elif kind < 0.4 and corpus:
            corpus.append(list(rng.choice(corpus)))  # exact duplicate
        else:
            corpus.append([rng.choice(vocab) for _ in range(rng.randint(0, 12))])
    return corpus


def assert_matches_nltk(token_lists, max_n):
    expected = nltk_self_bleu_per_text(token_lists, max_n)
    got = self_bleu_per_text(token_lists, max_n)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert abs(g - e) <= TOL, (i, g, e, token_lists, max_n)
    assert abs(self_bleu(token_lists, max_n) - sum(expected) / len(expected)) <= TOL


@pytest.mark.parametrize("seed", range(8))
def test_parity_with_nltk_on_random_corpora(seed):
    rng = random.Random(seed)
    for _ in range(150):
        assert_matches_nltk(random_corpus(rng), rng.randint(1, 5))


def test_results_are_bit_identical_to_nltk():
    # Stronger than the 1e-9 contract: the final combination uses NLTK's own
    # float operations, so not even the last bit differs.
    rng = random.Random(1234)
    for _ in range(300):
        corpus, max_n = random_corpus(rng), rng.randint(1, 5)
        assert self_bleu_per_text(corpus, max_n) == nltk_self_bleu_per_text(corpus, max_n)
        assert self_bleu(corpus, max_n) == nltk_self_bleu(corpus, max_n)


def test_parity_on_realistic_sentences():
    rng = random.Random(7)
    words = [f"w{i}" for i in range(60)]
    corpus = [rng.choices(words, k=rng.randint(8, 20)) for _ in range(80)]
    corpus += [list(corpus[3]), corpus[5][:4]]
    for max_n in (2, 4):
        assert_matches_nltk(corpus, max_n)


@pytest.mark.parametrize(
    "corpus",
    [
        [[], []],  # all empty -> 0
        [[], ["a", "b"], ["a", "b"], []],  # empty hypotheses score 0, empty refs match nothing
        [["a"], ["a"]],  # shorter than max_n: p2..p4 are smoothed 0.1/1, not 0 or 1
        [["a"], ["a", "b", "c", "d", "e"]],  # heavy brevity penalty
        [["a"] * 12, ["a"] * 11, ["a"] * 13],  # equidistant refs: the shorter (11) wins
        [["a"] * 7, ["a"] * 6, ["a"] * 8],  # tie again -> 6, so BP = 1
        [["a"] * 7, ["a"] * 11, ["a"] * 8],  # closest is 8 -> BP < 1
        [["x", "y"], ["a", "b"]],  # no unigram match -> exactly 0, no smoothing
        [["a", "a", "a", "a"], ["a", "b"]],  # clipping by the max other count
        [["a", "b", "a", "b"], ["a", "b", "a", "b"], ["a", "b"]],  # owner tie for the top count
        [[1, 2, 3], [1, 2], [2, 3, 1]],  # non-string tokens
    ],
)
@pytest.mark.parametrize("max_n", [1, 2, 4, 5])
def test_nltk_special_cases(corpus, max_n):
    assert_matches_nltk(corpus, max_n)


def test_known_values():
    # Identical texts: every text is a perfect match (BP = 1).
    assert self_bleu(["a b c d", "a b c d"]) == 1.0
    # Disjoint vocabularies: no unigram match anywhere.
    assert self_bleu(["a b c d", "e f g h"]) == 0.0
    # One matching token, max_n 4: exp(3/4 * log 0.1) -- smoothing of absent orders.
    assert self_bleu(["a", "a"]) == pytest.approx(0.1**0.75)
    assert self_bleu_per_text(["a b", "a b", "c d"], max_n=2) == [1.0, 1.0, 0.0]


def test_strings_tokenizer_and_token_lists_agree():
    texts = ["the cat sat on the mat", "the  cat\tsat", "a dog on the mat"]
    as_tokens = [t.split() for t in texts]
    assert self_bleu(texts) == self_bleu(as_tokens)
    assert self_bleu(texts, tokenizer=str.split) == self_bleu(as_tokens)
    # Character tokenizer: matches NLTK fed characters.
    chars = [list(t) for t in texts]
    assert self_bleu(texts, tokenizer=list) == pytest.approx(nltk_self_bleu(chars, 4), abs=TOL)
    # Any iterable of texts works, not only lists.
    assert self_bleu(iter(texts)) == self_bleu(texts)


def test_no_warnings_emitted():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        self_bleu(["a", "b", "", "a b c d e"])


@pytest.mark.parametrize("texts", [[], ["only one text"], [["a", "b"]]])
def test_fewer_than_two_texts_is_an_error(texts):
    with pytest.raises(ValueError, match="at least 2 texts"):
        self_bleu(texts)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_n"):
        self_bleu(["a", "b"], 0)
    with pytest.raises(ValueError, match="max_n"):
        self_bleu(["a", "b"], True)
    with pytest.raises(TypeError, match="single string"):
        self_bleu("a b c")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        self_bleu(["a", 3])


def test_scales_linearly():
    # 20k realistic texts: ~0.3 s here, while the NLTK loop would need hours.
    # The bound is loose so a loaded CI box passes; a quadratic regression
    # would still blow far past it.
    rng = random.Random(0)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choices(words, k=rng.randint(8, 20))) for _ in range(20_000)]
    start = time.perf_counter()
    value = self_bleu(texts)
    assert time.perf_counter() - start < 15.0
    assert 0.0 < value < 1.0 and math.isfinite(value)
