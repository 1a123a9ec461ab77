"""Truncation: answers that hit max_new_tokens without stopping are counted per section, and a cut
never splits a multi-byte character."""

from __future__ import annotations

import pytest

from audit.config import GenerationSettings
from audit.data import Record
from audit.evaluators.base import Context, hit_cap, make_context
from audit.evaluators.bias import BiasEvaluator
from audit.evaluators.quality import QualityEvaluator
from audit.models.local import clean_cut
from tests.test_bias import _bias_data


class FixedLM:
    """Answers of a fixed number of words; ``encode`` splits on spaces (one token per word)."""

    fingerprint = "fixed-v1"

    def __init__(self, words: int):
        self.words = words

    def encode(self, text):
        return text.split()

    def generate(self, prompts, settings, *, seed=0, progress=False, on_batch=None, skip=(), desc="generate"):
        out = [[" ".join(["word"] * min(self.words, settings.max_new_tokens))] * settings.num_samples for _ in prompts]
        if on_batch:
            on_batch([(i, k, t) for i, row in enumerate(out) for k, t in enumerate(row)])
        return out


def test_a_section_whose_answers_hit_the_cap_reports_it_and_warns(tmp_path):
    opts = BiasEvaluator.Options(**{**_bias_data(tmp_path), "generation": {"max_new_tokens": 5}, "axes": ["age"]})
    capped = BiasEvaluator(opts).evaluate(Context(model=FixedLM(50), samples=[], settings=GenerationSettings()))
    assert capped.metrics["truncation_rate"] == 1.0
    assert capped.details["truncation"] == {"answers": 18, "truncated": 18, "rate": 1.0,
                                            "advice": BiasEvaluator.truncation_advice}
    assert any("18 of 18 answers (100%) hit max_new_tokens" in w for w in capped.details["warnings"])
    assert capped.metric_info["truncation_rate"].higher_is_better is False
    assert capped.sample_values["truncation_rate"] == [1.0] * 18
    short = BiasEvaluator(opts).evaluate(Context(model=FixedLM(2), samples=[], settings=GenerationSettings()))
    assert short.metrics["truncation_rate"] == 0.0
    assert not any("max_new_tokens" in w for w in short.details.get("warnings", []))


def test_the_main_pass_truncation_is_reported_by_quality(micro_lm):
    # The random-init micro model never emits its end token: every 6-token answer is cut off.
    ctx = make_context(micro_lm, [Record("a", "Hello there", reference="Hi."), Record("b", "How are you", reference="Fine.")],
                       GenerationSettings(max_new_tokens=6))
    res = QualityEvaluator(QualityEvaluator.Options(metrics=["chrf"])).evaluate(ctx)
    assert res.metrics["truncation_rate"] == 1.0 and res.details["truncation"]["answers"] == 2
    assert hit_cap(micro_lm, ["Hi."], 6) == [False]


def test_cut_on_a_token_boundary_that_decodes_cleanly(micro_lm):
    tok = micro_lm.tokenizer
    ids = tok("caf\u00e9 \u00e9t\u00e9 \U0001F600 ok", add_special_tokens=False)["input_ids"]
    split = [n for n in range(1, len(ids) + 1) if "\ufffd" in tok.decode(ids[:n])]
    assert split, "the tokenizer should split a multi-byte character over tokens"
    for n in range(1, len(ids) + 1):
        text = clean_cut(tok, ids[:n])
        assert "\ufffd" not in text and tok.decode(ids[:n]).startswith(text)
    # A U+FFFD earlier in the answer is the model's and stays.
    real = tok("bad \ufffd ok", add_special_tokens=False)["input_ids"]
    assert clean_cut(tok, real) == "bad \ufffd ok"
    # Generation cut at max_new_tokens goes through it.
    out = micro_lm.generate(["caf\u00e9"], GenerationSettings(max_new_tokens=3))
    assert "\ufffd" not in out[0][0] or pytest.skip("the model wrote U+FFFD itself")


def test_a_model_that_never_stops_gets_one_console_line_not_one_per_section(micro_lm, caplog, tmp_path):
    # The random-init micro model never emits its end token: every section's answers hit the cap.
    import logging

    from audit.runner import run_sections

    ctx = make_context(micro_lm, [Record("a", "Hello there", reference="Hi."), Record("b", "How are you", reference="Fine.")],
                       GenerationSettings(max_new_tokens=6))
    bias = BiasEvaluator.Options(**{**_bias_data(tmp_path), "generation": {"max_new_tokens": 5}, "axes": ["age"]})
    with caplog.at_level(logging.WARNING):
        run_sections(ctx, {"quality": QualityEvaluator.Options(metrics=["chrf"]), "bias": bias})
    lines = [r.getMessage() for r in caplog.records if "max_new_tokens" in r.getMessage()]
    bias_cut = ctx.sections["bias"].details["truncation"]["truncated"]
    assert bias_cut > 9   # more than half: both sections are over the warning line
    # Quality's fix is a larger cap; bias's is not (its continuations loop): the line says which is which.
    assert lines == [f"answers hit max_new_tokens without stopping and are scored cut off in quality 2/2, bias {bias_cut}/18: "
                     "raise quality's max_new_tokens; the report says why a larger cap does not help bias"]
    # Each section's own warning, with its own advice, stays in its details (the report shows it).
    assert any("2 of 2 answers (100%)" in w and w.endswith("raise the section's max_new_tokens")
               for w in ctx.sections["quality"].details["warnings"])
    assert any(f"{bias_cut} of 18 answers" in w and "repetition loops" in w for w in ctx.sections["bias"].details["warnings"])


def test_a_suite_may_gate_on_a_sections_truncation_rate(micro_lm, tmp_path):
    import json

    from audit.config import ConfigError
    from audit.runner import run_suite
    from audit.suite import load_suite
    from tests.conftest import write_suite

    rows = [{"id": f"r{i}", "prompt": f"Question {i}?", "reference": "Fine."} for i in range(4)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    head = "name: t\nmodel: builtin:micro\ndata: d.jsonl\ngeneration: {max_new_tokens: 6}\nsections:\n  quality: {metrics: [chrf]}\n  diversity: {}\n"
    suite = write_suite(tmp_path, head + "gates:\n  - quality.truncation_rate <= 0.5\n")
    result = run_suite(suite, model=micro_lm, out_dir=None, progress=False, use_cache=False)
    gate = result.gates[0]
    assert result.metrics["quality.truncation_rate"] == 1.0 and gate.passed is False   # micro never stops
    # A section that generates nothing of its own has no truncation rate to gate on.
    with pytest.raises(ConfigError, match="unknown metric 'diversity.truncation_rate'"):
        load_suite(write_suite(tmp_path, head + "gates:\n  - diversity.truncation_rate <= 0.5\n", name="bad.yaml"))
