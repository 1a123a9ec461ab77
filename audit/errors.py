"""User-facing errors and the process exit codes: the contract every command shares.

Exit codes (GUIDE section 3): 0 all gates pass, 1 a gate failed (reports are written first),
2 usage, config, input or runtime error, printed as one line naming the file and field.
"""

from __future__ import annotations

EXIT_PASS = 0          # every gate passed
EXIT_GATE_FAILED = 1   # a release gate failed; every report was still written
EXIT_ERROR = 2         # usage, config, input or runtime error (one line, no traceback)


class AuditError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 2."""


def first_line(exc: BaseException, *, default: str | None = None) -> str:
    """The first non-empty line of an exception's message, for one-line error reports.

    ``default`` is returned for an empty message (the exception's class name when omitted).

    Example:
        >>> first_line(ValueError("bad value\\nlong traceback-ish detail"))
        'bad value'
        >>> first_line(KeyError())
        'KeyError'
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__ if default is None else default
    return text.splitlines()[0]
