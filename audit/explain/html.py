"""Standalone HTML heatmaps of explanations (``audit explain -o out.html``).

One self-contained file: inline CSS and one small nonce-tagged script, nothing fetched. Rendered
with Jinja2 autoescape on: every token, prompt and target is untrusted model/dataset text. Colors
and scores are computed here and shown server-side (hover a token for its score; works without
JavaScript); the explanations also travel as JSON through ``|tojson`` for the script, which only
sets ``textContent`` and colors.

Example:
    >>> from audit.explain import explain
    >>> html = render_html([explain("builtin:micro", "<b>hi</b>", max_new_tokens=2)])
    >>> "<b>hi</b>" in html
    False
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Sequence

from jinja2 import Environment, FileSystemLoader

from .explanation import Explanation

TEMPLATES = Path(__file__).parent / "templates"
_POS, _NEG = (207, 34, 46), (9, 105, 218)   # red: raised the log-probability; blue: lowered it


def display_token(text: str) -> str:
    """How a token is shown: newlines and tabs as visible marks; an empty piece as a middle dot."""
    if text == "":
        return "\u00b7"  # a byte of a multi-byte character completed by the next token
    return text.replace("\n", "\u21b5").replace("\t", "\u21e5").replace("\r", "")


def color(score: float | None, scale: float) -> str:
    """CSS background for a score, its intensity relative to ``scale`` (the row's max |score|)."""
    if score is None or scale <= 0:
        return "transparent"
    a = min(1.0, abs(score) / scale) * 0.85
    r, g, b = _POS if score >= 0 else _NEG
    return f"rgba({r},{g},{b},{a:.3f})"


def heatmap_rows(exp: Explanation | dict[str, Any]) -> list[dict[str, Any]]:
    """One row per generated token: its sources (tokens before it) with scores and colors.

    Rows are normalised separately (each by its own max |score|): steps differ in scale, and a
    shared scale would leave most rows blank.
    """
    e = exp if isinstance(exp, Explanation) else Explanation.from_dict(exp)
    excluded = set(e.excluded)   # chat-template tokens: shown grey, never scored
    rows = []
    for t, row in enumerate(e.attributions):
        n = e.n_prompt + t
        scores = [v for v in row[:n]]
        scale = max((abs(v) for v in scores if v is not None), default=0.0)
        rows.append({
            "step": t,
            "label": display_token(e.source_tokens[n]),
            "logprob": e.target_logprobs[t],
            "scale": scale,
            "cells": [{"text": display_token(tok), "score": s, "color": color(s, scale), "prompt": j < e.n_prompt,
                       "excluded": j in excluded} for j, (tok, s) in enumerate(zip(e.source_tokens[:n], scores))],
        })
    return rows


def prompt_summary(exp: Explanation) -> dict[str, Any]:
    """Prompt tokens colored by their attribution summed over all generated steps."""
    total = exp.prompt_attribution()
    scale = max((abs(v) for v in total), default=0.0)
    excluded = set(exp.excluded)
    return {"scale": scale, "cells": [{"text": display_token(t), "score": None if j in excluded else s,
                                       "color": "transparent" if j in excluded else color(s, scale), "excluded": j in excluded}
                                      for j, (t, s) in enumerate(zip(exp.prompt_tokens, total))]}


def _env() -> Environment:
    return Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)


def render_html(explanations: Sequence[Explanation], *, title: str = "audit explain") -> str:
    """A self-contained HTML page with one heatmap per explanation."""
    items = [{"e": e, "rows": heatmap_rows(e), "summary": prompt_summary(e), "data": e.to_dict()} for e in explanations]
    return _env().get_template("explain.html.j2").render(items=items, title=title, nonce=secrets.token_urlsafe(16),
                                                        display_token=display_token)
