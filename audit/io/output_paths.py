"""Checking where outputs will go before any work starts.

A run that generates for minutes and then cannot write ``x.pdf`` (no such format), ``reports/``
(a directory given as a file), a read-only directory or ``/proc/...`` wastes the run and, worse,
leaves a ``results.json`` saying ``passed: true`` beside an exit 2. Every output path is checked
first: the format is known, the path is not a directory (or, for directories, not a file), and the
directory it lands in accepts a new file (probed by creating and removing one, which is what the
write will do; permission bits alone do not say, e.g. for root or on read-only mounts).

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> check_output_file(os.path.join(d, "new", "report.html"), formats=[".html"]).name
    'report.html'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from ..errors import AuditError


class OutputPathError(AuditError):
    """An output file or directory cannot be written; raised before anything runs."""


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe_writable(directory: Path, target: Path, what: str) -> None:
    """Create and remove a file in ``directory`` (the nearest existing ancestor of ``target``)."""
    if not directory.is_dir():
        raise OutputPathError(f"{target}: cannot write {what}: {directory} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".audit-write-check-")
    except OSError as e:
        raise OutputPathError(f"{target}: cannot write {what} in {directory}: {e.strerror or type(e).__name__}") from None
    os.close(fd)
    os.unlink(probe)


def check_output_dir(path: str | os.PathLike, *, what: str = "output directory") -> Path:
    """``path`` can be (or become) a directory this process writes into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: {what} is an existing file, not a directory")
    _probe_writable(_nearest_existing(path), path, what)
    return path


def check_output_file(path: str | os.PathLike, *, formats: Iterable[str] | None = None, what: str = "output") -> Path:
    """``path`` names a known format (by extension, if ``formats`` is given) and can be written."""
    path = Path(path)
    if formats is not None:
        formats = sorted(formats)
        ext = path.suffix.lower()
        if ext not in formats:
            got = f"unknown extension {ext!r}" if ext else "no extension"
            raise OutputPathError(f"{path}: cannot write {what}: {got}; the extension picks the format, one of {', '.join(formats)}")
    if path.is_dir():
        raise OutputPathError(f"{path}: cannot write {what}: it is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OutputPathError(f"{path}: cannot write {what}: not a regular file")
    _probe_writable(_nearest_existing(path.parent), path, what)
    return path
