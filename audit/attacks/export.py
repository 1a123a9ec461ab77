"""Successful adversarial prompts as JSONL, for hardening (``audit harden`` / ``audit finetune``) to train on.

One JSON object per line, one line per SUCCESSFUL attack of the run's robustness section::

    {"id", "prompt": perturbed prompt, "original_prompt", "target": the model's clean output,
     "reference": the dataset reference or null, "recipe", "clean_output", "perturbed_output"}

Training pairs are ``prompt -> target`` (``audit harden --target reference``: the reference where there
is one): the model should answer the perturbed prompt as it (or the reference) answers the clean one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..results import AuditResult, atomic_write

FIELDS = ("id", "prompt", "original_prompt", "target", "reference", "recipe", "clean_output", "perturbed_output")


def adversarial_rows(result: AuditResult) -> list[dict]:
    """The export rows of a result (empty when no robustness section ran or nothing succeeded).

    Example:
        >>> adversarial_rows(AuditResult(suite={}, model={}, generation={}, seed=0))
        []
    """
    section = result.sections.get("robustness")
    if section is None:
        return []
    rows = []
    for r in section.records:
        if not r.get("success") or r.get("skipped"):
            continue
        rows.append({"id": r["id"], "prompt": r["perturbed_prompt"], "original_prompt": r["original_prompt"],
                     "target": r["clean_output"], "reference": r.get("reference"), "recipe": r["recipe"],
                     "clean_output": r["clean_output"], "perturbed_output": r["perturbed_output"]})
    return rows


def write_adversarial_jsonl(result: AuditResult, path: str | os.PathLike) -> Path:
    """Write the successful attacks of ``result`` to ``path`` (JSONL, atomically) and return the path.

    An empty file is written when nothing succeeded, so a later step can tell "no adversarial
    examples" from "robustness did not run".

    Example:
        >>> import tempfile, os
        >>> r = AuditResult(suite={}, model={}, generation={}, seed=0)
        >>> p = write_adversarial_jsonl(r, os.path.join(tempfile.mkdtemp(), "adversarial.jsonl"))
        >>> p.read_text()
        ''
    """
    path = Path(path)
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in adversarial_rows(result))
    atomic_write(path, lines)
    return path
