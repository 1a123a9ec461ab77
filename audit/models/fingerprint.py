"""The identity of a model on disk: a SHA-256 of the full content of its weight, config and tokenizer files.

The fingerprint names the generation cache and goes into ``results.json``, so two models must never
share one: a release gate that reuses another model's generations gives another model's verdict.
Sampling parts of a file is not enough (two checkpoints differing in one middle layer match on
their first and last MiB), so every byte of every covered file is hashed.

Hashing is cheap next to loading the same bytes (about a second per GB), and repeated runs skip
even that: each file's digest is cached under ``cache_dir()/fingerprints.json``, keyed by its
absolute path, size, ``mtime_ns``, ``ctime_ns`` and inode. ctime is in the key because mtime can be
set back by anyone (``touch -r``) while ctime cannot; any rewrite or replacement of the file
changes the key and re-hashes it.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "config.json").write_text("{}")
    >>> fp = fingerprint_path(d); len(fp.digest), fp.files
    (16, ('config.json',))
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..io.paths import cache_dir
from .files import index_files

# Files that decide what a model generates: weights (safetensors, PyTorch, GGUF), configs, tokenizer
# files (tokenizer.json, sentencepiece .model, vocab/merges .txt, tiktoken), chat templates, and
# remote code (.py, used with trust_remote_code): the directory's top level, as from_pretrained reads, plus
# every shard a ``*.index.json`` names, wherever inside the directory it lies (files.index_files).
COVERED_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".model", ".txt", ".tiktoken", ".jinja", ".py")

# One sentence, repeated in docs/reports.md and results.json (model.fingerprint_covers).
STATEMENT = ("sha256 of the full bytes of every top-level file ending in " + ", ".join(COVERED_SUFFIXES) +
             " (weights, configs, tokenizer files, chat templates, remote code) and of every shard file a "
             "*.index.json weight_map names, in whichever subdirectory of the model directory it lies, combined "
             "with each file's path in the directory and size; first 16 hex digits")

_CACHE_FILE = "fingerprints.json"


@dataclass(frozen=True)
class Fingerprint:
    """A model's weights fingerprint and what it was computed from."""

    digest: str                 # 16 hex digits of the combined sha256
    files: tuple[str, ...]      # the files hashed, as paths relative to the model directory (posix), sorted
    total_bytes: int            # bytes hashed

    @property
    def covers(self) -> str:
        """What was hashed, for results.json."""
        return f"{STATEMENT}: {', '.join(self.files)} ({self.total_bytes:,} bytes)"


def covered_files(path: Path) -> list[Path]:
    """The files a fingerprint of ``path`` (a model directory or a single weights file) covers: the
    directory's top-level covered files and every shard its indexes name (in a subdirectory too).

    Raises:
        ModelLoadError: an index entry lies outside the directory or names no file.
    """
    if path.is_file():
        return [path]
    files = {p.name: p for p in path.iterdir() if p.suffix in COVERED_SUFFIXES and p.is_file()}
    for f in index_files(path):
        files.setdefault(_rel(f, path), f)
    return [files[k] for k in sorted(files)]


def _rel(f: Path, root: Path) -> str:
    """``f``'s path inside ``root`` (a top-level file: its name), or its name for a lone file."""
    return f.relative_to(root).as_posix() if f != root else f.name


def fingerprint_path(path: str | os.PathLike) -> Fingerprint:
    """Fingerprint a model directory (or one weights file, e.g. a ``.gguf``) by full content."""
    path = Path(path)
    cache = _DigestCache()
    h = hashlib.sha256()
    names, total = [], 0
    for f in covered_files(path):
        size = f.stat().st_size
        # A top-level file's name is its path, so fingerprints of unsharded models are unchanged.
        name = _rel(f, path)
        h.update(f"{name}\0{size}\0{cache.digest(f)}\n".encode())
        names.append(name)
        total += size
    cache.save()
    return Fingerprint(digest=h.hexdigest()[:16], files=tuple(names), total_bytes=total)


def weights_fingerprint(path: str | os.PathLike) -> str:
    """Identity of a model (or classifier) directory or file by full content: :func:`fingerprint_path`'s digest.

    Names generation and score caches: two checkpoints that share a size and first MiB must not
    share outputs.
    """
    return fingerprint_path(path).digest


def file_sha256(path: Path) -> str:
    """Full sha256 of one file, read in 1 MiB chunks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cached_file_sha256(path: str | os.PathLike) -> str:
    """Full sha256 of one file, remembered in the same per-file digest cache as model fingerprints,
    so a multi-GB file (a ``.gguf``) is hashed once until it changes."""
    cache = _DigestCache()
    digest = cache.digest(Path(path))
    cache.save()
    return digest


class _DigestCache:
    """Per-file digests keyed by (absolute path, size, mtime_ns, ctime_ns, inode); a missing or
    unreadable cache file is an empty cache, and a cache that cannot be written is skipped."""

    def __init__(self):
        self.file = cache_dir() / _CACHE_FILE
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            self.entries: dict[str, str] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    @staticmethod
    def _key(path: Path) -> str:
        st = path.stat()
        return f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}"

    def digest(self, path: Path) -> str:
        key = self._key(path)
        hit = self.entries.get(key)
        if isinstance(hit, str):
            return hit
        value = file_sha256(path)
        # One entry per path: a rewritten file replaces its old entry instead of growing the cache.
        prefix = key.split("\0", 1)[0] + "\0"
        for old in [k for k in self.entries if k.startswith(prefix)]:
            del self.entries[old]
        self.entries[key] = value
        self.changed = True
        return value

    def save(self) -> None:
        if not self.changed:
            return
        tmp = None
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            # Atomic replace: a concurrent run reads either the old or the new cache, never half of one.
            fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=".fingerprints-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.file)
        except OSError:
            # A read-only cache only costs the next run a re-hash.
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
