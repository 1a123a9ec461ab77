"""A hostile OpenAI-compatible server (issue 24, issue 23 #8): redirects, impossible numbers, unbounded
answers, deep JSON, and servers echoing the key in disguise.

Every case runs against the fault-injecting stdlib server in tests/served_fake.py; the "other host"
of the redirect cases is a second one bound on 127.0.0.2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from audit.models.served import ServedError, ServedModel, ServedSpec

sys.path.insert(0, str(Path(__file__).parent))
from served_fake import PROMPTS, FakeServer, answer_for, run_cli, spec_for, write_served_suite  # noqa: E402

CHAT = "/v1/chat/completions"
KEY = "sk-audit-faults-Zq81Kx0Pw7"


def _spec(url, **kw):
    return spec_for(url, **{"max_attempts": 2, **kw})


def _write_suite(tmp_path: Path, url: str, **kw) -> Path:
    return write_served_suite(tmp_path, url, name="served-faults", max_attempts=2, **kw)


def _cli(*args, env_extra=None, timeout=120):
    return run_cli(*args, env_extra=env_extra, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _cache_values(cache_dir: Path) -> list:
    vals = []
    for f in cache_dir.glob("**/gen-*.jsonl"):
        vals += [json.loads(line)["v"] for line in f.read_text().splitlines() if line.strip()]
    return vals


# ---- 1. the key never follows a redirect to another host ------------------------------------------
def test_a_redirect_to_another_host_does_not_carry_the_key(monkeypatch):
    monkeypatch.setenv("AUDIT_FAULTS_KEY", KEY)
    with FakeServer(host="127.0.0.2") as other:
        target = f"http://127.0.0.2:{other.port}/v1/models"
        with FakeServer(lambda n, path, body: ("redirect", 302, target) if path == "/v1/models" else None) as srv:
            lm = ServedModel.load(_spec(srv.url, api_key_env="AUDIT_FAULTS_KEY"))
            assert srv.requests[0]["headers"].get("Authorization") == f"Bearer {KEY}"   # the configured host gets it
        assert lm.server_model == "fake-model" and other.count("/v1/models") == 1     # the redirect was followed ...
        assert all("Authorization" not in r["headers"] for r in other.requests)       # ... without the key
        assert not any(KEY in json.dumps(r) for r in other.requests)


def test_a_redirect_to_another_port_of_the_same_host_drops_the_key_too(monkeypatch):
    monkeypatch.setenv("AUDIT_FAULTS_KEY", KEY)
    with FakeServer() as other:
        target = f"http://127.0.0.1:{other.port}/v1/models"
        with FakeServer(lambda n, path, body: ("redirect", 301, target) if path == "/v1/models" else None) as srv:
            ServedModel.load(_spec(srv.url, api_key_env="AUDIT_FAULTS_KEY"))
        assert other.count("/v1/models") == 1 and "Authorization" not in other.requests[0]["headers"]


def test_a_redirect_within_the_same_origin_keeps_the_key(monkeypatch):
    monkeypatch.setenv("AUDIT_FAULTS_KEY", KEY)
    with FakeServer(lambda n, path, body: ("redirect", 302, "/v1/models") if n == 0 else None) as srv:
        ServedModel.load(_spec(srv.url, api_key_env="AUDIT_FAULTS_KEY"))
        assert [r["path"] for r in srv.requests] == ["/v1/models", "/v1/models"]
        assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in srv.requests)


def test_a_redirect_to_another_scheme_is_refused_in_one_line():
    with FakeServer(lambda n, path, body: ("redirect", 302, "ftp://127.0.0.1:9/v1/models")) as srv:
        with pytest.raises(ServedError) as e:
            ServedModel.load(_spec(srv.url))
    assert "redirect" in str(e.value) and "\n" not in str(e.value)


# ---- 3. bounded answers: a deadline for the whole request, a cap on the body -------------------------
@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_server_trickling_one_byte_at_a_time_is_stopped_at_the_deadline(where):
    # ~100 bytes at 0.25 s each: every socket read succeeds well inside the timeout, the answer takes 25 s.
    with FakeServer(lambda n, path, body: ("trickle", 0.25, where) if path == CHAT else None) as srv:
        lm = ServedModel.load(_spec(srv.url, timeout=1, max_attempts=2))
        t = time.perf_counter()
        with pytest.raises(ServedError) as e:
            lm.generate(PROMPTS[:1])
        elapsed = time.perf_counter() - t
    assert elapsed < 4, elapsed   # two tries of one second each, not 2 x 25 s
    assert srv.count(CHAT) == 2 and "no answer within the timeout of 1s (a deadline for the whole request)" in str(e.value)
    assert "\n" not in str(e.value)


def test_an_endless_chunked_body_stops_at_the_response_cap():
    with FakeServer(lambda n, path, body: ("chunked_forever", 256 << 20) if path == CHAT else None) as srv:
        lm = ServedModel.load(_spec(srv.url, max_response_mb=1, timeout=30))
        t = time.perf_counter()
        with pytest.raises(ServedError) as e:
            lm.generate(PROMPTS[:1])
        assert time.perf_counter() - t < 10
        time.sleep(0.2)
        assert srv.sent < 16 << 20, srv.sent   # the client hung up near 1 MB, it did not read the 256 MB
    msg = str(e.value)
    assert "larger than the 1 MB cap" in msg and "max_response_mb" in msg and "\n" not in msg
    assert srv.count(CHAT) == 1   # a size that breaks the cap is not retried


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_refused_and_the_default_cap_is_a_few_mb(chunked):
    big = json.dumps({"choices": [{"index": 0, "message": {"content": "x" * (3 << 20)}}]}).encode()
    action = ("raw", big) if not chunked else ("chunked_forever", 3 << 20)
    with FakeServer(lambda n, path, body: action if path == CHAT else None) as srv:
        lm = ServedModel.load(_spec(srv.url, max_response_mb=2))
        with pytest.raises(ServedError, match="larger than the 2 MB cap"):
            lm.generate(PROMPTS[:1])
        lm8 = ServedModel.load(_spec(srv.url))   # 8 MB by default: a 3 MB answer is fine
        if not chunked:
            assert lm8.generate(PROMPTS[:1])[0][0] == "x" * (3 << 20)
    assert ServedSpec(base_url="http://h:1/v1").max_response_mb == 8


@pytest.mark.parametrize("bad", ["0", "-1", "true", ".inf"])
def test_max_response_mb_must_be_a_positive_number(tmp_path, bad):
    from audit.config import ConfigError
    from audit.suite import load_suite

    ok = _write_suite(tmp_path, "http://127.0.0.1:9/v1", extra_model="  max_response_mb: 0.5\n")
    assert load_suite(ok).model.max_response_mb == 0.5
    suite = _write_suite(tmp_path, "http://127.0.0.1:9/v1", extra_model=f"  max_response_mb: {bad}\n")
    with pytest.raises(ConfigError, match="max_response_mb") as e:
        load_suite(suite)
    assert "unknown field" not in str(e.value)


def test_a_run_against_a_trickling_server_exits_2_in_one_line_and_keeps_finished_generations(tmp_path):
    def plan(n, path, body):   # three answers, then the server trickles
        return ("trickle", 0.25, "body") if path == CHAT and n > 3 else None

    cache = tmp_path / "cache"
    with FakeServer(plan) as srv:
        suite = _write_suite(tmp_path, srv.url, extra_model="  timeout: 1\n")
        t = time.perf_counter()
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "-q")
        elapsed = time.perf_counter() - t
    assert r.returncode == 2, r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("audit: error:") and "within the timeout of 1s" in lines[0], r.stderr
    assert sorted(_cache_values(cache)) == sorted(answer_for(p) for p in PROMPTS[:3])
    assert elapsed < 60, elapsed   # the process start dominates; the two tries take 2 s


# ---- 7. deeply nested JSON; a boolean where a number belongs ------------------------------------------
@pytest.mark.parametrize("path", ["/v1/models", CHAT])
def test_deeply_nested_json_is_a_one_line_error_naming_the_endpoint(path):
    deep = b'{"choices": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with FakeServer(lambda n, p, body: ("raw", deep) if p == path else None) as srv:
        with pytest.raises(ServedError) as e:
            ServedModel.load(_spec(srv.url)).generate(PROMPTS[:1])
        assert srv.count(path) == 2   # retried like any other garbage answer
    msg = str(e.value)
    assert "answer nested too deeply" in msg and f"{srv.url}{path[3:]}" in msg and "\n" not in msg
    assert "RecursionError" not in msg


@pytest.mark.parametrize("value", [True, False, "4096", 4096.5, 0, -1])
def test_a_context_length_that_is_not_a_positive_whole_number_is_refused(value):
    def tamper(path, body, answer):
        if path == "/v1/models":
            answer["data"][0]["max_model_len"] = value
        return answer

    with FakeServer(tamper=tamper) as srv:
        with pytest.raises(ServedError) as e:
            ServedModel.load(_spec(srv.url))
    msg = str(e.value)
    assert "max_model_len" in msg and srv.url in msg and "\n" not in msg


@pytest.mark.parametrize("value, expected", [(2048, 2048), (None, None)])
def test_a_reported_context_length_is_kept(value, expected):
    def tamper(path, body, answer):
        if path == "/v1/models" and value is not None:
            answer["data"][0]["max_model_len"] = value
        return answer

    with FakeServer(tamper=tamper) as srv:
        assert ServedModel.load(_spec(srv.url)).max_length == expected


# ---- 2. impossible numbers from a server: one line naming server and position; the section fails -----
def _is_probe(body) -> bool:   # the alignment probe: a counting sequence
    return str(body.get("prompt", "")).lstrip().startswith("1, 2, 3")


def _set_logprob(value, position=2, probe=False):
    def tamper(path, body, answer):
        if path == "/v1/completions" and body.get("echo") and _is_probe(body) == probe:
            answer["choices"][0]["logprobs"]["token_logprobs"][position] = value
        return answer
    return tamper


@pytest.mark.parametrize("value", [5.0, float("inf"), float("-inf"), float("nan"), 0.01, "-0.5", True, 10 ** 400],
                         ids=["+5", "inf", "-inf", "nan", "0.01", "string", "true", "1e400-int"])
def test_an_impossible_log_probability_is_a_one_line_error_naming_server_and_position(value):
    from audit.models.served import ServedBadValue

    with FakeServer(logprobs="aligned", tamper=_set_logprob(value)) as srv:
        lm = ServedModel.load(_spec(srv.url, api="completions"))
        with pytest.raises(ServedBadValue) as e:
            lm.loglikelihood([("Customer: my order is late.", " Agent: sorry, checking now")])
        assert srv.count("/v1/completions") == 2   # the probe, then the pair once: a retry gets the same numbers
    msg = str(e.value)
    assert f"{srv.url}/completions" in msg and "choices[0].logprobs.token_logprobs[2]" in msg and "\n" not in msg
    assert "log-probability" in msg or "not a number" in msg


def test_a_log_probability_a_rounding_error_above_zero_counts_as_zero():
    with FakeServer(logprobs="aligned", tamper=_set_logprob(2e-4, position=-2)) as srv:
        lm = ServedModel.load(_spec(srv.url, api="completions"))
        (total, n), = lm.loglikelihood([("Customer: my order is late.", " Agent: sorry, checking now")])
    assert n == 5 and total == pytest.approx(-0.4)   # four tokens at -0.1 and one at 0, never above


def test_an_impossible_number_in_the_alignment_probe_is_refused_too():
    from audit.models.served import ServedBadValue

    def tamper(path, body, answer):
        if path == "/v1/completions" and _is_probe(body):
            answer["choices"][0]["logprobs"]["top_logprobs"][3] = {",": 7.5}
        return answer

    with FakeServer(logprobs="aligned", tamper=tamper) as srv:
        lm = ServedModel.load(_spec(srv.url, api="completions"))
        with pytest.raises(ServedBadValue, match=r"choices\[0\]\.logprobs\.top_logprobs\[3\]\[','\] is 7\.5"):
            lm.loglikelihood([("Customer: my order is late.", " Agent: sorry")])


@pytest.mark.parametrize("field, value", [("text_offset", -3), ("text_offset", 2.5), ("text_offset", True),
                                          ("usage", True), ("usage", -1), ("usage", 99), ("index", True), ("index", -1)])
def test_other_numbers_a_server_sends_are_checked_the_same_way(field, value):
    from audit.models.served import ServedBadValue
    from audit.models.served.model import _continuation_logprob, _last_tokens_logprob

    text = "Hello world again"
    lp = {"tokens": ["Hello", " wor", "ld", " again", "!"], "token_logprobs": [None, -1.0, -0.5, -2.0, -9.0],
          "text_offset": [0, 5, 9, 11, 17]}
    payload = {"usage": {"completion_tokens": 1}, "choices": [{"index": 0, "text": text + "!", "logprobs": lp}]}
    if field == "text_offset":
        lp["text_offset"][2] = value
    elif field == "usage":
        payload["usage"]["completion_tokens"] = value
    else:
        payload["choices"][0]["index"] = value
    with pytest.raises(ServedBadValue) as e:
        if field == "usage":
            _last_tokens_logprob(payload, 2, text)
        else:
            _continuation_logprob(payload, text, len("Hello world"))
    where = {"text_offset": "choices[0].logprobs.text_offset[2]", "usage": "usage.completion_tokens",
             "index": "choices[0].index"}[field]
    assert where in str(e.value)


def test_a_gate_on_perplexity_from_impossible_log_probabilities_fails_through_the_cli(tmp_path):
    with FakeServer(logprobs="aligned", tamper=_set_logprob(5.0)) as srv:
        suite = _write_suite(tmp_path, srv.url, extra_model="  api: completions\n",
                             sections="  quality: {metrics: [perplexity]}\n", gates="  - quality.perplexity < 1000\n")
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    assert r.returncode != 0, r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in r.stderr
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "quality.perplexity" not in result["metrics"] and not result["passed"]
    gate, = result["gates"]
    assert gate["passed"] is False
    err = result["sections"]["quality"]["error"]
    assert "is 5.0, not a log-probability" in err and "token_logprobs[" in err and f"127.0.0.1:{srv.port}" in err


# ---- issue 23 #8: the key in disguise never reaches an output ------------------------------------------
SECRET = "sk-audit-Echo-7f3a9b2c4d5e6f01"
DISGUISES = {
    "exact": SECRET,
    "upper": SECRET.upper(),
    "lower": SECRET.lower(),
    "one char short": SECRET[:-1],
    "prefix of 8+": SECRET[:12],
    "middle fragment": SECRET[9:19],
    "split by spaces": " ".join(SECRET),
    "split by dashes": "-".join(SECRET[i:i + 4] for i in range(0, len(SECRET), 4)),
    "separators swapped": SECRET.replace("-", "_").upper(),
}


def _alnum(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _leaks(text: str, secret: str = SECRET, n: int = 8) -> list[str]:
    """Every 8-character run of the key's letters and digits found in ``text`` (case and separators ignored)."""
    flat, key = _alnum(text), _alnum(secret)
    return [key[i:i + n] for i in range(len(key) - n + 1) if key[i:i + n] in flat]


@pytest.mark.parametrize("name", list(DISGUISES))
def test_redaction_catches_the_key_in_disguise(name):
    from audit.models.served.client import redact_secret

    text = f"invalid api key '{DISGUISES[name]}' for model fake-model"
    out = redact_secret(text, SECRET)
    assert _leaks(out) == [] and "***" in out, out
    assert out.startswith("invalid api key '") and out.endswith("' for model fake-model")   # only the key goes


def test_redaction_leaves_short_fragments_and_unrelated_text_alone():
    from audit.models.served.client import redact_secret

    text = "HTTP 401 (sk-audit is the prefix; model fake-model; 7f3a9b2)"   # no 8 characters of the key in a row
    assert redact_secret(text, SECRET) == text
    assert redact_secret("key abc123 and ABC123 seen", "abc123") == "key *** and *** seen"   # a short key: whole only


@pytest.mark.parametrize("name", list(DISGUISES))
def test_a_server_echoing_the_key_in_disguise_does_not_leak_it(tmp_path, name):
    with FakeServer(require_key="the-right-one", error_echo=f"(you sent {DISGUISES[name]})") as srv:
        lm_spec = _spec(srv.url, api_key_env="AUDIT_FAULTS_KEY")
        os.environ["AUDIT_FAULTS_KEY"] = SECRET
        try:
            with pytest.raises(ServedError) as e:
                ServedModel.load(lm_spec)
        finally:
            del os.environ["AUDIT_FAULTS_KEY"]
    msg = str(e.value)
    assert "HTTP 401" in msg and "***" in msg and _leaks(msg) == [], msg


def test_a_long_error_body_is_shown_as_a_short_excerpt_only(tmp_path):
    body = "the server explains at length: " + "blah " * 600   # under the 4 KiB read, so the old code showed 200 chars
    with FakeServer(require_key="the-right-one", error_echo=body) as srv:
        suite = _write_suite(tmp_path, srv.url, extra_model="  api_key_env: AUDIT_FAULTS_KEY\n")
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
                 env_extra={"AUDIT_FAULTS_KEY": SECRET})
    assert r.returncode == 2
    line, = _error_lines(r.stderr)
    assert "HTTP 401" in line and "invalid api key the server explains" in line
    shown = line[line.index("invalid api key"):]
    assert len(shown) <= 130 and shown.count("blah") < 20, line   # an excerpt, never the body


def test_the_run_never_prints_the_key_in_disguise(tmp_path):
    echo = " | ".join(DISGUISES.values())
    with FakeServer(require_key="the-right-one", error_echo=echo) as srv:
        suite = _write_suite(tmp_path, srv.url, extra_model="  api_key_env: AUDIT_FAULTS_KEY\n")
        r = _cli("run", str(suite), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "--debug",
                 env_extra={"AUDIT_FAULTS_KEY": SECRET})
    # --debug prints the traceback (whose messages are redacted too); its exit code is cli.py's business
    assert r.returncode != 0 and "HTTP 401" in r.stderr and "Traceback" in r.stderr
    assert _leaks(r.stdout + r.stderr) == [], r.stderr[-2000:]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_deadline_holds_over_tls_too(tmp_path, monkeypatch):
    """TLS wrapping hands the socket's descriptor to a new object: the watchdog must still reach it."""
    import socket
    import ssl
    import threading

    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle(conn):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):   # 100 bytes, one each 0.2 s: 20 s in all
                if stop.wait(0.2):
                    return
                tls.sendall(b" ")
        except OSError:
            pass

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    try:
        from audit.models.served import Client

        client = Client(f"https://127.0.0.1:{port}/v1", max_attempts=1, timeout=1)
        t = time.perf_counter()
        with pytest.raises(ServedError, match="no answer within the timeout of 1s"):
            client.get_json("/models")
        assert time.perf_counter() - t < 3
    finally:
        stop.set()
        listener.close()
