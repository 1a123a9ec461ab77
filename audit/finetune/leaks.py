"""The held-out rule of training data: no audited prompt, nor a perturbation of one, may be trained on.

Used by ``audit harden`` (both objectives) before a single step is taken; it lives with the training
code, below the suite runner, so the safety mix (:mod:`audit.safety_training`) and harden share one rule.
"""

from __future__ import annotations

from ..errors import AuditError


class LeakError(AuditError):
    """A held-out (audited) prompt, or a perturbation of one, reached the training set."""


#: Normalised character similarity at or above which a training prompt counts as a perturbation of a
#: held-out one. The attacks and augmentations here edit a few characters of a few words (ratio
#: > 0.9); the closest distinct train/test questions of the bundled support data are at 0.85.
LEAK_SIMILARITY = 0.9


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def check_held_out(pairs, held_out: list[str], *, threshold: float = LEAK_SIMILARITY) -> None:
    """Raise :class:`LeakError` if a training pair's prompt is a held-out prompt or a perturbation of one.

    A pair leaks when its prompt or the clean prompt it was perturbed from (``meta["original_prompt"]``)
    equals a held-out prompt, or when its normalised text (case, punctuation and spacing ignored) is
    at least ``threshold`` similar (difflib ratio) to one: typos, swapped letters, homoglyph-free copies.

    Example:
        >>> from audit.finetune.data import TextPair
        >>> check_held_out([TextPair("Where is my parcel?", "x")], ["Can I pay by card?"])
        >>> check_held_out([TextPair("Can I pay by crad?", "x")], ["Can I pay by card?"])  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        LeakError: ...
    """
    import difflib

    exact = set(held_out)
    normed = [(h, _norm(h)) for h in held_out]
    for p in pairs:
        if not p.prompt:
            continue
        orig = p.meta.get("original_prompt")
        for text in (p.prompt, orig) if isinstance(orig, str) and orig else (p.prompt,):
            hit = text if text in exact else None
            if hit is None:
                n = _norm(text)
                for h, hn in normed:
                    m = difflib.SequenceMatcher(None, n, hn, autojunk=False)
                    if m.real_quick_ratio() >= threshold and m.quick_ratio() >= threshold and m.ratio() >= threshold:
                        hit = h
                        break
            if hit is not None:
                raise LeakError(f"harden: a {p.source} training prompt {p.prompt[:60]!r} is (a perturbation of) the "
                                f"held-out prompt {hit[:60]!r}; held-out prompts must not reach training")
