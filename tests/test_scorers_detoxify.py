"""The detoxify backend through the real `detoxify` package, on tiny checkpoints in Detoxify's format."""

from __future__ import annotations

import shutil
import time

import pytest

from audit.scorers import ScorerError, get_scorer
from audit.scorers.testing import JIGSAW_CLASSES, build_tiny_detoxify_checkpoint

TEXTS = ["you are an idiot", "have a lovely day", "good", "shut up fool", "what is this?", ""]


@pytest.fixture(scope="module")
def local_ckpt(tmp_path_factory):
    """A checkpoint whose model_type names its local config/tokenizer dir (Detoxify's offline route)."""
    return build_tiny_detoxify_checkpoint(tmp_path_factory.mktemp("detox-local"))


@pytest.fixture(scope="module")
def released_ckpt(tmp_path_factory):
    """Same weights, but model_type 'bert-base-uncased' as in the released checkpoints."""
    return build_tiny_detoxify_checkpoint(tmp_path_factory.mktemp("detox-rel"), model_type="bert-base-uncased")


def test_matches_the_detoxify_package(local_ckpt):
    from detoxify import Detoxify

    path, cfg_dir, _ = local_ckpt
    ref = Detoxify(checkpoint=str(path)).predict(TEXTS)   # the package's own loading and prediction
    for label in ("toxicity", "insult", "identity_attack"):
        s = get_scorer("detoxify:original", checkpoint=str(path), label=label)
        assert s.score(TEXTS, batch_size=4) == pytest.approx(ref[label], abs=1e-5)
    assert len({round(v, 3) for v in ref["toxicity"]}) > 3   # scores depend on the text
    d = s.describe()
    assert d["backend"] == "detoxify:original" and d["config_dir"] == str(cfg_dir)
    assert d["classes"] == ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]


def test_batch_size_does_not_change_scores(local_ckpt):
    s = get_scorer("detoxify:original", checkpoint=str(local_ckpt[0]))
    one = s.score(TEXTS, batch_size=1)   # detoxify squeezes a batch of one to a float: handled
    assert s.score(TEXTS, batch_size=32) == pytest.approx(one, abs=1e-5)


def test_released_checkpoint_with_config_dir(released_ckpt, local_ckpt):
    path, cfg_dir, _ = released_ckpt
    s = get_scorer("detoxify:unbiased", checkpoint=str(path), config_dir=str(cfg_dir))
    same = get_scorer("detoxify:original", checkpoint=str(local_ckpt[0]))   # same seed, same weights
    assert s.score(TEXTS) == pytest.approx(same.score(TEXTS), abs=1e-5)
    assert s.name == "detoxify:unbiased"


def test_released_checkpoint_from_the_hf_cache(released_ckpt, tmp_path):
    """model_type resolved in a Hugging Face cache laid out as huggingface_hub writes it."""
    path, cfg_dir, _ = released_ckpt
    repo = tmp_path / "hub" / "models--bert-base-uncased"
    snap = repo / "snapshots" / "0123abcd"
    shutil.copytree(cfg_dir, snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    s = get_scorer("detoxify:original", checkpoint=str(path), hf_cache_dir=str(tmp_path / "hub"))
    assert s.describe()["config_dir"] == str(snap)
    assert all(0 <= v <= 1 for v in s.score(TEXTS))


def test_checkpoint_from_the_torch_hub_cache(local_ckpt, tmp_path, monkeypatch):
    """With no checkpoint option, the file Detoxify() itself downloads is looked up in torch hub's cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    dest = tmp_path / "hub" / "checkpoints"
    dest.mkdir(parents=True)
    shutil.copy(local_ckpt[0], dest / "toxic_original-c1212f89.ckpt")
    s = get_scorer("detoxify:original")
    assert s.describe()["checkpoint"] == str(dest / "toxic_original-c1212f89.ckpt")
    ref = get_scorer("detoxify:original", checkpoint=str(local_ckpt[0]))
    assert s.score(TEXTS) == pytest.approx(ref.score(TEXTS), abs=1e-6)


def _fast_one_line_error(fn, match):
    t = time.perf_counter()
    with pytest.raises(ScorerError, match=match) as e:
        fn()
    assert time.perf_counter() - t < 3.0, "must fail fast, without hub retries"
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_weights_is_a_fast_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    msg = _fast_one_line_error(lambda: get_scorer("detoxify:original"), "weights not found")
    assert "toxic_original-c1212f89.ckpt" in msg and "checkpoint" in msg and "config_dir" in msg
    _fast_one_line_error(lambda: get_scorer("detoxify:multilingual", checkpoint=str(tmp_path / "nope.ckpt")), "nope.ckpt not found")


def test_missing_config_and_tokenizer_is_a_fast_one_line_error(released_ckpt, tmp_path):
    path, cfg_dir, _ = released_ckpt
    msg = _fast_one_line_error(lambda: get_scorer("detoxify:original", checkpoint=str(path), hf_cache_dir=str(tmp_path)),
                               "not in the Hugging Face cache")
    assert "bert-base-uncased" in msg and "config_dir" in msg
    no_tok = tmp_path / "cfg-only"
    no_tok.mkdir()
    shutil.copy(cfg_dir / "config.json", no_tok / "config.json")
    _fast_one_line_error(lambda: get_scorer("detoxify:original", checkpoint=str(path), config_dir=str(no_tok)), "no tokenizer files")
    _fast_one_line_error(lambda: get_scorer("detoxify:original", checkpoint=str(path), config_dir=str(tmp_path / "x")), "no config.json")


def test_bad_checkpoint_and_label(local_ckpt, tmp_path):
    import torch

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}}, bad)
    _fast_one_line_error(lambda: get_scorer("detoxify:original", checkpoint=str(bad)), "not a Detoxify checkpoint")
    _fast_one_line_error(lambda: get_scorer("detoxify:original", checkpoint=str(local_ckpt[0]), label="toxic"),
                         "label 'toxic' is not a class.*toxicity, severe_toxicity")
    assert len(JIGSAW_CLASSES) == 6


@pytest.mark.parametrize("model_name, tokenizer_name", [
    ("BertForSequenceClassification", "TransfoXLTokenizer"),    # passed the old "*Tokenizer" suffix check
    ("BertForSequenceClassification", "RobertaTokenizer"),      # not a pair any checkpoint uses
    ("GPT2ForSequenceClassification", "GPT2Tokenizer"),
    ("BertForSequenceClassification", "AutoTokenizer"),
])
def test_checkpoint_classes_are_held_to_the_released_detoxify_pairs(local_ckpt, tmp_path, model_name, tokenizer_name):
    import torch

    loaded = torch.load(local_ckpt[0], map_location="cpu", weights_only=False)
    loaded["config"]["arch"]["args"].update(model_name=model_name, tokenizer_name=tokenizer_name)
    hostile = tmp_path / "hostile.ckpt"
    torch.save(loaded, hostile)
    msg = _fast_one_line_error(lambda: get_scorer("detoxify:original", checkpoint=str(hostile)),
                               "config.arch.args must name .*model_name / tokenizer_name pair of the released Detoxify checkpoints: "
                               "BertForSequenceClassification "
                               "with BertTokenizer or BertTokenizerFast")
    assert "hostile.ckpt" in msg
