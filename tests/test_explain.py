"""audit.explain on the micro model: completeness, parity with Captum run step by step, masks,
readable tokens, batching invariance, faithfulness arithmetic, serialisation and errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from audit.explain import METHODS, ExplainError, Explanation, explain, readable_tokens
from audit.registry import UnknownNameError

PROMPT = "The function returns a list of"
TARGET = " the values in the dictionary"


def _ids(lm, prompt=PROMPT, target=TARGET):
    return lm.encode(prompt), lm.encode(target)


def _step_fn(model, target_id):
    """Captum forward for one step: log p(target_id) at the last position of a prefix."""
    def f(ids):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1].float()
        return torch.log_softmax(logits, -1)[:, target_id]
    return f


@pytest.mark.parametrize("prompt,target", [(PROMPT, TARGET), ("Hello", " world, and"), ("x = [1, 2]\n", "for i in x:")])
def test_integrated_gradients_is_complete_within_one_percent(micro_lm, prompt, target):
    # completeness_tolerance=None: the default 20 Gauss-Legendre points must suffice by themselves.
    e = explain(micro_lm, prompt, target=target, completeness_tolerance=None, faithfulness=False)
    assert e.settings["n_steps"] == 20 and e.settings["integration"] == "gausslegendre"
    for t, row in enumerate(e.attributions):
        total = math.fsum(v for v in row if v is not None)
        diff = e.target_logprobs[t] - e.baseline_logprobs[t]
        assert abs(total - diff) <= 0.01 * abs(diff) + 1e-6
        assert e.convergence_delta[t] == pytest.approx(total - diff, abs=1e-9)
    assert e.completeness_error() < 0.01


def test_integrated_gradients_matches_captum_layer_ig_step_by_step(micro_lm):
    """Our one-forward-per-batch IG equals Captum's LayerIntegratedGradients run per step on its prefix."""
    from captum.attr import LayerIntegratedGradients

    e = explain(micro_lm, PROMPT, target=TARGET, baseline="pad", faithfulness=False, completeness_tolerance=None, n_steps=50)
    p_ids, t_ids = _ids(micro_lm)
    ids = torch.tensor(p_ids + t_ids)
    pad = micro_lm.tokenizer.pad_token_id
    model = micro_lm.model
    for t in range(len(t_ids)):
        prefix = ids[:len(p_ids) + t][None]
        lig = LayerIntegratedGradients(_step_fn(model, t_ids[t]), model.get_input_embeddings())
        ref = lig.attribute(prefix, baselines=torch.full_like(prefix, pad), n_steps=50, method="gausslegendre").sum(-1)[0]
        ours = torch.tensor(e.attributions[t][:len(p_ids) + t])
        assert torch.allclose(ours, ref.float(), atol=1e-5, rtol=1e-4), (t, (ours - ref).abs().max())


def test_input_x_gradient_matches_captum(micro_lm):
    from captum.attr import LayerGradientXActivation

    e = explain(micro_lm, PROMPT, target=TARGET, method="input_x_gradient", faithfulness=False)
    p_ids, t_ids = _ids(micro_lm)
    ids = torch.tensor(p_ids + t_ids)
    for t in (0, len(t_ids) - 1):
        prefix = ids[:len(p_ids) + t][None]
        gxa = LayerGradientXActivation(_step_fn(micro_lm.model, t_ids[t]), micro_lm.model.get_input_embeddings())
        ref = gxa.attribute(prefix).sum(-1)[0]
        assert torch.allclose(torch.tensor(e.attributions[t][:len(p_ids) + t]), ref, atol=1e-6)


def test_feature_ablation_is_the_drop_when_one_token_is_replaced(micro_lm):
    e = explain(micro_lm, PROMPT, target=TARGET, method="feature_ablation", faithfulness=False)
    p_ids, t_ids = _ids(micro_lm)
    ids = torch.tensor(p_ids + t_ids)
    pad = micro_lm.tokenizer.pad_token_id
    with torch.no_grad():
        for t, j in [(0, 0), (0, len(p_ids) - 1), (3, 2), (3, len(p_ids) + 1)]:
            n = len(p_ids) + t
            f = _step_fn(micro_lm.model, t_ids[t])
            ablated = ids[:n].clone()
            ablated[j] = pad
            expected = float(f(ids[:n][None])[0] - f(ablated[None])[0])
            assert e.attributions[t][j] == pytest.approx(expected, abs=1e-5)


def test_shapley_values_are_efficient(micro_lm):
    """Permutation-sampled Shapley values of each step sum exactly to f(x) - f(all sources absent)."""
    sv = explain(micro_lm, PROMPT, target=TARGET, method="shapley_sampling", n_samples=4, faithfulness=False)
    ig = explain(micro_lm, PROMPT, target=TARGET, faithfulness=False)
    for t, row in enumerate(sv.attributions):
        total = math.fsum(v for v in row if v is not None)
        assert total == pytest.approx(ig.target_logprobs[t] - ig.baseline_logprobs[t], abs=1e-4)


def test_attention_rows_are_distributions_and_saliency_is_unsigned(micro_lm):
    att = explain(micro_lm, PROMPT, target=TARGET, method="attention", faithfulness=False)
    for row in att.attributions:
        assert math.fsum(v for v in row if v is not None) == pytest.approx(1.0, abs=1e-5)
    sal = explain(micro_lm, PROMPT, target=TARGET, method="saliency", faithfulness=False)
    assert all(v >= 0 for row in sal.attributions for v in row if v is not None)


def test_every_registered_method_returns_a_masked_matrix(micro_lm):
    impl = micro_lm.model.config._attn_implementation
    for name in METHODS.names():
        e = explain(micro_lm, "Hello there", target=" my friend", method=name, n_samples=2, n_random=2)
        T, L = len(e.target_tokens), len(e.source_tokens)
        assert len(e.attributions) == T and all(len(r) == L for r in e.attributions)
        for t, row in enumerate(e.attributions):
            for j, v in enumerate(row):
                assert (v is None) == (j >= e.n_prompt + t), (name, t, j)
                assert v is None or math.isfinite(v)
        assert len(e.target_logprobs) == T and all(lp <= 0 for lp in e.target_logprobs)
        assert e.faithfulness is not None and len(e.faithfulness.steps) == T
    assert micro_lm.model.config._attn_implementation == impl  # attention switched back


def test_scores_do_not_depend_on_batching(micro_lm):
    a = explain(micro_lm, PROMPT, target=TARGET, faithfulness=False, completeness_tolerance=None)
    b = explain(micro_lm, PROMPT, target=TARGET, faithfulness=False, completeness_tolerance=None, internal_batch_size=7)
    for ra, rb in zip(a.attributions, b.attributions):
        for x, y in zip(ra, rb):
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-6)
    fa1 = explain(micro_lm, PROMPT, target=TARGET, method="feature_ablation", faithfulness=False)
    fa2 = explain(micro_lm, PROMPT, target=TARGET, method="feature_ablation", faithfulness=False, internal_batch_size=3)
    for r1, r2 in zip(fa1.attributions, fa2.attributions):
        for x, y in zip(r1, r2):
            assert (x is None and y is None) or x == pytest.approx(y, abs=1e-6)


def test_faithfulness_drops_are_real_deletions(micro_lm):
    e = explain(micro_lm, PROMPT, target=TARGET, top_k=2, n_random=5, seed=3)
    f = e.faithfulness
    p_ids, t_ids = _ids(micro_lm)
    ids = torch.tensor(p_ids + t_ids)
    t = f.steps[-1]
    n = len(p_ids) + t
    top = sorted(range(len(p_ids)), key=lambda j: -e.attributions[t][j])[:2]   # prompt tokens only
    ablated = ids[:n].clone()
    ablated[top] = micro_lm.tokenizer.pad_token_id
    step = _step_fn(micro_lm.model, t_ids[t])
    with torch.no_grad():
        expected = float(step(ids[:n][None])[0] - step(ablated[None])[0])
    assert f.drop_top[-1] == pytest.approx(expected, abs=1e-5)
    again = explain(micro_lm, PROMPT, target=TARGET, top_k=2, n_random=5, seed=3).faithfulness
    assert again.drop_random == f.drop_random  # seeded
    assert f.steps == list(range(len(t_ids)))


def test_tokens_are_readable_text(micro_lm):
    prompt, target = "Café naïve — 😀 résumé", " ok\nthen"
    e = explain(micro_lm, prompt, target=target, faithfulness=False, method="saliency")
    assert "".join(e.source_tokens) == prompt + target
    assert "".join(e.prompt_tokens) == prompt and "".join(e.target_tokens) == target
    markers = set("ĠĊĉ") | {"\ufffd"}
    assert not any(c in markers for tok in e.source_tokens for c in tok)
    assert readable_tokens(micro_lm.tokenizer, micro_lm.encode("a list")) == ["a", " ", "l", "is", "t"]
    eos = micro_lm.tokenizer.eos_token_id
    assert readable_tokens(micro_lm.tokenizer, [eos]) == ["<|endoftext|>"]


def test_generates_the_same_text_as_the_audit_when_no_target(micro_lm):
    from audit.config import GenerationSettings

    e = explain(micro_lm, "Hello", max_new_tokens=5, faithfulness=False)
    assert e.target == micro_lm.generate(["Hello"], GenerationSettings(max_new_tokens=5))[0][0]
    assert 1 <= len(e.target_tokens)


def test_round_trips_through_json(micro_lm):
    e = explain(micro_lm, PROMPT, target=TARGET)
    d = json.loads(e.to_json())
    assert d["faithfulness"]["score"] == pytest.approx(e.faithfulness.score)
    back = Explanation.from_dict(d)
    assert back == e
    assert back.top_sources(0, 2) == e.top_sources(0, 2)


def test_leaves_the_model_as_it_found_it(micro_lm):
    before = {k: v.clone() for k, v in micro_lm.model.state_dict().items()}
    threads = torch.get_num_threads()
    micro_lm.model.train()
    try:
        explain(micro_lm, PROMPT, target=TARGET, method="integrated_gradients")
        assert micro_lm.model.training
    finally:
        micro_lm.model.eval()
    assert all(p.requires_grad for p in micro_lm.model.parameters())
    assert torch.get_num_threads() == threads
    assert all(torch.equal(before[k], v) for k, v in micro_lm.model.state_dict().items())


def test_clear_errors(micro_lm):
    with pytest.raises(UnknownNameError, match="integrated_gradients"):
        explain(micro_lm, "x", target=" y", method="integrated_gradient")
    with pytest.raises(ExplainError, match="target is empty"):
        explain(micro_lm, "x", target="")
    with pytest.raises(ExplainError, match="unknown option 'n_step'"):
        explain(micro_lm, "x", target=" y", n_step=3)
    with pytest.raises(ExplainError, match="integration must be one of"):
        explain(micro_lm, "x", target=" y", integration="simpson")


def test_baseline_token_id_outside_the_vocabulary_is_a_clear_error(micro_lm):
    n_vocab = micro_lm.model.get_input_embeddings().num_embeddings
    with pytest.raises(ExplainError, match=f"baseline token id {n_vocab} is outside"):
        explain(micro_lm, "x", target=" y", baseline=str(n_vocab))


def test_user_spans_keep_template_tokens_fixed_and_unscored(micro_lm):
    """A rendered chat prompt: only the user's words (and the generated tokens) are sources."""
    head, user, tail = "<|system|>Be brief.\n<|user|>", "The function returns a list", "\n<|assistant|>"
    prompt = head + user + tail
    spans = [(len(head), len(head) + len(user))]
    e = explain(micro_lm, prompt, target=TARGET, user_spans=spans, top_k=2)
    toks = e.prompt_tokens
    assert e.excluded and all(j < e.n_prompt for j in e.excluded)
    assert "".join(toks[j] for j in range(e.n_prompt) if j not in e.excluded).strip() == user
    for row in e.attributions:
        assert all(row[j] is None for j in e.excluded)
    for t in range(len(e.target_tokens)):
        assert all(j not in e.excluded for j, _, _ in e.top_sources(t, k=5))
    # Template tokens stay at their embedding on the path: completeness holds against the same f(baseline).
    assert e.complete is True and e.completeness_error() < 0.01
    assert len(e.baseline_logprobs) == len(e.target_tokens)
    # Feature ablation only ablates the sources; its score on a user token equals a manual replacement.
    fa = explain(micro_lm, prompt, target=TARGET, user_spans=spans, method="feature_ablation", faithfulness=False)
    ids = torch.tensor(e.token_ids)
    j = next(j for j in range(e.n_prompt) if j not in e.excluded)
    ablated = ids.clone()
    ablated[j] = micro_lm.tokenizer.unk_token_id
    f = _step_fn(micro_lm.model, e.token_ids[e.n_prompt])
    with torch.no_grad():
        expected = float(f(ids[:e.n_prompt][None])[0] - f(ablated[:e.n_prompt][None])[0])
    assert fa.attributions[0][j] == pytest.approx(expected, abs=1e-5)
    assert all(fa.attributions[0][k] is None for k in e.excluded)
    # The deletion check never deletes a template token: its top-k drop is the drop of the top user tokens.
    t = e.faithfulness.steps[0]
    top = [j for j, _, _ in e.top_sources(t, k=2)]
    deleted = ids.clone()
    deleted[top] = micro_lm.tokenizer.unk_token_id
    n = e.n_prompt + t
    step = _step_fn(micro_lm.model, e.token_ids[n])
    with torch.no_grad():
        drop = float(step(ids[:n][None])[0] - step(deleted[:n][None])[0])
    assert e.faithfulness.drop_top[0] == pytest.approx(drop, abs=1e-5)
    from audit.explain.html import render_html

    assert render_html([e]).count(' tpl"') >= len(e.excluded)


def test_user_span_outside_the_prompt_is_a_clear_error(micro_lm):
    with pytest.raises(ExplainError, match=r"user span \(0, 99\) is outside the prompt of 5 characters"):
        explain(micro_lm, "Hello", target=" world", user_spans=[(0, 99)])


def test_rows_per_gradient_pass_follow_the_memory_budget(micro_lm):
    small = explain(micro_lm, PROMPT, target=TARGET, faithfulness=False, completeness_tolerance=None, grad_memory_mb=1)
    big = explain(micro_lm, PROMPT, target=TARGET, faithfulness=False, completeness_tolerance=None)
    assert small.settings["grad_rows"] < big.settings["grad_rows"]
    for a, b in zip(small.attributions, big.attributions):
        assert all((x is None and y is None) or x == pytest.approx(y, abs=1e-6) for x, y in zip(a, b))


def test_chat_model_explains_the_rendered_prompt_and_only_the_users_words(micro_lm):
    """A model with a chat template: explain() renders the prompt as generation does, and the
    template's tokens (role tags, system prompt) are excluded without being asked."""
    from audit.models.chat import ChatFormat
    from audit.models.local import LanguageModel

    fmt = ChatFormat(template="{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                              "{% if add_generation_prompt %}<assistant>{% endif %}", source="inline")
    chat_lm = LanguageModel(micro_lm.model, micro_lm.tokenizer, spec="micro+chat", chat=fmt)
    user = "The function returns a list"
    e = explain(chat_lm, user, max_new_tokens=4)
    rendered, spans = chat_lm.chat_prompt(user)
    assert e.prompt == rendered and e.prompt != user and e.user_spans == [list(sp) for sp in spans]
    # The generation explained is the one the audit saw for this user text.
    assert e.target == chat_lm.generate([user])[0][0][:len(e.target)]
    kept = "".join(t for j, t in enumerate(e.prompt_tokens) if j not in e.excluded)
    assert kept.strip() == user and "<assistant>" in "".join(e.prompt_tokens[j] for j in e.excluded)
    assert all(row[j] is None for row in e.attributions for j in e.excluded)
    with pytest.raises(ExplainError, match="already rendered"):
        explain(chat_lm, rendered, user_spans=spans)


def test_auto_method_is_integrated_gradients_on_small_models_and_ablation_on_large(micro_lm):
    from transformers import GPT2Config, GPT2LMHeadModel

    from audit.explain.core import resolve_method
    from audit.models.local import LanguageModel

    e = explain(micro_lm, PROMPT, target=TARGET, method="auto", faithfulness=False)
    assert e.method == "integrated_gradients" and e.complete is True
    big = GPT2LMHeadModel(GPT2Config(vocab_size=2048, n_positions=64, n_embd=512, n_layer=7, n_head=8))
    assert sum(p.numel() for p in big.parameters()) > 20_000_000
    assert resolve_method("auto", LanguageModel(big, micro_lm.tokenizer, spec="big")) == "feature_ablation"
    assert resolve_method("saliency", micro_lm) == "saliency"


def test_prompt_only_sources_keep_generated_tokens_fixed(micro_lm):
    e = explain(micro_lm, PROMPT, target=TARGET, attribute_generated=False)
    fa = explain(micro_lm, PROMPT, target=TARGET, attribute_generated=False, method="feature_ablation", faithfulness=False)
    for ex in (e, fa):
        assert all(v is None for row in ex.attributions for v in row[ex.n_prompt:])
        assert all(v is not None for row in ex.attributions for v in row[:ex.n_prompt])
    # The generated tokens keep their embeddings on the path: completeness against that baseline.
    assert e.complete is True and e.completeness_error() < 0.01
    full = explain(micro_lm, PROMPT, target=TARGET, faithfulness=False)
    assert e.attributions[0] == pytest.approx(full.attributions[0], abs=1e-6)   # step 0 has only the prompt
    assert e.baseline_logprobs[-1] != pytest.approx(full.baseline_logprobs[-1])


def test_bf16_path_runs_on_cpu_and_reports_its_completeness_honestly(micro_path):
    """The GPU dtype, checked where CI can: bf16 weights, float32 interpolation; whatever gap bf16
    rounding leaves is measured and flagged, never hidden."""
    from audit.models.local import LanguageModel

    lm = LanguageModel.load(str(micro_path), dtype="bfloat16")
    e = explain(lm, PROMPT, target=TARGET, max_n_steps=60)
    assert all(v is None or math.isfinite(v) for row in e.attributions for v in row)
    assert e.settings["n_steps"] <= 60
    assert e.complete == (e.completeness_error() <= 0.01)
    assert lm.model.dtype == torch.bfloat16


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"])
def test_quadrature_equals_captums_own(method):
    """explain computes the path-integral points itself (Captum's helper is private): bit-equal to Captum's."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    from audit.explain.gradient import quadrature

    step_sizes, alphas = approximation_parameters(method)
    for n in (2, 3, 16, 50, 301):
        assert quadrature(method, n) == (list(alphas(n)), list(step_sizes(n)))
