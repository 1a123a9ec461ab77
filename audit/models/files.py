"""One home for the rules about model files, read by preflight, the builders and the local model.

What a model spec may name (``builtin:NAME``, a ``.gguf`` file, a model directory, a hub id in the
local cache), what a model directory must hold (config, weights, tokenizer files), where a config
declares its context window, and the two helpers every builder uses: :func:`build_lock` (concurrent
first uses build once) and :func:`atomic_save` (a crash never leaves half a model). Nothing here
loads weights or imports transformers, so ``audit validate`` checks a spec in milliseconds.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
    >>> try:
    ...     check_model_dir(d)
    ... except ModelLoadError as e:
    ...     print("has no weights file" in str(e))
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuditError
from ..registry import did_you_mean

BUILTIN_PREFIX = "builtin:"
BUILTIN_NAMES = ("tiny", "micro", "smollm2")

# What from_pretrained reads: one of these weight files (or a shard index) and one tokenizer file.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
                "adapter_model.safetensors", "adapter_model.bin", "tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer_config.json")
# A served model's spec string (openai:URL, openai-completions:URL): a scheme of two letters or more,
# then a URL. No hub id contains ":", and a Windows drive letter is one letter.
_SERVED = re.compile(r"^[a-z][a-z0-9-]+:(//|https?://)", re.I)
# The config keys a context window goes by, in the order architectures use them.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")


class ModelLoadError(AuditError):
    """The model or tokenizer could not be found or loaded; the message says what to provide."""


@dataclass(frozen=True)
class ModelLocation:
    """What a model spec names, as far as knowable without loading it."""

    kind: str          # builtin | gguf | dir | hub
    path: str          # the builtin name, the .gguf file, the directory, or the hub id


def _prefix(where: str | None) -> str:
    return f"{where}.path: " if where else ""


def locate(path: str, *, trust_remote_code: bool = False, where: str | None = None) -> ModelLocation:
    """Classify and check a model path (``~`` expanded) without loading or building anything.

    A builtin name must exist, a ``.gguf`` file must be there, a directory must hold a model
    (:func:`check_model_dir`); anything else that looks like a path must exist; the rest is a hub id,
    resolved from the local Hugging Face cache when the model loads.

    Raises:
        ModelLoadError: one line, prefixed ``{where}.path:`` when ``where`` is given.
    """
    path = os.path.expanduser(path)
    if _SERVED.match(path):   # openai:URL and the like: a served model has no weights to load here
        raise ModelLoadError(f"{path.partition('#')[0]} is a served model: this command needs local weights (a model "
                             f"directory, .gguf file or builtin:NAME)")
    if path.startswith(BUILTIN_PREFIX):
        name = path[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_NAMES:
            raise ModelLoadError(f"{_prefix(where)}unknown builtin model {path!r}{did_you_mean(name, BUILTIN_NAMES)}; "
                                 f"available: {', '.join(BUILTIN_PREFIX + n for n in BUILTIN_NAMES)}")
        return ModelLocation("builtin", name)
    p = Path(path)
    if path.lower().endswith(".gguf"):
        if not p.is_file():
            raise ModelLoadError(f"{_prefix(where)}GGUF file {path!r} not found")
        return ModelLocation("gguf", path)
    if p.is_dir():
        check_model_dir(p, trust_remote_code=trust_remote_code)
        return ModelLocation("dir", path)
    if p.exists():
        raise ModelLoadError(f"{_prefix(where)}{path!r} is a file; give a model directory, a .gguf file or builtin:NAME")
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise ModelLoadError(f"{_prefix(where)}model directory {path!r} does not exist")
    return ModelLocation("hub", path)


def check_model_dir(path: str | os.PathLike, *, trust_remote_code: bool = False) -> Path:
    """A local model directory holds ``config.json``, a weights file and tokenizer files."""
    d = Path(path)
    if not (d / "config.json").is_file():
        raise ModelLoadError(f"{d}: model directory has no config.json (expected a Hugging Face model directory saved "
                             f"with save_pretrained: config.json, weights, tokenizer files)")
    index_files(d)   # a shard index naming files outside the directory, or missing ones, is refused now
    if trust_remote_code:
        return d   # the repo's own code decides what it reads
    names = {p.name for p in d.iterdir()}
    if not names.intersection(WEIGHT_FILES) and not any(n.endswith(".safetensors") for n in names):
        raise ModelLoadError(f"{d}: model directory has no weights file (one of {', '.join(WEIGHT_FILES[:4])})")
    if not names.intersection(TOKENIZER_FILES):
        raise ModelLoadError(f"{d}: model directory has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}); "
                             f"save the tokenizer with tokenizer.save_pretrained(DIR)")
    return d


def index_files(path: str | os.PathLike) -> list[Path]:
    """The files a model directory's shard indexes (``*.index.json`` at its top level) name, wherever they lie.

    ``from_pretrained`` reads every file an index's ``weight_map`` names, joined to the directory,
    so a shard may sit in a subdirectory (``shards/model-00001-of-00002.safetensors``). An entry
    that is not a relative path inside the directory (``../other/x.safetensors``, ``/abs/x``) is
    refused: the model would read weights from elsewhere. Symlinks inside the directory are kept
    as they are (a hub cache snapshot links every file to its blob).

    Raises:
        ModelLoadError: one line naming the index file and the entry.
    """
    d = Path(path)
    found: dict[str, Path] = {}
    for index in sorted(d.glob("*.index.json")):
        try:
            doc = json.loads(index.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{index}: shard index is not readable JSON ({e})") from None
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict):
            raise ModelLoadError(f"{index}: shard index has no 'weight_map' object (tensor name -> shard file)")
        for tensor, name in weight_map.items():
            if not isinstance(name, str) or not name:
                raise ModelLoadError(f"{index}: weight_map[{tensor!r}] must name a shard file, got {name!r}")
            rel = os.path.normpath(name)
            if os.path.isabs(name) or Path(name).drive or rel == ".." or rel.startswith(".." + os.sep):
                raise ModelLoadError(f"{index}: weight_map[{tensor!r}] = {name!r} lies outside the model directory; "
                                     f"shards must be inside it")
            f = d / rel
            if not f.is_file():
                raise ModelLoadError(f"{index}: weight_map[{tensor!r}] names {name!r}, which is not a file in {d}")
            found[Path(rel).as_posix()] = f
    return [found[k] for k in sorted(found)]


def context_window(config: Any) -> int | None:
    """The context window a config declares (a ``config.json`` mapping or a transformers config), else None."""
    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    for key in CONTEXT_KEYS:
        v = get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def context_length(model_dir: Path) -> int | None:
    """The context window ``config.json`` declares, or None when it says none or cannot be read."""
    try:
        cfg: Any = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return context_window(cfg) if isinstance(cfg, dict) else None


def atomic_save(model, tok, target: Path, extra: dict[str, str] | None = None) -> Path:
    """Save into a temp dir beside ``target`` and rename it in, so a crash leaves no half model.

    ``extra`` maps file names to text written alongside the model (e.g. a training log).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first: keep theirs
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def build_lock(target: Path):
    """Hold an exclusive ``fcntl`` lock on ``<target>.lock`` so concurrent processes build once.

    Where ``fcntl`` is unavailable (Windows) this is a no-op; :func:`atomic_save` still keeps the
    result consistent, at the cost of a duplicated build.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(target.parent / (target.name + ".lock"), "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
