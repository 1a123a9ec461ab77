"""Writing explanations: ``.json`` (plain data) and ``.html`` (standalone heatmap), and a text summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ..io.output_paths import check_output_file
from ..results import atomic_write
from .core import ExplainError, explain
from .explanation import Explanation
from .html import display_token, render_html

FORMATS = (".json", ".html", ".htm")


def write_explanations(explanations: Sequence[Explanation], path: str | os.PathLike) -> Path:
    """Write ``explanations`` to ``path``; the extension picks the format (.json or .html).

    A single explanation is written to JSON as one object, several as a list.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ExplainError(f"explain: cannot write {path}: unknown extension {ext or '(none)'!r}; use .json or .html")
    if ext == ".json":
        data = [e.to_dict() for e in explanations]
        text = json.dumps(data[0] if len(data) == 1 else data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    else:
        text = render_html(explanations)
    atomic_write(path, text)
    return path


def text_summary(e: Explanation, k: int = 3) -> str:
    """A console view: each generated token, its log-probability and its top-k sources."""
    lines = [f"{e.method}: {len(e.target_tokens)} generated tokens explained in {e.seconds:.2f} s"]
    for t, tok in enumerate(e.target_tokens):
        tops = ", ".join(f"{display_token(s)!r} {v:+.3g}" for _, s, v in e.top_sources(t, k))
        lines.append(f"  {display_token(tok)!r:>14}  log p {e.target_logprobs[t]:7.3f}  <- {tops}")
    if e.faithfulness is not None and e.faithfulness.steps:
        f = e.faithfulness
        lines.append(f"faithfulness {f.score:+.3f} nats (top-{f.k} deletion vs random; better on {f.win_rate:.0%} of steps)")
    err = e.completeness_error()
    if err is not None:
        lines.append(completeness_line(e))
    return "\n".join(lines)


def completeness_line(e: Explanation) -> str:
    """One line on completeness that never passes a missed tolerance off as fine."""
    err = e.completeness_error()
    tol = e.settings.get("completeness_tolerance")
    pts = e.settings.get("n_steps")
    if e.complete is False:
        return (f"WARNING: NOT COMPLETE: scores miss log p(x) - log p(baseline) by {err:.1%} (tolerance {tol:.0%}) after "
                f"{pts} integration points (cap {e.settings.get('max_n_steps')}); treat them as approximate "
                f"(raise --max-n-steps, or use --method feature_ablation)")
    within = f"within {err:.2%}" + (f" (tolerance {tol:.0%}, {pts} points)" if tol is not None else f" ({pts} points)")
    return f"completeness: scores sum to log p(x) - log p(baseline) {within}"


def explain_to_files(model, prompt: str, *, target: str | None = None, outputs: Sequence[str] = (),
                     **options) -> tuple[Explanation, list[Path]]:
    """Explain one generation and write it to every file in ``outputs`` (the `audit explain` command).

    Example:
        >>> e, paths = explain_to_files("builtin:micro", "Hello", outputs=["/tmp/e.json"], max_new_tokens=2)
        >>> paths[0].name
        'e.json'
    """
    for p in outputs:  # fail before the (possibly slow) attribution, not after it
        if Path(p).suffix.lower() not in FORMATS:
            raise ExplainError(f"explain: cannot write {p}: unknown extension {Path(p).suffix or '(none)'!r}; use .json or .html")
        check_output_file(p, what="explanation")   # a directory, read-only or missing location
    e = explain(model, prompt, target=target, **options)
    return e, [write_explanations([e], p) for p in outputs]
