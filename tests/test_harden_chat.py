"""Fine-tuning an instruct model goes through its chat template: user turn -> assistant turn, loss on
the assistant's tokens (and its end-of-turn markup) only; base models are tokenised as before.

On the tiny ChatML Llama of :mod:`tests.chat_models` (SmolLM2's template at toy size).
"""

from __future__ import annotations

import json


from audit.finetune.config import load_finetune_config
from audit.finetune.data import TextPair, tokenize_pairs
from audit.finetune.losses.base import IGNORE
from audit.models.local import LanguageModel


ANSWER = "Go to Settings and add the card."
PROMPT = "Can I change the payment method?"


def _learned(tok, ex) -> str:
    return tok.decode([t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE])


def test_prompt_is_the_generation_prompt_and_only_the_assistant_turn_is_learned(chat_lm):
    tok = chat_lm.tokenizer
    ex = tokenize_pairs([TextPair(PROMPT, " " + ANSWER)], tok, max_length=256, chat=chat_lm.chat)[0]
    n_prompt = sum(1 for lab in ex.labels if lab == IGNORE)
    # Exactly the ids generation conditions on (system turn, user turn, "<|im_start|>assistant\n").
    assert ex.input_ids[:n_prompt] == chat_lm.encode(chat_lm.render(PROMPT))
    assert "<|im_start|>user\n" + PROMPT in tok.decode(ex.input_ids[:n_prompt])
    # The answer (stripped, as the template writes content) and the end of the turn; no eos token.
    assert _learned(tok, ex) == ANSWER + "<|im_end|>\n"
    assert tok.eos_token_id not in ex.input_ids[n_prompt:]


def test_paired_sequences_are_templated_too(chat_lm):
    pair = TextPair("Can I chnage the payment method?", ANSWER, source="adversarial",
                    meta={"original_prompt": PROMPT, "pair_target": ANSWER})
    ex = tokenize_pairs([pair], chat_lm.tokenizer, max_length=256, chat=chat_lm.chat)[0]
    (p_ids, p_lab), (o_ids, o_lab) = ex.pair
    n_o = sum(1 for lab in o_lab if lab == IGNORE)
    assert o_ids[:n_o] == chat_lm.encode(chat_lm.render(PROMPT))
    assert p_ids[len(p_ids) - (len(o_ids) - n_o):] == o_ids[n_o:]        # one continuation after both prompts
    assert _learned(chat_lm.tokenizer, type(ex)(o_ids, o_lab)) == ANSWER + "<|im_end|>\n"


def test_base_models_are_unchanged(micro_lm):
    # No template: prompt + target + eos, as before (and use_chat_template cannot change that).
    assert micro_lm.chat is None
    pairs = [TextPair("Customer: hi\nAgent:", " hello there")]
    ex = tokenize_pairs(pairs, micro_lm.tokenizer, max_length=64, chat=micro_lm.chat)[0]
    tok = micro_lm.tokenizer
    assert ex.input_ids == tok("Customer: hi\nAgent:")["input_ids"] + tok(" hello there")["input_ids"] + [tok.eos_token_id]


def _data(tmp_path, n=8):
    rows = [{"prompt": PROMPT, "reference": ANSWER, "split": "train"} for _ in range(n)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepare_data_uses_the_models_template_unless_turned_off(chat_lm, tmp_path):
    from audit.finetune.run import prepare_data

    data = _data(tmp_path)
    on = load_finetune_config({"model": "x", "data": str(data), "val_fraction": 0.0})
    train, _, counts = prepare_data(on, chat_lm.tokenizer, chat=chat_lm.chat)
    assert counts["chat_template"] == 1 and _learned(chat_lm.tokenizer, train[0]) == ANSWER + "<|im_end|>\n"
    off = load_finetune_config({"model": "x", "data": str(data), "val_fraction": 0.0, "use_chat_template": False})
    train, _, counts = prepare_data(off, chat_lm.tokenizer, chat=chat_lm.chat)
    assert counts["chat_template"] == 0 and "<|im_start|>" not in chat_lm.tokenizer.decode(train[0].input_ids)


def test_finetune_through_the_template_teaches_the_chat_answer(chat_dir, tmp_path):
    """End to end: `finetune` on the chat model, then greedy generation through the template says the answer."""
    from audit.config import GenerationSettings
    from audit.finetune import finetune

    r = finetune({"model": str(chat_dir), "data": str(_data(tmp_path)), "max_steps": 60, "lr": 3e-2, "batch_size": 8,
                  "val_fraction": 0.0, "warmup_steps": 0, "progress": False, "eval_every": 1000, "save_every": 1000,
                  "out_dir": str(tmp_path / "run"), "losses": {"ce": 1.0}})
    assert json.loads((tmp_path / "run" / "data.json").read_text())["chat_template"] == 1
    trained = LanguageModel.load(str(r.model_dir))
    assert trained.chat is not None                                     # the saved tokenizer keeps its template
    out = trained.generate([PROMPT], GenerationSettings(max_new_tokens=24, do_sample=False))[0][0]
    # Learned as the assistant turn: the answer, then the turn ends (<|im_end|> stops generation).
    assert out.strip() == ANSWER


def test_a_system_prompt_is_the_system_turn_of_every_record(chat_lm, micro_lm, tmp_path):
    import dataclasses

    import pytest

    from audit.config import ConfigError
    from audit.finetune.run import _chat_format, prepare_data

    system = "Route the customer's message; answer in JSON."
    cfg = load_finetune_config({"model": "x", "data": str(_data(tmp_path)), "val_fraction": 0.0, "system_prompt": system})
    chat = _chat_format(cfg, chat_lm)
    train, _, _ = prepare_data(cfg, chat_lm.tokenizer, chat=chat)
    n_prompt = sum(1 for lab in train[0].labels if lab == IGNORE)
    prompt = chat_lm.tokenizer.decode(train[0].input_ids[:n_prompt])
    assert "<|im_start|>system\n" + system in prompt and _learned(chat_lm.tokenizer, train[0]) == ANSWER + "<|im_end|>\n"
    # The ids generation conditions on when the suite sets the same model.system_prompt.
    audited = LanguageModel(chat_lm.model, chat_lm.tokenizer, spec="chat+system", chat=chat)
    assert train[0].input_ids[:n_prompt] == audited.encode(audited.render(PROMPT))
    assert _chat_format(dataclasses.replace(cfg, system_prompt=None), chat_lm) is chat_lm.chat
    with pytest.raises(ConfigError, match="needs a chat template"):
        _chat_format(cfg, micro_lm)


def test_the_hardened_copy_is_prompted_as_the_model_it_came_from(chat_lm, chat_dir):
    """The after-audit must use the suite's system prompt too: it lives in the suite, not in the saved model."""
    import dataclasses

    from audit.harden import load_hardened

    system = "Route the customer's message; answer in JSON."
    before = LanguageModel(chat_lm.model, chat_lm.tokenizer, spec="chat+system",
                           chat=dataclasses.replace(chat_lm.chat, system_prompt=system))
    after = load_hardened(before, chat_dir)
    assert after.chat.system_prompt == system and after.render(PROMPT) == before.render(PROMPT)
    assert LanguageModel.load(str(chat_dir)).chat.system_prompt is None     # what a plain load would have audited
