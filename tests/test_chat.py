"""Chat templates inside the model adapter: rendering like transformers, user spans, messages records,
stop tokens, template-aware log-likelihoods, cache/baseline identity, bad input, every section."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from audit.models.chat import ChatTemplateError
from audit.cli import main
from audit.config import GenerationSettings, ModelSpec
from audit.data import DataError, load_records
from audit.generation import cached_generate, generation_cache
from audit.models.local import LanguageModel, clean_cut

from .conftest import write_suite

PROMPTS = ["Where is my order?", "Can I change the payment method on file?", "hi", "My tablet broke. Is that covered?",
           "I returned my order last week and haven't seen the money yet."]


def _hf_greedy(lm, input_ids: list[int], n: int) -> list[int]:
    """transformers' own greedy generate on one unpadded row, cut at its first stop token."""
    ids = torch.tensor([input_ids])
    out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                            pad_token_id=lm.tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
    stops = lm.model.generation_config.eos_token_id
    stops = {stops} if isinstance(stops, int) else set(stops)
    return out[:next((i for i, t in enumerate(out) if t in stops), len(out))]


def test_generation_renders_the_template_like_apply_chat_template(chat_lm):
    assert chat_lm.chat is not None and chat_lm.chat.source == "tokenizer"
    tok = chat_lm.tokenizer
    ours = chat_lm.generate(PROMPTS, GenerationSettings(max_new_tokens=10, batch_size=3))
    assert ours == chat_lm.generate(PROMPTS, GenerationSettings(max_new_tokens=10, batch_size=1))
    for p, (text,) in zip(PROMPTS, ours):
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
        assert chat_lm.encode(chat_lm.render(p)) == ids
        # An answer cut at max_new_tokens is decoded on a clean character boundary (clean_cut), HF's plain decode not.
        assert text == clean_cut(tok, _hf_greedy(chat_lm, ids, 10))
    info = chat_lm.info()
    assert info.chat_template == "tokenizer" and info.prompt_format == chat_lm.prompt_format and len(info.prompt_format) == 16


def test_shared_prefix_cache_changes_no_answer(chat_lm, monkeypatch):
    """A batch of chat prompts prefills the template's common start once; answers are the same as
    prefilling every row whole, greedy and sampled, with and without padding in the middle."""
    prompts = PROMPTS + [p + " Please answer quickly, it is urgent." for p in PROMPTS[:3]]
    rows = [chat_lm.encode(chat_lm.render(p)) for p in prompts]
    n, past = chat_lm._shared_prefix(rows)
    system = chat_lm.encode(chat_lm.render("x"))
    assert n >= 4 and rows[0][:n] == system[:n] and past is not None   # the path under test really runs
    greedy, sampled = GenerationSettings(max_new_tokens=10, batch_size=16), GenerationSettings(
        max_new_tokens=10, batch_size=16, do_sample=True, temperature=0.9)
    shared = chat_lm.generate(prompts, greedy), chat_lm.generate(prompts, sampled, seed=4)
    monkeypatch.setattr(chat_lm, "_shared_prefix", lambda rows: (0, None))
    whole = chat_lm.generate(prompts, greedy), chat_lm.generate(prompts, sampled, seed=4)
    assert shared == whole
    assert chat_lm.generate(prompts[:1], greedy) == [shared[0][0]]               # a batch of one shares nothing


def test_generation_stops_on_generation_config_eos_like_transformers(micro_path, tmp_path):
    """The tokenizer's eos AND the generation config's eos ids (int or list) end a generation."""
    d = tmp_path / "m"
    shutil.copytree(micro_path, d)
    lm = LanguageModel.load(str(d))
    prompt = "Customer: where is my order?\nAgent:"
    ids = lm.encode(prompt)
    free = _hf_greedy(lm, ids, 12)
    stop = free[4]  # a token greedy decoding emits: make it an end-of-turn token
    cfg = json.loads((d / "generation_config.json").read_text())
    cfg["eos_token_id"] = [lm.tokenizer.eos_token_id, stop]
    (d / "generation_config.json").write_text(json.dumps(cfg))
    lm2 = LanguageModel.load(str(d))
    assert lm2.stop_token_ids == {lm.tokenizer.eos_token_id, stop}
    (text,), = lm2.generate([prompt], GenerationSettings(max_new_tokens=12))
    want = _hf_greedy(lm2, ids, 12)
    assert want == free[:free.index(stop)]
    assert text == lm.tokenizer.decode(want, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    (full,), = lm.generate([prompt], GenerationSettings(max_new_tokens=12))
    assert full.startswith(text) and len(full) > len(text)


def test_builtin_tokenizer_works_with_plain_transformers_generate(micro_lm):
    """No token_type_ids (GPT-2 adds them to the embeddings): `model.generate(**tok(prompts))` just works."""
    tok, model = micro_lm.tokenizer, micro_lm.model
    prompts = ["Customer: where is my order?\nAgent:", "The value is"]
    enc = tok(prompts, return_tensors="pt", padding=True)
    assert set(enc) == {"input_ids", "attention_mask"}
    out = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    ours = micro_lm.generate(prompts, GenerationSettings(max_new_tokens=6))
    for row, (text,) in zip(out[:, enc["input_ids"].shape[1]:].tolist(), ours):
        eos = tok.eos_token_id
        row = row[:row.index(eos)] if eos in row else row
        assert tok.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False) == text


def test_chat_prompt_spans_locate_the_users_words(chat_lm, micro_lm):
    tok = chat_lm.tokenizer
    text, spans = chat_lm.chat_prompt("Where is my order?")
    assert text == chat_lm.render("Where is my order?")
    assert [text[a:b] for a, b in spans] == ["Where is my order?"]
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    text, spans = chat_lm.chat_prompt("user words", system="Answer briefly.")
    assert text == tok.apply_chat_template([{"role": "system", "content": "Answer briefly."},
                                            {"role": "user", "content": "user words"}], tokenize=False, add_generation_prompt=True)
    assert [text[a:b] for a, b in spans] == ["user words"] and "SmolLM" not in text
    # A user text that also appears in the template is still found in its own turn.
    text, spans = chat_lm.chat_prompt("system")
    assert len(spans) == 1 and text[spans[0][0] - len("user\n"):spans[0][1]] == "user\nsystem"
    # No template: the prompt itself, all of it the user's.
    assert micro_lm.chat_prompt("Hello there") == ("Hello there", [(0, 11)])


def test_template_that_rewrites_the_words_still_gets_spans(chat_dir, tmp_path):
    tpl = tmp_path / "strip.jinja"
    tpl.write_text("{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}"
                   "{% if add_generation_prompt %}<assistant>{% endif %}")
    lm = LanguageModel.load(ModelSpec(path=str(chat_dir), chat_template=str(tpl)))
    text, spans = lm.chat_prompt("  padded words  ")
    assert text == "<user>padded words</user><assistant>" and [text[a:b] for a, b in spans] == ["padded words"]


def test_template_options_none_path_and_system_prompt(chat_dir, micro_path, tmp_path):
    raw = LanguageModel.load(ModelSpec(path=str(chat_dir), chat_template="none"))
    assert raw.chat is None and raw.render("Hi") == "Hi" and raw.prompt_format is None
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]")
    custom = LanguageModel.load(ModelSpec(path=str(chat_dir), chat_template=str(tpl), system_prompt="Be kind."))
    assert custom.render("Hi") == "[system] Be kind.\n[user] Hi\n[assistant]"
    with pytest.raises(ChatTemplateError, match="system_prompt needs a chat template"):
        LanguageModel.load(ModelSpec(path=str(micro_path), system_prompt="Be kind."))
    # Several turns without a template cannot be rendered; a single user turn is its words.
    assert raw.render([{"role": "user", "content": "Hi"}]) == "Hi"
    with pytest.raises(ChatTemplateError, match="needs a chat template"):
        raw.render([{"role": "system", "content": "x"}, {"role": "user", "content": "Hi"}])


def test_messages_records_keep_history_and_render_it(chat_lm, tmp_path):
    path = tmp_path / "conv.jsonl"
    conv = [{"role": "system", "content": "You sell tablets."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "My screen broke."}]
    path.write_text(json.dumps({"id": "c1", "messages": conv, "reference": "Sorry to hear that."}) + "\n"
                    + json.dumps({"id": "p1", "prompt": "Where is my order?"}) + "\n")
    recs = load_records(path)
    assert recs[0].prompt == "My screen broke." and recs[0].model_input == conv and recs[1].model_input == "Where is my order?"
    rendered = chat_lm.render(recs[0].model_input)
    assert rendered == chat_lm.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    assert "SmolLM" not in rendered  # the record's own system turn replaces the template's default
    (a,), (b,) = chat_lm.generate([recs[0].model_input, recs[1].model_input], GenerationSettings(max_new_tokens=6))
    ids = chat_lm.tokenizer.apply_chat_template(conv, add_generation_prompt=True)
    assert a == clean_cut(chat_lm.tokenizer, _hf_greedy(chat_lm, ids, 6))


@pytest.mark.parametrize("rows, match", [
    ([{"prompt": "ok"}, {"messages": [{"role": "robot", "content": "Hi"}]}], r"conv\.jsonl:2: messages\[0\]: unknown role 'robot'"),
    ([{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}], "must end with a user turn"),
    ([{"messages": []}], "non-empty list"),
    ([{"messages": [{"role": "user"}]}], "string 'role' and 'content'"),
    ([{"messages": [{"role": "user", "content": "a"}], "prompt": "b"}], "not both"),
    # A string in JSONL is text, not JSON to decode: it was reported as "not valid JSON".
    ([{"prompt": "ok"}, {"messages": "hello"}], r"conv\.jsonl:2: field 'messages' must be a list of \{role, content\} turns, got a string"),
    ([{"messages": '[{"role": "user", "content": "Hi"}]'}], "must be a list of .* turns, got a string"),
])
def test_bad_messages_name_file_and_line(tmp_path, rows, match):
    path = tmp_path / "conv.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=match) as e:
        load_records(path)
    assert "\n" not in str(e.value)


def test_messages_in_a_csv_cell_are_json_turns(tmp_path):
    path = tmp_path / "conv.csv"
    path.write_text('id,messages\na,"[{""role"": ""user"", ""content"": ""Hi""}]"\nb,hello\n')
    with pytest.raises(DataError, match=r"conv\.csv:3: field 'messages' must be a JSON list of \{role, content\} turns; "
                                         r"the cell is not valid JSON"):
        load_records(path)
    path.write_text('id,messages\na,"[{""role"": ""user"", ""content"": ""Hi""}]"\n')
    assert load_records(path)[0].messages == [{"role": "user", "content": "Hi"}]


def test_loglikelihood_scores_the_reference_as_the_assistant_turn(chat_lm):
    tok, model = chat_lm.tokenizer, chat_lm.model
    pairs = [("Where is my order?", " It shipped yesterday."), ("", "The nurse said she would be back.")]
    got = chat_lm.loglikelihood(pairs, batch_size=2)
    for (ctx, ref), (lp, n) in zip(pairs, got):
        context = tok.apply_chat_template([{"role": "user", "content": ctx}], tokenize=False, add_generation_prompt=True)
        c_ids = tok(context, add_special_tokens=False)["input_ids"]
        whole = tok(context + ref.strip(), add_special_tokens=False)["input_ids"]
        assert whole[:len(c_ids)] == c_ids  # the template ends a turn: no token straddles the boundary
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
        want = sum(float(logp[j - 1, whole[j]]) for j in range(len(c_ids), len(whole)))
        assert n == len(whole) - len(c_ids) and math.isclose(lp, want, rel_tol=1e-4, abs_tol=1e-4)


def test_joint_tokenization_scores_tokens_after_the_context(micro_lm):
    """lm-eval convention: a context's trailing space travels with the continuation (" It", not " " + "It")."""
    tok, model = micro_lm.tokenizer, micro_lm.model
    ctx, cont = "Customer: where is my order?\nAgent: ", "It shipped yesterday."
    (lp, n), = micro_lm.loglikelihood([(ctx, cont)])
    c_ids = tok(ctx.rstrip(), add_special_tokens=False)["input_ids"]
    whole = tok(ctx + cont, add_special_tokens=False)["input_ids"]
    assert whole[:len(c_ids)] == c_ids and n == len(whole) - len(c_ids)
    assert tok.decode(whole[len(c_ids)]).startswith(" ")  # the first scored token carries the space
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
    assert math.isclose(lp, sum(float(logp[j - 1, whole[j]]) for j in range(len(c_ids), len(whole))), rel_tol=1e-4)


@pytest.mark.slow
def test_joint_tokenization_worked_example_on_builtin_tiny():
    """The issue's example: apart, NLL 98.02 over 11 tokens; jointly 94.49 (" It" is one token)."""
    lm = LanguageModel.load("builtin:tiny")
    (lp, n), = lm.loglikelihood([("Customer: where is my order?\nAgent: ", "It shipped yesterday.")])
    assert n == 11 and -lp == pytest.approx(94.49, abs=0.01)


def test_cache_keys_and_identity_include_the_rendered_template(chat_dir, tmp_path):
    auto = LanguageModel.load(str(chat_dir))
    system = LanguageModel.load(ModelSpec(path=str(chat_dir), system_prompt="Answer in French."))
    raw = LanguageModel.load(ModelSpec(path=str(chat_dir), chat_template="none"))
    formats = {auto.prompt_format, system.prompt_format, raw.prompt_format}
    assert auto.fingerprint == system.fingerprint == raw.fingerprint and len(formats) == 3
    s = GenerationSettings(max_new_tokens=4)
    cache = generation_cache(auto, tmp_path)
    assert cached_generate(auto, PROMPTS, s, seed=0, cache=cache)[1] == 0
    assert cached_generate(auto, PROMPTS, s, seed=0, cache=cache)[1] == len(PROMPTS)
    assert cached_generate(system, PROMPTS, s, seed=0, cache=cache)[1] == 0
    assert cached_generate(raw, PROMPTS, s, seed=0, cache=cache)[1] == 0


def test_baseline_with_another_prompt_format_is_refused(chat_dir, tmp_path):
    from audit.baseline import BaselineError, check_prompt_format
    from audit.results import AuditResult

    base = AuditResult(suite={"name": "s"}, model={"prompt_format": "aaaa", "chat_template": "tokenizer"}, generation={}, seed=0)
    assert check_prompt_format(base, "aaaa") is None
    with pytest.raises(BaselineError, match="chat template tokenizer .aaaa. in the baseline but raw prompts"):
        check_prompt_format(base, None)
    assert "another chat template" in check_prompt_format(base, "bbbb", force=True)
    old = AuditResult(suite={"name": "s"}, model={"spec": "x"}, generation={}, seed=0)  # recorded before templates
    assert check_prompt_format(old, "bbbb") is None


SUITE = """
name: chat
model: {path: MODEL, chat_template: TEMPLATE}
data: {path: data.jsonl}
generation: {max_new_tokens: 6, batch_size: 8}
sections:
  quality: {}
"""


@pytest.mark.parametrize("template, match", [
    ("{{ raise_exception('roles must alternate') }}", "failed to render: .*roles must alternate"),
    ("{% for m in messages %}{{ m.content }", "failed to render: TemplateSyntaxError"),
    ("{% for m in messages %}{% endfor %}fixed text", "drops the user's words"),
])
def test_template_that_fails_to_render_is_one_line_exit_2_nothing_written(chat_dir, tmp_path, capsys, template, match):
    (tmp_path / "data.jsonl").write_text(json.dumps({"prompt": "Hi", "reference": "Hello"}) + "\n")
    (tmp_path / "bad.jinja").write_text(template)
    suite = write_suite(tmp_path, SUITE.replace("MODEL", str(chat_dir)).replace("TEMPLATE", "bad.jinja"))
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "-q", "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.jinja" in err
    import re
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_missing_template_file_and_unknown_role_exit_2_nothing_written(chat_dir, tmp_path, capsys):
    (tmp_path / "data.jsonl").write_text(json.dumps({"messages": [{"role": "robot", "content": "Hi"}]}) + "\n")
    suite = write_suite(tmp_path, SUITE.replace("MODEL", str(chat_dir)).replace("TEMPLATE", "auto"))
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.jsonl:1" in err and "unknown role 'robot'" in err and len(err.splitlines()) == 1
    suite = write_suite(tmp_path, SUITE.replace("MODEL", str(chat_dir)).replace("TEMPLATE", "nope.jinja"), name="s2.yaml")
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "chat_template: template file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---- every section through the template ------------------------------------------------------------

ALL_SECTIONS = """
name: chat-all
model: {path: MODEL, system_prompt: "You are a support agent."}
data: {path: data.jsonl}
generation: {max_new_tokens: 6, batch_size: 8}
sections:
  quality: {}
  diversity: {}
  toxicity: {scorer: profanity, generation: {do_sample: true, num_samples: 2, max_new_tokens: 4}}
  bias: {scorer: profanity, sentiment: vader, max_templates: 1, terms_per_group: 1, permutations: 50, generation: {max_new_tokens: 4}}
  robustness: {recipes: [deepwordbug], examples: 2, query_budget: 4, worst_case_examples: 2, max_similarity: 0.99, generation: {max_new_tokens: 4}}
  consistency: {seed_samples: 2, examples: 3, generation: {max_new_tokens: 4}}
  attribution: {most_toxic: 0, attacks: 0, worst_quality: 0, random: 2, max_target_tokens: 3, n_steps: 4}
"""


def _sequences_read(lm, run):
    """Every multi-token input the model reads during ``run()``: the ids its embedding layer sees."""
    seen: list[list[int]] = []
    pad = lm.tokenizer.pad_token_id

    def hook(_module, args, _out):
        ids = args[0]
        if ids.dim() == 2 and ids.shape[1] > 1:
            for row in ids.tolist():
                while row and row[0] == pad:
                    row = row[1:]
                seen.append(row)

    handle = lm.model.get_input_embeddings().register_forward_hook(hook)
    # Whole prompts only: with the shared-prefix cache a batch reads its common start once and then
    # each row's own tail (test_shared_prefix_cache_changes_no_answer checks that path).
    lm._shared_prefix = lambda rows: (0, None)
    try:
        run()
    finally:
        handle.remove()
        del lm._shared_prefix
    return seen


@pytest.mark.parametrize("section", ["quality", "toxicity", "bias", "robustness", "consistency", "attribution"])
def test_every_section_reads_prompts_through_the_template(chat_dir, tmp_path, section):
    from audit.runner import run_suite

    rows = [{"id": f"r{i}", "prompt": p, "reference": "Please check your email for the details.", "group": f"g{i % 2}"}
            for i, p in enumerate(PROMPTS)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = write_suite(tmp_path, ALL_SECTIONS.replace("MODEL", str(chat_dir)))
    lm = LanguageModel.load(ModelSpec(path=str(chat_dir), system_prompt="You are a support agent."))
    system = lm.encode("<|im_start|>system\nYou are a support agent.<|im_end|>\n<|im_start|>user\n")
    cache = tmp_path / "cache"
    run_suite(suite, model=lm, progress=False, cache_dir=cache, only_sections=["diversity"])  # main generation cached
    result = {}
    seqs = _sequences_read(lm, lambda: result.update(r=run_suite(suite, model=lm, progress=False, cache_dir=cache,
                                                                 only_sections=[section])))
    assert not result["r"].errors, result["r"].errors
    assert seqs, f"{section} read nothing"
    bad = [lm.tokenizer.decode(s[:12]) for s in seqs if s[:len(system)] != system]
    assert not bad, f"{section}: {len(bad)} of {len(seqs)} inputs not rendered through the template, e.g. {bad[0]!r}"


# ---- a template's time and size budget (issue 24) -------------------------------------------------
# Sizes here stay small enough that the code before the budget rendered them in a second (a
# regression fails, it does not eat the machine); each is over the 4M-character budget.
_BIG_TEMPLATES = {
    "repeat": "{% for m in messages %}{{ m.content }}{% endfor %}{{ 'x' * 20000000 }}",
    "output_loop": "{% for m in messages %}{{ m.content }}{% endfor %}{% for i in range(100000) %}{{ 'xxxxxxxxxx' * 10 }}{% endfor %}",
    "doubling": "{% set ns = namespace(s='x') %}{% for i in range(25) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
                "{% for m in messages %}{{ m.content }}{% endfor %}{{ ns.s|length }}",
    "shared_refs": "{% set s = 'x' * 100000 %}{% set a = [s, s, s, s, s, s, s, s, s, s] %}{% set b = [a, a, a, a, a, a, a, a, a, a] %}"
                   "{% for m in messages %}{{ m.content }}{% endfor %}{{ b }}",
    "replace": "{% set s = 'x' * 3000 %}{% for m in messages %}{{ m.content }}{% endfor %}{{ s.replace('x', s) }}",
    "join_pipeline": "{% for m in messages %}{{ m.content }}{% endfor %}{{ range(3000)|map('string')|map('center', 3000)|join }}",
}


@pytest.mark.parametrize("name", sorted(_BIG_TEMPLATES))
def test_a_template_building_too_much_text_stops_in_one_line(chat_lm, name):
    import time

    from audit.models.chat import ChatFormat

    fmt = ChatFormat(template=_BIG_TEMPLATES[name], source=f"{name}.jinja")
    t = time.perf_counter()
    with pytest.raises(ChatTemplateError, match=rf"^chat template {name}\.jinja stopped: .*4000000-character template budget") as e:
        fmt.render(chat_lm.tokenizer, "Hi")
    assert time.perf_counter() - t < 5 and "\n" not in str(e.value)


def test_the_budget_leaves_real_templates_alone(chat_lm):
    # The same text as transformers' apply_chat_template, for the ChatML template and Jinja's
    # features real templates use (loop controls, namespace, tojson, the generation tag).
    from audit.models.chat import ChatFormat

    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Where is my order?"}]
    tok = chat_lm.tokenizer
    assert chat_lm.chat.render_messages(tok, conv) == tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    fancy = ("{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
             "{% set ns.n = ns.n + 1 %}{% generation %}[{{ ns.n }}:{{ m.role|upper }}] {{ m.content ~ '|' }}{% endgeneration %}"
             "{% endfor %}{{ messages[-1]|tojson }}{{ bos_token }}{% if add_generation_prompt %}{{ '%s>' % 'A' }}{% endif %}")
    fmt = ChatFormat(template=fancy, source="fancy.jinja")
    assert fmt.render_messages(tok, conv) == tok.apply_chat_template(conv, chat_template=fancy, tokenize=False,
                                                                     add_generation_prompt=True)


def test_a_template_running_past_its_time_budget_is_one_line_exit_2(chat_dir, tmp_path):
    # A subprocess with a timeout: before the budget, 10^5 x 10^5 loops ran until killed.
    import subprocess
    import sys
    import time

    (tmp_path / "data.jsonl").write_text(json.dumps({"prompt": "Hi", "reference": "Hello"}) + "\n")
    (tmp_path / "loops.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}"
                                          "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    suite = write_suite(tmp_path, SUITE.replace("MODEL", str(chat_dir)).replace("TEMPLATE", "loops.jinja"))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "audit", "run", str(suite), "--out", str(tmp_path / "out"), "-q",
                           "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "loops.jinja stopped: it ran past the 5-second template time budget" in err[0]
    assert time.perf_counter() - t < 60
    assert not (tmp_path / "out").exists()


def test_budget_errors_name_the_tokenizer_config_or_the_gguf_file(tmp_path):
    from audit.models import template_sandbox

    from .chat_models import build_chat_llama, write_gguf

    hostile = "{% for m in messages %}{{ m.content }}{% endfor %}{{ 'x' * 20000000 }}"
    model_dir = build_chat_llama(tmp_path / "m", template=hostile)
    with pytest.raises(ChatTemplateError, match=r"chat template .*/m/(chat_template\.jinja|tokenizer_config\.json) stopped: "
                                                 r"a '\*' repetition"):
        LanguageModel.load(str(model_dir))
    gguf = write_gguf(model_dir, tmp_path / "hostile-template.gguf")
    with pytest.raises(ChatTemplateError, match=r"chat template tokenizer\.chat_template of GGUF file hostile-template\.gguf "
                                                 r"\(converted into .*\) stopped: a '\*' repetition"):
        LanguageModel.load(str(gguf))
    # The time budget names its source the same way (a short budget keeps this test fast).
    slow = "{% for m in messages %}{{ m.content }}{% endfor %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    (tmp_path / "slow.jinja").write_text(slow)
    import time

    old = template_sandbox.TEMPLATE_SECONDS
    template_sandbox.TEMPLATE_SECONDS = 0.5
    try:
        t = time.perf_counter()
        with pytest.raises(ChatTemplateError, match=r"slow\.jinja stopped: it ran past the 0\.5-second template time budget"):
            LanguageModel.load(str(model_dir), chat_template=str(tmp_path / "slow.jinja"))
        assert time.perf_counter() - t < 10
    finally:
        template_sandbox.TEMPLATE_SECONDS = old
