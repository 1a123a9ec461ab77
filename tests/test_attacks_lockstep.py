"""Attacks in lockstep: the same records as one example at a time, in far fewer model passes."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from audit.attacks.lockstep import in_lockstep, request, run_lockstep
from audit.config import GenerationSettings

PROMPTS = ["The application crashes whenever I open settings", "My password reset email never arrived",
           "Please cancel the subscription renewal", "I cannot find invoice 1234 anywhere"]
SETTINGS = GenerationSettings(max_new_tokens=10, batch_size=64)
RECIPES = ["deepwordbug", "bad_characters"]


def _targets(wrapper):
    from audit.attacks import Target

    return [Target(str(i), p, c) for i, (p, c) in enumerate(zip(PROMPTS, wrapper(PROMPTS)))]


def _make_attack(wrapper):
    from audit.attacks import build_attack, make_goal

    return lambda name: build_attack(name, make_goal("output_change", wrapper, query_budget=25), max_words=2)


def test_lockstep_gives_the_records_of_one_example_at_a_time_in_fewer_passes(micro_lm):
    from audit.attacks import GenerationModelWrapper, attack_lockstep, attack_targets

    seq = GenerationModelWrapper(micro_lm, SETTINGS)
    targets = _targets(seq)
    expected = {r: attack_targets(_make_attack(seq)(r), targets, recipe=r, seed=5) for r in RECIPES}

    lock = GenerationModelWrapper(micro_lm, SETTINGS)
    state = random.getstate(), np.random.get_state()[1].copy()
    got = attack_lockstep(_make_attack(lock), _targets(lock), RECIPES, seed=5)
    # DeepWordBug draws random letters from the global RNGs: identical records mean every attack
    # kept its own random stream while the others ran between its steps.
    assert got == expected
    assert sum(r["success"] for rs in got.values() for r in rs) > 0
    assert lock.stats["queries"] == seq.stats["queries"] and lock.stats["generated"] == seq.stats["generated"]
    # The steps of the 8 attacks shared model passes: fewer passes than TextAttack calls.
    assert lock.stats["batches"] < lock.stats["calls"] / 3
    assert seq.stats["batches"] == seq.stats["calls"]
    # The caller's random state is given back.
    assert random.getstate() == state[0] and (np.random.get_state()[1] == state[1]).all()


def test_requests_of_all_jobs_are_answered_by_one_call_per_round():
    calls = []

    def answer(prompts):
        calls.append(list(prompts))
        return [p.upper() for p in prompts]

    def job(name, steps):
        def run():
            assert in_lockstep()
            return [request(answer, [f"{name}{i}"] * (i + 1))[0] for i in range(steps)]
        return run

    assert run_lockstep([job("a", 2), job("b", 3), job("c", 1)]) == [["A0", "A1"], ["B0", "B1", "B2"], ["C0"]]
    # Round by round, in job order; a finished job no longer asks.
    assert calls == [["a0", "b0", "c0"], ["a1", "a1", "b1", "b1"], ["b2", "b2", "b2"]]
    assert not in_lockstep() and request(answer, ["x"]) == ["X"]


def test_each_job_keeps_its_own_random_stream():
    def job(seed):
        def run():
            random.seed(seed)
            np.random.seed(seed)
            draws = []
            for _ in range(3):
                draws.append((random.random(), float(np.random.rand())))
                request(lambda ps: ps, ["q"])
            return draws
        return run

    alone = [run_lockstep([job(s)])[0] for s in (1, 2, 3)]
    assert run_lockstep([job(s) for s in (1, 2, 3)]) == alone


def test_a_failing_job_is_raised_and_the_others_are_unwound():
    finished = []

    def good():
        request(lambda ps: ps, ["a"])
        request(lambda ps: ps, ["b"])
        finished.append("good")
        return 1

    def bad():
        request(lambda ps: ps, ["a"])
        raise ValueError("boom")

    before = threading.active_count()
    with pytest.raises(ValueError, match="boom"):
        run_lockstep([good, bad, good])
    assert finished == []                          # parked jobs were cancelled, not run to the end
    assert threading.active_count() == before      # and their threads are gone
    assert run_lockstep([lambda: 7]) == [7]


def test_a_failing_answer_is_raised_and_every_job_is_unwound():
    def answer(prompts):
        raise RuntimeError("answer failed")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="answer failed"):
        run_lockstep([lambda: request(answer, ["a"]), lambda: request(answer, ["b"])])
    assert threading.active_count() == before


def test_lockstep_cannot_be_nested():
    with pytest.raises(RuntimeError, match="nested"):
        run_lockstep([lambda: run_lockstep([lambda: 1])])
