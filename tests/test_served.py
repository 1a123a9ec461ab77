"""The served-model backend against a fault-injecting local server: retries, bounds, resume, secrets.

The success path of a real audit runs against llama.cpp's server in test_served_llama.py; here a
tiny stdlib server (tests/served_fake.py) answers deterministically and injects the faults.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from audit.config import GenerationSettings
from audit.models.served import ServedError, ServedModel, ServedSpec, parse_served_string
from audit.models.served.model import _alignment_verdict, _continuation_logprob, _last_tokens_logprob

sys.path.insert(0, str(Path(__file__).parent))
from served_fake import PROMPTS, FakeServer, answer_for, run_cli, spec_for, write_served_suite  # noqa: E402

CHAT = "/v1/chat/completions"


def _spec(url, **kw):
    return spec_for(url, **{"max_attempts": 3, **kw})


def _write_suite(tmp_path: Path, url: str, **kw) -> Path:
    return write_served_suite(tmp_path, url, name="served-test", max_attempts=3, **kw)


def _cli(*args, env_extra=None, timeout=240):
    return run_cli(*args, env_extra=env_extra, timeout=timeout)


def _cache_values(cache_dir: Path) -> list:
    vals = []
    for f in cache_dir.glob("**/gen-*.jsonl"):
        vals += [json.loads(line)["v"] for line in f.read_text().splitlines() if line.strip()]
    return vals


# ---- spec ------------------------------------------------------------------------------------
def test_spec_string_and_mapping_forms(tmp_path):
    from audit.suite import load_suite

    s = parse_served_string("openai:http://127.0.0.1:8000/v1/#my/model")
    assert (s.base_url, s.name, s.api) == ("http://127.0.0.1:8000/v1", "my/model", "chat")
    assert parse_served_string("openai-completions:http://h:1/v1").api == "completions"
    suite = load_suite(_write_suite(tmp_path, "http://127.0.0.1:9/v1", extra_model="  api_key_env: MY_KEY\n"))
    assert isinstance(suite.model, ServedSpec) and suite.model.api_key_env == "MY_KEY" and suite.model.concurrency == 1
    # --model openai:... keeps the suite's served options (key variable, concurrency) and changes the endpoint
    over = load_suite(tmp_path / "suite.yaml", model_override="openai:http://10.0.0.1:8000/v1#m")
    assert (over.model.base_url, over.model.name, over.model.api_key_env) == ("http://10.0.0.1:8000/v1", "m", "MY_KEY")


@pytest.mark.parametrize("url, field", [("http://user:s3cret@h:1/v1", "credentials"), ("http://h:1/v1?key=s3cret", "credentials"),
                                        ("ftp://h/v1", "http(s)")])
def test_spec_refuses_credentials_in_url_without_echoing_them(url, field):
    with pytest.raises(ValueError) as e:
        ServedSpec(base_url=url)
    assert field in str(e.value) and "s3cret" not in str(e.value)


def test_unset_key_variable_is_a_one_line_error():
    os.environ.pop("AUDIT_TEST_UNSET_KEY", None)
    with pytest.raises(Exception) as e:
        ServedSpec(base_url="http://h:1/v1", api_key_env="AUDIT_TEST_UNSET_KEY").api_key()
    assert "AUDIT_TEST_UNSET_KEY is not set" in str(e.value)


# ---- request fields and retries ------------------------------------------------------------------
def test_429_then_200_retries_with_backoff_and_maps_settings():
    def plan(n, path, body):
        return ("status", 429) if path == CHAT and n <= 2 else None   # n=0 is GET /models

    with FakeServer(plan) as srv:
        lm = ServedModel.load(_spec(srv.url, concurrency=2))
        out = lm.generate(PROMPTS[:3], GenerationSettings(max_new_tokens=7, stop=["\n"]))
        assert out == [[answer_for(p)] for p in PROMPTS[:3]]
        assert lm.client.stats["retries"] == 2 and srv.count(CHAT) == 5
        body = [r["body"] for r in srv.requests if r["path"] == CHAT][-1]
        assert body["max_tokens"] == 7 and body["temperature"] == 0.0 and body["stop"] == ["\n"] and "seed" not in body
        assert body["model"] == "fake-model" and body["messages"][-1]["role"] == "user"


def test_sampling_settings_map_to_fields_with_a_seed_per_sample():
    with FakeServer() as srv:
        lm = ServedModel.load(_spec(srv.url, system_prompt="Be brief."))
        s = GenerationSettings(max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9, top_k=40, num_samples=3)
        lm.generate(PROMPTS[:1], s, seed=1)
        bodies = [r["body"] for r in srv.requests if r["path"] == CHAT]
        assert len(bodies) == 3 and len({b["seed"] for b in bodies}) == 3   # one request and seed per sample
        assert all(b["temperature"] == 0.7 and b["top_p"] == 0.9 and b["top_k"] == 40 for b in bodies)
        assert bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}
        lm2 = ServedModel.load(_spec(srv.url, n_per_request=True))
        out = lm2.generate(PROMPTS[:1], s, seed=1)
        assert [r["body"].get("n") for r in srv.requests if r["path"] == CHAT][-1] == 3 and len(set(out[0])) == 3


def test_garbage_json_is_retried_a_bounded_number_of_times():
    with FakeServer(lambda n, path, body: ("garbage",) if path == CHAT else None) as srv:
        lm = ServedModel.load(_spec(srv.url, max_attempts=3))
        with pytest.raises(ServedError) as e:
            lm.generate(PROMPTS[:1])
        assert srv.count(CHAT) == 3
        msg = str(e.value)
        assert "\n" not in msg and "after 3 tries" in msg and "not JSON" in msg


def test_hanging_past_the_timeout_is_bounded():
    with FakeServer(lambda n, path, body: ("hang", 3) if path == CHAT else None) as srv:
        lm = ServedModel.load(_spec(srv.url, timeout=0.3, max_attempts=2))
        t = time.perf_counter()
        with pytest.raises(ServedError) as e:
            lm.generate(PROMPTS[:1])
        assert time.perf_counter() - t < 2.5
        assert srv.count(CHAT) == 2 and "no answer within the timeout of 0.3s" in str(e.value)


def test_client_errors_other_than_429_are_not_retried():
    with FakeServer(lambda n, path, body: ("status", 400) if path == CHAT else None) as srv:
        lm = ServedModel.load(_spec(srv.url, max_attempts=5))
        with pytest.raises(ServedError, match="HTTP 400"):
            lm.generate(PROMPTS[:1])
        assert srv.count(CHAT) == 1


def test_unknown_model_name_lists_what_the_server_serves():
    with FakeServer() as srv:
        with pytest.raises(ServedError, match="not served.*fake-model"):
            ServedModel.load(_spec(srv.url, name="other"))


# ---- whole runs: exit 2 keeps finished work, kill and restart resumes ------------------------------
def test_500_forever_exits_2_with_one_line_and_keeps_finished_generations(tmp_path):
    def plan(n, path, body):   # three answers, then the server breaks for good
        return ("status", 500) if path == CHAT and n > 3 else None   # n=0 is GET /models

    cache = tmp_path / "cache"
    with FakeServer(plan) as srv:
        suite = _write_suite(tmp_path, srv.url)
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "-q")
        assert r.returncode == 2, r.stderr
        err = [line for line in r.stderr.splitlines() if line.startswith("audit: error")]
        assert len(err) == 1 and "HTTP 500" in err[0] and "after 3 tries" in err[0]
        assert "Traceback" not in r.stderr
        assert sorted(_cache_values(cache)) == sorted(answer_for(p) for p in PROMPTS[:3])   # finished work kept
    # The server is back on the same endpoint (the cache belongs to server model id + base URL): resume.
    with FakeServer(port=srv.port) as same:
        r = _cli("run", str(_write_suite(tmp_path, same.url)), "--out", str(tmp_path / "out2"), "--cache-dir", str(cache))
        assert r.returncode == 0, r.stderr
        assert same.count(CHAT) == len(PROMPTS) - 3
        assert "3 of 6 generations reused" in r.stderr


def test_server_killed_and_restarted_mid_run_resumes_and_finishes(tmp_path):
    from audit import run_suite

    # Each answer takes 0.1 s, so the run is still going when the server is killed after 3 answers.
    srv = FakeServer(lambda n, path, body: ("delay", 0.1) if path == CHAT else None).start()
    port = srv.port
    state = {"restarted": None}

    def killer():
        while srv.count(CHAT) < 3:
            time.sleep(0.01)
        srv.stop()                 # the server dies mid-run ...
        time.sleep(1.0)
        state["restarted"] = FakeServer(port=port).start()   # ... and comes back on the same port

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    suite = _write_suite(tmp_path, srv.url)
    text = suite.read_text().replace("max_attempts: 3", "max_attempts: 8").replace("backoff: 0.01", "backoff: 0.2")
    suite.write_text(text)
    try:
        result = run_suite(str(suite), out_dir=None, progress=False, cache_dir=tmp_path / "cache")
    finally:
        t.join(5)
        if state["restarted"]:
            state["restarted"].stop()
        srv.stop()
    assert [s.generations[0] for s in result.samples] == [answer_for(p) for p in PROMPTS]
    assert state["restarted"] is not None and state["restarted"].count(CHAT) >= 1
    assert result.model["server_model"] == "fake-model" and result.model["base_url"] == f"http://127.0.0.1:{port}/v1"


# ---- secrets ------------------------------------------------------------------------------------
def test_api_key_never_reaches_any_output(tmp_path):
    key = "sk-audit-test-9f8e7d6c5b4a"
    cache = tmp_path / "cache"
    with FakeServer(require_key=key) as srv:
        suite = _write_suite(tmp_path, srv.url, extra_model="  api_key_env: AUDIT_TEST_KEY\n")
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "--debug",
                 env_extra={"AUDIT_TEST_KEY": key})
        assert r.returncode == 0, r.stderr
        assert all(req["headers"].get("Authorization") == f"Bearer {key}" for req in srv.requests)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "suite.yaml"]
    assert any(p.name == "results.json" for p in files) and any(p.name == "samples.jsonl" for p in files)
    assert any(p.name == "report.html" for p in files) and _cache_values(cache)
    for p in files:
        assert key not in p.read_text(errors="replace"), p
    assert key not in r.stdout and key not in r.stderr
    model = json.loads((tmp_path / "out" / "results.json").read_text())["model"]
    assert model["server_model"] == "fake-model" and model["base_url"] == srv.url


def test_a_server_echoing_the_key_in_an_error_does_not_leak_it(tmp_path):
    key = "sk-audit-test-echo-1234567890"
    with FakeServer(require_key="the-right-one", error_echo=key) as srv:
        suite = _write_suite(tmp_path, srv.url, extra_model="  api_key_env: AUDIT_TEST_KEY\n")
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
                 env_extra={"AUDIT_TEST_KEY": key})
    assert r.returncode == 2 and "HTTP 401" in r.stderr and "***" in r.stderr
    assert key not in r.stderr and key not in r.stdout


# ---- sections a served model cannot run -----------------------------------------------------------
def test_weights_and_likelihood_sections_fail_their_gates_with_one_line(tmp_path):
    from audit import run_suite

    with FakeServer() as srv:
        suite = _write_suite(tmp_path, srv.url, sections="  diversity: {}\n  quality: {metrics: [perplexity]}\n  attribution: {}\n",
                             gates="  - diversity.distinct_1 >= 0\n  - quality.perplexity < 1e9\n  - attribution.faithfulness >= -1\n")
        result = run_suite(str(suite), out_dir=None, progress=False, cache_dir=tmp_path / "cache")
    assert "needs local model weights" in result.sections["attribution"].error
    assert "model.tokenizer" in result.sections["quality"].error   # chat text for echo+logprobs needs the template
    gates = {g["metric"] if isinstance(g, dict) else g.metric: g for g in result.gates}
    passed = {m: (g["passed"] if isinstance(g, dict) else g.passed) for m, g in gates.items()}
    assert passed == {"diversity.distinct_1": True, "quality.perplexity": False, "attribution.faithfulness": False}
    assert not result.passed


def test_echoed_logprobs_that_line_up_are_used():
    with FakeServer(logprobs="aligned") as srv:
        lm = ServedModel.load(_spec(srv.url, api="completions"))
        (total, n), = lm.loglikelihood([("Customer: my order is late.", " Agent: sorry, checking now")])
    assert n == 5 and total == pytest.approx(-0.5)   # " Agent:" " sorry" "," " checking" " now", and the probe passed
    assert srv.count("/v1/completions") == 2          # one alignment probe, then the pair


def test_raw_likelihood_text_keeps_the_contexts_trailing_space_with_the_continuation_as_locally():
    """The trailing space belongs to the continuation's first token (" Hello"); it used to be dropped."""
    from audit.models.interface import likelihood_texts

    with FakeServer() as srv:
        lm = ServedModel.load(_spec(srv.url, api="completions"))
        ctx, cont = "Customer: hi\nAgent: ", "Hello."
        assert lm._likelihood_text(ctx, cont) == ("Customer: hi\nAgent: Hello.", len("Customer: hi\nAgent:"))
        assert likelihood_texts(ctx, cont, chat=False) == ("Customer: hi\nAgent:", " Hello.")   # what the local model splits


def test_echoed_logprobs_shifted_by_one_token_are_refused_in_one_line(tmp_path):
    from audit import run_suite

    with FakeServer(logprobs="shifted") as srv:
        lm = ServedModel.load(_spec(srv.url, api="completions"))
        with pytest.raises(Exception, match="shifted by one token") as e:
            lm.loglikelihood([("Customer: my order is late.", " Agent: sorry")])
        assert "\n" not in str(e.value)
        suite = _write_suite(tmp_path, srv.url, extra_model="  api: completions\n", sections="  quality: {metrics: [perplexity]}\n",
                             gates="  - quality.perplexity < 1e9\n")
        result = run_suite(str(suite), out_dir=None, progress=False, cache_dir=tmp_path / "cache")
    assert "shifted by one token" in result.sections["quality"].error
    assert not result.passed   # the perplexity gate fails, never passes silently


@pytest.mark.parametrize("tops, verdict", [
    ([None, {",": -1}, {" 2": -1}, {",": -1}, {" 3": -1}], "aligned"),
    ([None, {" 2": -1, ",": -5}, {",": -1, " 2": -9}, {" 3": -1, ",": -9}, {",": -1}], "shifted"),
    ([None, {"x": -1}, {"y": -1}, {"z": -1}, {"w": -1}], "unknown"),   # no position predicts anything: cannot tell
    (None, "unknown"),                                                # no top_logprobs at all
])
def test_alignment_verdict_on_hand_made_echoes(tops, verdict):
    lp = {"tokens": ["1", ",", " 2", ",", " 3"], "token_logprobs": [None, -1, -1, -1, -1]}
    if tops is not None:
        lp["top_logprobs"] = tops
    assert _alignment_verdict({"choices": [{"logprobs": lp}]}) == verdict


def test_last_tokens_accept_vllm_token_strings_without_their_leading_space():
    text = "<|im_start|>assistant\nIt ships tomorrow."
    # vLLM echoes each token decoded alone: " ships" comes back as "ships"
    payload = {"usage": {"completion_tokens": 1}, "choices": [{"index": 0, "logprobs": {
        "tokens": ["<|im_start|>", "assistant", "\n", "It", "ships", "tomorrow", ".", "!"],
        "token_logprobs": [None, -1.0, -0.1, -2.0, -3.0, -1.5, -0.5, -9.0]}}]}
    assert _last_tokens_logprob(payload, 4, text) == (-7.0, 4)
    from audit.models.served import ServedUnsupported

    with pytest.raises(ServedUnsupported, match="tokenizes the text differently"):
        _last_tokens_logprob(payload, 4, "<|im_start|>assistant\nIt ships today.")


def test_continuation_logprob_scores_tokens_ending_after_the_context():
    text = "Hello world again"
    # tokens: "Hello" [0,5) " wor" [5,9) "ld" [9,11) " again" [11,17), then a generated token at 17
    payload = {"choices": [{"index": 0, "text": text + "!", "logprobs": {
        "tokens": ["Hello", " wor", "ld", " again", "!"], "token_logprobs": [None, -1.0, -0.5, -2.0, -9.0],
        "text_offset": [0, 5, 9, 11, 17]}}]}
    assert _continuation_logprob(payload, text, len("Hello world")) == (-2.0, 1)
    # a context ending inside " wor" (at "Hello w"): the straddling token belongs to the continuation
    assert _continuation_logprob(payload, text, len("Hello w")) == (-3.5, 3)


def test_commands_that_need_weights_refuse_a_served_model_in_one_line(tmp_path):
    r = _cli("explain", "--model", "openai:http://127.0.0.1:9/v1#m", "--prompt", "hi")
    assert r.returncode == 2 and "is a served model: this command needs local weights" in r.stderr
    assert len([line for line in r.stderr.splitlines() if line.strip()]) == 1
