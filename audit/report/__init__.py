"""Renderers: each output format is a writer registered under its file extension.

``write_report(result, "out.html")`` picks the writer by extension. Renderers read only an
:class:`~audit.results.AuditResult`; they never re-run anything.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable

from ..io.output_paths import check_output_dir, check_output_file
from ..registry import Registry
from ..results import AuditResult, atomic_write

# Modules that register writers; imported on first look-up.
_WRITER_MODULES = ["console", "html", "markdown", "junit"]


def _load() -> None:
    for name in _WRITER_MODULES:
        importlib.import_module(f"{__name__}.{name}")


WRITERS: Registry[Callable[[AuditResult], str]] = Registry("output format", loader=_load)


@WRITERS.register(".json")
def render_json(result: AuditResult) -> str:
    """The full results (samples included) as one JSON document."""
    return result.to_json() + "\n"


def check_outputs(out_dir: str | os.PathLike | None, outputs=()) -> None:
    """Fail now, before any model loads, if ``out_dir`` or any of ``outputs`` cannot be written.

    Raises:
        audit.io.output_paths.OutputPathError: naming the path (unknown format, a directory, read-only, ...).
    """
    if out_dir is not None:
        check_output_dir(out_dir)
    for path in outputs:
        check_output_file(path, formats=WRITERS.names(), what="report")


def write_report(result: AuditResult, path: str | os.PathLike) -> Path:
    """Render ``result`` in the format named by ``path``'s extension and write it atomically."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    atomic_write(path, writer(result))
    return path
