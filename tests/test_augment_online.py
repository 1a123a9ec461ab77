"""Online augmentation (``augment: {online: true}``): a fresh perturbation of every augmented slot each
epoch, seeded by (seed, epoch, slot), so reruns, resumed runs and data-parallel processes agree."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from audit.finetune.augment import OnlineAugmented, augment_pairs
from audit.finetune.config import AugmentOptions, load_finetune_config
from audit.finetune.data import TextPair, collate, tokenize_pairs
from audit.finetune.run import finetune, prepare_data

WORDS = ["password", "order", "refund", "invoice", "account", "delivery"]
OPTIONS = dict(transformations=["char_swap", "char_delete", "qwerty"], per_prompt=2, pct_words_to_swap=0.2)


def _rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "prompt": f"Customer: I cannot find the {WORDS[i % 6]} confirmation email for purchase {i}\nAgent:",
             "reference": f" Your {WORDS[i % 6]} is on its way" + " today" * (i % 3) + ".",
             "split": "test" if i % 5 == 0 else "train"} for i in range(n)]


@pytest.fixture
def train_file(tmp_path) -> Path:
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in _rows(15)))
    return p


def _pairs(n: int = 4) -> list[TextPair]:
    return [TextPair(r["prompt"], r["reference"], meta={"id": r["id"]}) for r in _rows(n)]


def _online(tok, pairs, *, seed: int = 0, chat=None, **options) -> OnlineAugmented:
    tokenize = lambda ps: tokenize_pairs(ps, tok, max_length=128, chat=chat)  # noqa: E731
    return OnlineAugmented(tokenize(pairs), pairs, AugmentOptions(**{**OPTIONS, **options, "online": True}), seed=seed,
                           tokenize=tokenize)


def test_a_slot_gets_a_fresh_perturbation_every_epoch(micro_lm):
    pairs = _pairs()
    online = _online(micro_lm.tokenizer, pairs)
    assert len(online.slots) == 8 and len(online) == 12
    before = random.getstate(), np.random.get_state()[1].copy()
    for slot in range(len(online.slots)):
        clean = online.slots[slot]
        drawn = [online.perturbed(slot, epoch) for epoch in range(4)]
        assert all(p.prompt != clean.prompt for p in drawn)              # every draw is perturbed
        assert len({p.prompt for p in drawn}) >= 3                       # and a new perturbation each epoch
        assert all(p.target == clean.target and p.source == "augment" and p.meta["original_prompt"] == clean.prompt
                   and p.meta["id"] == clean.meta["id"] for p in drawn)
    # The two slots of one prompt are two different perturbations, not one drawn twice.
    assert online.perturbed(0, 0).prompt != online.perturbed(1, 0).prompt
    # The caller's RNGs are untouched (dropout, data order and PGD init keep their stream).
    assert random.getstate() == before[0] and np.array_equal(np.random.get_state()[1], before[1])


def test_the_stream_is_a_function_of_seed_epoch_and_slot(micro_lm):
    tok, pairs = micro_lm.tokenizer, _pairs()
    a, b, other = _online(tok, pairs), _online(tok, pairs), _online(tok, pairs, seed=1)
    grid = [(epoch, slot) for epoch in range(3) for slot in range(8)]
    stream = [a.perturbed(s, e).prompt for e, s in grid]
    # Another instance (a rerun, a resumed run, another data-parallel process), drawing in another order
    # and after the global RNGs moved on, draws the same stream.
    random.seed(123)
    np.random.seed(456)
    assert [b.perturbed(s, e).prompt for e, s in reversed(grid)] == stream[::-1]
    assert [other.perturbed(s, e).prompt for e, s in grid] != stream
    # draw(): fixed examples as they are, slots as perturbed() says, each rendered as a static copy.
    idx = [9, 0, 4, 11]
    got = a.draw(idx, epoch=2)
    assert got[1] == a.fixed[0]
    want = tokenize_pairs([a.perturbed(i - 4, 2) for i in (9, 4, 11)], tok, max_length=128)
    assert [got[0], got[2], got[3]] == want


def test_wordnet_synonyms_do_not_depend_on_the_hash_seed():
    # TextAttack returns list(set(...)): its order, hence the seeded pick, changed with PYTHONHASHSEED,
    # so data-parallel processes (and reruns) augmented differently.
    from audit.finetune.augment import _transformation

    words = _transformation("wordnet")._get_replacement_words("delivery")
    assert len(words) > 3 and words == sorted(words)


def test_perturbed_copies_are_rendered_like_static_ones_and_keep_pair_target(micro_lm):
    from audit.models.chat import ChatFormat

    tok = micro_lm.tokenizer
    chat = ChatFormat("{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}"
                      "{% if add_generation_prompt %}<assistant>{% endif %}", "test")
    pairs = [TextPair(p.prompt, p.target, meta={**p.meta, "pair_target": " Let me check that for you."}) for p in _pairs(2)]
    online = _online(tok, pairs, chat=chat, per_prompt=1)
    for epoch in range(2):
        drawn = online.draw([2, 3], epoch)
        static = tokenize_pairs([online.perturbed(0, epoch), online.perturbed(1, epoch)], tok, max_length=128, chat=chat)
        assert drawn == static
        for ex, slot in zip(drawn, online.slots):
            assert tok.decode(ex.input_ids).startswith("<user>")                       # the chat template
            (pert_ids, _), (orig_ids, _) = ex.pair
            assert tok.decode(orig_ids).startswith("<user>" + slot.prompt)              # paired with the clean prompt
            assert tok.decode(orig_ids).endswith("Let me check that for you.</s>")      # on the pair_target
            assert tok.decode(pert_ids) != tok.decode(orig_ids)


def test_a_slot_that_cannot_be_perturbed_trains_on_the_clean_prompt(micro_lm):
    # Stop words only: TextAttack's StopwordModification leaves nothing to edit.
    pairs = [TextPair("and the of", " ok")]
    online = _online(micro_lm.tokenizer, pairs, per_prompt=1)
    assert online.perturbed(0, 0).prompt == "and the of"
    ex = online.draw([1], epoch=0)[0]
    assert ex.pair is None and ex == online.fixed[0]
    assert collate([ex], 0, pairs=True)["pair_input_ids"].shape[0] == 0


def test_prepare_data_counts_online_slots_and_keeps_validation_clean(micro_lm, train_file, caplog):
    tok = micro_lm.tokenizer
    base = {"model": "x", "data": str(train_file), "train_split": "train", "val_split": "test"}
    clean_train, clean_val, clean_counts = prepare_data(load_finetune_config(base), tok)
    with caplog.at_level("INFO", logger="audit"):
        train, val, counts = prepare_data(load_finetune_config({**base, "augment": {**OPTIONS, "online": True}}), tok)
    assert isinstance(train, OnlineAugmented)
    assert counts["augment"] == 24 and counts["augment_online"] == 1 and counts["train_examples"] == 12 + 24
    assert "online, 24 slots" in caplog.text
    assert val == clean_val and train.fixed == clean_train
    assert clean_counts.get("augment_online") is None


def test_offline_augmentation_is_unchanged(micro_lm, train_file):
    tok = micro_lm.tokenizer
    cfg = load_finetune_config({"model": "x", "data": str(train_file), "train_split": "train", "val_split": "test",
                                "augment": OPTIONS, "seed": 5})
    train, _, counts = prepare_data(cfg, tok)
    assert isinstance(train, list) and "augment_online" not in counts
    # What prepare_data did before online augmentation existed: one fixed set, appended once.
    pairs = [TextPair(r["prompt"], r["reference"]) for r in _rows(15) if r["split"] == "train"]
    fixed = augment_pairs(pairs, AugmentOptions(**OPTIONS), seed=5)
    assert counts["augment"] == len(fixed) > 0
    assert train == tokenize_pairs(pairs + fixed, tok, max_length=cfg.max_length, add_eos=cfg.add_eos)


@pytest.fixture(scope="module")
def online_runs(micro_path, tmp_path_factory):
    """An uninterrupted online-augmented run, and one stopped at step 8 and resumed, with the draws each saw."""
    tmp = tmp_path_factory.mktemp("online")
    data = tmp / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows(15)))
    # 12 clean + 12 slots = 6 micro-batches an epoch: 10 steps cover epoch 0 and most of epoch 1, and the
    # run resumes in the middle of epoch 1.
    cfg = {"model": str(micro_path), "data": str(data), "train_split": "train", "val_split": "test", "batch_size": 4,
           "lr": 2e-3, "max_steps": 10, "eval_every": 4, "save_every": 4, "log_every": 1, "progress": False, "seed": 3,
           "warmup_steps": 2, "load_best": False, "augment": {**OPTIONS, "per_prompt": 1, "online": True},
           "losses": {"ce": 1.0, "consistency": 1.0}}
    seen: list[tuple[int, int, str]] = []
    original = OnlineAugmented.perturbed

    def recording(self, slot, epoch):
        pair = original(self, slot, epoch)
        seen.append((epoch, slot, pair.prompt))
        return pair

    class Interrupt(Exception):
        pass

    def stop_at_8(trainer, rec):
        if trainer.step == 8:
            raise Interrupt

    mp = pytest.MonkeyPatch()
    mp.setattr(OnlineAugmented, "perturbed", recording)
    try:
        full = finetune({**cfg, "out_dir": str(tmp / "full")})
        full_seen = list(seen)
        seen.clear()
        with pytest.raises(Interrupt):
            finetune({**cfg, "out_dir": str(tmp / "cut")}, callbacks=[stop_at_8])
        cut_seen = list(seen)
        seen.clear()
        resumed = finetune({**cfg, "out_dir": str(tmp / "cut"), "resume": "auto"})
        resumed_seen = list(seen)
    finally:
        mp.undo()
    return {"full": full, "resumed": resumed, "full_seen": full_seen, "cut_seen": cut_seen, "resumed_seen": resumed_seen,
            "out": tmp}


def test_a_resumed_run_trains_on_the_same_perturbations(online_runs):
    r = online_runs
    full_seen = r["full_seen"]
    assert {e for e, _, _ in full_seen} == {0, 1}
    by_slot: dict[int, dict[int, str]] = {}
    for epoch, slot, prompt in full_seen:
        by_slot.setdefault(slot, {})[epoch] = prompt
    twice = [d for d in by_slot.values() if len(d) == 2]
    assert twice and all(d[0] != d[1] for d in twice)            # a slot drawn again is perturbed anew
    # The resumed run (from step 8, in epoch 1) draws exactly what the uninterrupted run drew after step 8.
    assert r["resumed_seen"] and {e for e, _, _ in r["resumed_seen"]} == {1}
    assert r["cut_seen"] + r["resumed_seen"] == full_seen
    a, b = (load_file(str(Path(x.model_dir) / "model.safetensors")) for x in (r["full"], r["resumed"]))
    assert all(torch.equal(a[k], b[k]) for k in a)
    la, lb = ([json.loads(x) for x in res.metrics_path.read_text().splitlines()] for res in (r["full"], r["resumed"]))
    strip = lambda rows: [{k: v for k, v in x.items() if k != "tokens_per_s"} for x in rows]  # noqa: E731
    assert strip(la) == strip(lb)


def test_online_runs_feed_the_consistency_loss_and_record_their_counts(online_runs):
    r = online_runs
    steps = [x for x in r["full"].history if "loss.consistency" in x]
    assert len(steps) == 10 and any(x["loss.consistency"] > 0 for x in steps)   # pairs arrived (0 without any)
    counts = json.loads((r["out"] / "full" / "data.json").read_text())
    assert counts["augment"] == 12 and counts["augment_online"] == 1 and counts["train_examples"] == 24
