"""Tests for the embedded models (``builtin:micro``, ``builtin:tiny``) and the support data set."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
import torch

from audit.config import bundled_dir
from audit.models import builtin
from audit.models.files import build_lock

SUPPORT = bundled_dir() / "data" / "support.jsonl"


def _load(path):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    return AutoTokenizer.from_pretrained(path), GPT2LMHeadModel.from_pretrained(path)


@pytest.fixture(scope="module")
def micro_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("micro")
    return builtin.build_micro(root / "a", seed=0), builtin.build_micro(root / "b", seed=0)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    a = builtin.build_tiny(root / "a", steps=5, progress=False)
    # The build must restore the thread count and leave the caller's global RNG alone.
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)
    b = builtin.build_tiny(root / "b", steps=5, progress=False)
    return a, b


# ---------------------------------------------------------------- builtin:micro

def test_micro_builds_deterministically(micro_pair):
    a, b = micro_pair
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_micro_seed_changes_weights(micro_pair, tmp_path):
    c = builtin.build_micro(tmp_path / "c", seed=1)
    assert (c / "model.safetensors").read_bytes() != (micro_pair[0] / "model.safetensors").read_bytes()


def test_micro_size_and_special_ids(micro_pair):
    tok, model = _load(micro_pair[0])
    n = sum(p.numel() for p in model.parameters())
    assert 30_000 <= n <= 60_000, n
    eos = tok.convert_tokens_to_ids(builtin.EOS)
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == eos
    cfg = model.config
    assert cfg.bos_token_id == cfg.eos_token_id == cfg.pad_token_id == eos
    assert cfg.vocab_size == len(tok)


@pytest.mark.parametrize("text", [
    "The print statement writes objects to the stream.",
    "Customer: I can't log in, order #48213 costs $59.99!\nAgent: Don't worry.",
    "  leading spaces, tabs\tand unicode: café “quotes”",
])
def test_micro_tokenizer_round_trips(micro_pair, text):
    tok, _ = _load(micro_pair[0])
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    tokens = tok.convert_ids_to_tokens(ids)
    assert len(tokens) == len(ids) and all(isinstance(t, str) for t in tokens)
    assert tok.convert_tokens_to_string(tokens) == text
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text


def test_micro_generates(micro_pair):
    tok, model = _load(micro_pair[0])
    enc = tok(["The print statement", "A"], return_tensors="pt", padding=True)
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, enc["input_ids"].shape[1] + 4)
    assert all(isinstance(s, str) for s in tok.batch_decode(out))


# ---------------------------------------------------------------- builtin:tiny

def test_tiny_build_is_bitwise_reproducible(tiny_pair):
    a, b = tiny_pair
    for name in ("model.safetensors", "tokenizer.json", "config.json", "train_log.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_tiny_loss_decreases(tiny_pair):
    log = json.loads((tiny_pair[0] / "train_log.json").read_text())
    assert log["steps"] == 5 and len(log["loss"]) == 5
    assert log["loss"][-1] < log["loss"][0] - 0.3
    assert log["loss"][0] == pytest.approx(7.6, abs=0.3)  # ~ln(2048) at random init


def test_tiny_architecture_and_special_ids(tiny_pair):
    tok, model = _load(tiny_pair[0])
    cfg = model.config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions) == (2, 128, 4, 256)
    assert 1800 <= len(tok) <= 2048 == cfg.vocab_size
    eos = tok.convert_tokens_to_ids(builtin.EOS)
    assert cfg.bos_token_id == cfg.eos_token_id == cfg.pad_token_id == eos == tok.eos_token_id
    assert tok.model_max_length == 256
    text = "Customer: Where's my refund for order 12345?\nAgent:"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_tiny_lr_schedule():
    lrs = [builtin._tiny_lr(s, 500) for s in range(500)]
    peak = max(lrs)
    assert lrs.index(peak) == 49 and peak == pytest.approx(builtin._TINY_LR)
    assert all(x < y for x, y in zip(lrs[:50], lrs[1:50]))  # warmup rises
    assert all(x >= y for x, y in zip(lrs[49:], lrs[50:]))  # cosine decays
    assert lrs[-1] == pytest.approx(builtin._TINY_LR * builtin._TINY_MIN_LR_FRAC, rel=1e-3)


def test_pretrain_text_is_prose():
    text = builtin.pretrain_text()
    assert 200_000 < len(text) < len(builtin.corpus_text())
    assert "******" not in text and "\n\n" not in text and "\n   " not in text


# ---------------------------------------------------------------- resolve / cache

def test_resolve_builds_once_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path))
    calls = []

    def fake_build(target):
        calls.append(target)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(builtin, "build_tiny", fake_build)
    first = builtin.resolve("builtin:tiny")
    assert builtin.resolve("tiny") == first == tmp_path / f"builtin-tiny-{builtin.TINY_VERSION}"
    assert calls == [first]
    assert (tmp_path / f"builtin-tiny-{builtin.TINY_VERSION}.lock").exists()


def test_build_lock_makes_concurrent_callers_wait(tmp_path):
    target = tmp_path / "model"
    calls, done = [], threading.Event()

    def waiter():
        builtin._ensure_built(target, calls.append)
        done.set()

    with build_lock(target):  # another "process" is building
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not done.wait(0.3)  # blocked on the lock
        target.mkdir()
        (target / "config.json").write_text("{}")
    thread.join(10)
    assert done.is_set() and calls == []  # saw the finished build and did not rebuild


def test_resolve_micro_and_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path))
    path = builtin.resolve("builtin:micro")
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    with pytest.raises(ValueError, match="unknown builtin"):
        builtin.resolve("builtin:huge")


# ---------------------------------------------------------------- support.jsonl

def test_support_dataset():
    records = [json.loads(line) for line in SUPPORT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(records) >= 200
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert len({r["prompt"] for r in records}) == len(records)
    splits = Counter(r["split"] for r in records)
    assert set(splits) == {"train", "test"}
    assert 0.15 <= splits["test"] / len(records) <= 0.3
    for r in records:
        assert r["id"].startswith("support-")
        assert r["prompt"].startswith("Customer: ") and r["prompt"].endswith("\nAgent:")
        assert r["reference"].startswith(" ") and r["reference"].strip()
        assert 10 <= len(r["reference"].split()) <= 35, r["id"]
        assert r["topic"]
    assert len({r["topic"] for r in records}) >= 8
    assert sum(any(c.isdigit() for c in r["prompt"]) for r in records) >= 5
    assert sum("n't" in r["prompt"] for r in records) >= 5
