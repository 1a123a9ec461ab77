"""Opening files a user names (suites, prompt sets, configs) without hanging, exhausting memory or
failing with an error that names no file.

A path can be a symlink to ``/dev/zero`` (reads forever), a FIFO (blocks forever on open), a
directory named ``x.jsonl``, or bytes that are not UTF-8. Each is refused here, before reading, as
one line naming the file; reads are bounded in total size and per line.

Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.yaml"); _ = open(p, "w").write("name: x\\n")
    >>> read_text(p, what="suite file")
    'name: x\\n'
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

from ..errors import AuditError

MAX_TEXT_BYTES = 4 << 20     # a suite or config file: far above any real one (a few KB)
MAX_LINE_BYTES = 16 << 20    # one JSONL/CSV record (a prompt with its reference and metadata)


def check_regular_file(path: str | os.PathLike, *, what: str = "file", error: type[Exception] = AuditError) -> Path:
    """``path`` if it is an existing regular file (after symlinks); else ``error`` saying what it is."""
    path = Path(path)
    try:
        st = path.stat()   # follows symlinks: a link to /dev/zero is a character device
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot open {what}: {e.strerror or type(e).__name__}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise error(f"{path}: is {kind}, not a regular {what}; give a regular file")
    return path


def decode_utf8(data: bytes, path: str | os.PathLike, *, what: str = "file", error: type[Exception] = AuditError,
                line: int | None = None) -> str:
    """``data`` as UTF-8 (a leading BOM dropped); invalid bytes are ``error`` naming the file and line."""
    try:
        return data.decode("utf-8-sig" if line in (None, 1) else "utf-8")
    except UnicodeDecodeError as e:
        at = line if line is not None else data.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{at}: {what} is not valid UTF-8 (byte 0x{data[e.start]:02x}); save it as UTF-8") from None


def read_text(path: str | os.PathLike, *, what: str = "file", error: type[Exception] = AuditError,
              max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A whole small text file (suite, config), refused if not regular, over ``max_bytes`` or not UTF-8."""
    path = check_regular_file(path, what=what, error=error)
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or type(e).__name__}") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {what} is larger than {max_bytes >> 20} MiB; is this the right file?")
    return decode_utf8(data, path, what=what, error=error)


def iter_lines(path: str | os.PathLike, *, what: str = "data file", error: type[Exception] = AuditError,
               max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a regular UTF-8 file, each line at most ``max_line_bytes``."""
    path = check_regular_file(path, what=what, error=error)
    try:
        f = path.open("rb")
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or type(e).__name__}") from None
    with f:
        n = 0
        while True:
            raw = f.readline(max_line_bytes + 1)   # bounded: a file with no newline cannot fill memory
            if not raw:
                return
            n += 1
            if len(raw) > max_line_bytes:
                raise error(f"{path}:{n}: line longer than {max_line_bytes >> 20} MiB; is this the right file?")
            yield n, decode_utf8(raw, path, what=what, error=error, line=n)
