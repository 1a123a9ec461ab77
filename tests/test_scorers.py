"""Scorer interface and the offline backends: profanity, VADER, hf:PATH, cached scoring."""

from __future__ import annotations

import math

import pytest
import torch

from audit.io.cache import DiskCache
from audit.registry import UnknownNameError
from audit.scorers import (SCORERS, Scorer, ScorerError, get_scorer, get_sentiment_scorer, parse_spec, score_cached,
                           shared_scorer)
from audit.scorers.testing import build_tiny_bert_classifier

TEXTS = ["have a lovely day", "shut up you stupid idiot", "what a fucking mess", "the weather is nice",
         "", "I will hurt you", "thank you so much for the help!"]


def test_parse_spec():
    assert parse_spec("detoxify:original") == ("detoxify", "original")
    assert parse_spec("profanity") == ("profanity", None)
    assert parse_spec("hf:/a/b:c") == ("hf", "/a/b:c")
    with pytest.raises(ScorerError):
        parse_spec("  ")


def test_registry_and_errors():
    assert {"profanity", "detoxify", "hf"} <= set(SCORERS.names())
    with pytest.raises(UnknownNameError, match="did you mean 'profanity'"):
        get_scorer("profanty")
    with pytest.raises(ScorerError, match="unknown option 'lable'.*valid: checkpoint, config_dir, label"):
        get_scorer("detoxify:original", lable="toxicity")
    with pytest.raises(ScorerError, match="takes no argument"):
        get_scorer("profanity:strict")
    with pytest.raises(ScorerError, match="hf:PATH"):
        get_scorer("hf")


def test_profanity_scores_profane_text_higher():
    s = get_scorer("profanity")
    scores = s.score(TEXTS)
    assert all(0.0 <= v <= 1.0 for v in scores)
    clean = [scores[0], scores[3], scores[6]]
    profane = [scores[1], scores[2]]
    assert max(clean) < 0.5 < min(profane)
    assert s.name == "profanity" and s.describe()["backend"] == "profanity"
    assert "alt-profanity-check" in s.describe()["package"]


def test_profanity_matches_library_and_batching():
    import profanity_check

    s = get_scorer("profanity")
    ref = profanity_check.predict_prob(TEXTS).tolist()
    assert s.score(TEXTS, batch_size=1) == pytest.approx(ref, abs=1e-12)
    assert s.score(TEXTS, batch_size=3) == pytest.approx(ref, abs=1e-12)


def test_vader_is_compound_in_range():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    s = get_sentiment_scorer("vader")
    got = s.score(TEXTS, batch_size=2)
    ref = [SentimentIntensityAnalyzer().polarity_scores(t)["compound"] for t in TEXTS]
    assert got == ref
    assert all(-1 <= v <= 1 for v in got)
    assert got[6] > 0.3 and got[1] < -0.3
    assert s.kind == "sentiment"


def _bert_probs(model, tok, texts, index, sigmoid=False):
    enc = tok(texts, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        logits = model(**enc).logits
    p = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, -1)
    return p[:, index].tolist()


def test_hf_backend_reads_named_label(tmp_path):
    from transformers import BertTokenizer

    model = build_tiny_bert_classifier(tmp_path / "clf", labels=["nothate", "hate"])
    s = get_scorer(f"hf:{tmp_path / 'clf'}")
    assert s.label == "hate"            # picked by default, as evaluate's toxicity measurement reads it
    got = s.score(TEXTS, batch_size=2)
    tok = BertTokenizer.from_pretrained(tmp_path / "clf")
    # One at a time: padding in a batch must not change any score.
    ref = [_bert_probs(model, tok, [t], 1)[0] for t in TEXTS]
    assert got == pytest.approx(ref, abs=1e-5)
    assert len({round(v, 4) for v in got}) > 2   # the scores really depend on the text
    by_index = get_scorer(f"hf:{tmp_path / 'clf'}", label=0).score(TEXTS)
    assert by_index == pytest.approx([1 - v for v in got], abs=1e-5)
    assert s.describe()["label"] == "hate" and s.describe()["activation"] == "softmax"


def test_hf_backend_multilabel_and_label_errors(tmp_path):
    from transformers import BertTokenizer

    model = build_tiny_bert_classifier(tmp_path / "ml", labels=["toxicity", "insult", "threat"], multi_label=True)
    s = get_scorer(f"hf:{tmp_path / 'ml'}", label="threat")
    tok = BertTokenizer.from_pretrained(tmp_path / "ml")
    assert s.score(TEXTS[:3]) == pytest.approx(_bert_probs(model, tok, TEXTS[:3], 2, sigmoid=True), abs=1e-5)
    with pytest.raises(ScorerError, match="unknown label 'thret'.*did you mean 'threat'"):
        get_scorer(f"hf:{tmp_path / 'ml'}", label="thret")
    build_tiny_bert_classifier(tmp_path / "anon", labels=["LABEL_0", "LABEL_1"])
    with pytest.raises(ScorerError, match="which label is toxic.*LABEL_0, LABEL_1"):
        get_scorer(f"hf:{tmp_path / 'anon'}")
    with pytest.raises(ScorerError, match="does not exist"):
        get_scorer(f"hf:{tmp_path / 'missing'}")


class Counting(Scorer):
    """A backend that records what it was asked to score (to observe the cache)."""

    name = "counting"

    def __init__(self, value=0.25):
        self.calls: list[list[str]] = []
        self.value = value

    def _score_batch(self, texts):
        self.calls.append(list(texts))
        return [min(1.0, len(t) / 100) for t in texts]


def test_score_cached_scores_each_text_once_and_persists(tmp_path):
    s = Counting()
    cache = DiskCache(tmp_path, "scores")
    texts = ["a", "bb", "a", "ccc"]
    first = score_cached(s, texts, cache)
    assert first == [0.01, 0.02, 0.01, 0.03]
    assert sorted(t for c in s.calls for t in c) == ["a", "bb", "ccc"]   # the duplicate scored once
    s.calls.clear()
    again = score_cached(s, texts + ["dddd"], DiskCache(tmp_path, "scores"))   # reloaded from disk
    assert again == first + [0.04]
    assert s.calls == [["dddd"]]


def test_cache_is_keyed_by_backend(tmp_path):
    cache = DiskCache(tmp_path, "scores")
    a = score_cached(get_scorer("profanity"), ["you idiot"], cache)
    b = Counting()
    assert score_cached(b, ["you idiot"], cache) == [0.09]
    assert b.calls == [["you idiot"]] and a != [0.09]


def test_template_rejects_bad_backend_output():
    class Bad(Scorer):
        name = "bad"

        def __init__(self, out):
            self.out = out

        def _score_batch(self, texts):
            return self.out

    with pytest.raises(ScorerError, match="outside"):
        Bad([1.5]).score(["x"])
    with pytest.raises(ScorerError, match="outside"):
        Bad([math.nan]).score(["x"])
    with pytest.raises(ScorerError, match="2 texts"):
        Bad([0.1]).score(["x", "y"])
    with pytest.raises(ScorerError, match="must be a string"):
        Counting().score(["x", None])


def test_shared_scorer_is_one_instance():
    assert shared_scorer("profanity") is shared_scorer("profanity")
    assert shared_scorer("vader", sentiment=True) is not shared_scorer("profanity")


def _tiny_decoder_classifier(path, config_cls, model_cls, *, eos: bool = True):
    """A random decoder-only classifier saved with the micro model's tokenizer minus its pad token (as
    GPT-2 / Llama / Qwen2 checkpoints usually ship), and optionally minus EOS too."""
    from transformers import AutoTokenizer

    from audit.models.builtin import resolve

    tok = AutoTokenizer.from_pretrained(resolve("builtin:micro"))
    tok.pad_token = None
    if not eos:
        tok.eos_token = None
    torch.manual_seed(0)
    cfg = config_cls(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=2, num_labels=2, id2label={0: "ok", 1: "toxic"}, label2id={"ok": 0, "toxic": 1})
    model = model_cls(cfg).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok


@pytest.mark.parametrize("arch,eos", [("llama", True), ("qwen2", True), ("llama", False)])
def test_hf_backend_decoder_classifier_without_pad_token(tmp_path, arch, eos):
    """Batches of a decoder-only classifier with no pad token used to raise ValueError ('Asking to pad ...')."""
    from transformers import LlamaConfig, LlamaForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification

    classes = {"llama": (LlamaConfig, LlamaForSequenceClassification), "qwen2": (Qwen2Config, Qwen2ForSequenceClassification)}
    model, tok = _tiny_decoder_classifier(tmp_path / arch, *classes[arch], eos=eos)
    s = get_scorer(f"hf:{tmp_path / arch}")
    got = s.score(TEXTS, batch_size=4)
    # One at a time, no padding at all: the scores must not depend on the batch. The empty text (zero
    # tokens: the model could not run on it) is scored as the EOS (else BOS) token alone.
    empty = tok.eos_token or tok.bos_token or " "
    ref = [torch.softmax(model(**tok([t or empty], return_tensors="pt")).logits, -1)[0, 1].item() for t in TEXTS]
    assert got == pytest.approx(ref, abs=1e-5)
    assert s.score([""]) == pytest.approx([ref[TEXTS.index("")]], abs=1e-5)
    assert len({round(v, 5) for v in got}) > 2
