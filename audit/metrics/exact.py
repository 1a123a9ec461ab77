"""Right-or-wrong answers: exact match of a short label or of a JSON object, field by field.

For tasks whose answer is crisp (a label such as ``shipping``, or a JSON object such as
``{"topic": "shipping", "order_number": "48213977", "urgency": "high"}``) a similarity such as chrF
is the wrong yardstick: ``"billing"`` and ``"shipping"`` share most character n-grams, while
``{"urgency":"high"}`` and ``{ "urgency": "High" }`` share fewer than their meaning does. These
functions decide right or wrong instead. Pure functions, no model.

Rules (each is tested in ``tests/test_goals_exact.py``):

- Text answers are compared after :func:`normalise_answer`: code fences removed, lower case,
  whitespace collapsed, surrounding quotes and punctuation stripped (``"Shipping."`` == ``shipping``).
  Nothing else is forgiven: ``"Answer: shipping"`` is not ``shipping``, nor is a label followed by
  an explanation, so keep such answers short (``max_new_tokens``) or make the prompt ask for the label only.
- A reference is a JSON object when its text (code fences removed) starts with ``{`` and parses as one.
  The prediction's object is the first one found in its text (:func:`parse_json_answer`: a code fence,
  leading words such as ``Answer:`` and trailing text are tolerated).
- Objects are compared field by field: key order and spacing do not matter; string values are
  compared after :func:`normalise_answer`; nested objects and lists the same way, recursively.
  Types are part of the answer: JSON ``null`` equals only ``null`` (not the string ``"null"``, nor
  ``""``), ``true`` is not ``1``, and the number ``48213977`` is not the string ``"48213977"``.
- :func:`exact_match` of a JSON reference also needs the prediction to have no extra keys (an exact
  answer is the object asked for); :func:`field_matches` looks at the reference's fields only.

Example:
    >>> exact_match('```json\\n{"urgency": "High", "topic": "shipping"}\\n```', '{"topic": "shipping", "urgency": "high"}')
    True
    >>> field_matches('Answer: {"topic": "billing", "urgency": "high"}', '{"topic": "shipping", "urgency": "high"}')
    {'topic': False, 'urgency': True}
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["exact_match", "field_matches", "normalise_answer", "parse_json_answer", "reference_object"]

# An opening code fence with an optional language tag on its own line (```json), and a closing one.
_FENCE_OPEN = re.compile(r"^\s*```(?:[\w+-]*[ \t]*\n)?")
_FENCE_CLOSE = re.compile(r"\n?[ \t]*```\s*$")
# Quotes and punctuation that may surround a short answer without changing it ('"Shipping."').
_SURROUNDING = "\"'`“”‘’«».,;:!?"
# Where a JSON object may start: a brace followed by a key or by the closing brace.
_OBJECT_START = re.compile(r"\{\s*[\"}]")
_DECODER = json.JSONDecoder()


def strip_code_fence(text: str) -> str:
    """The text inside a surrounding Markdown code fence (the text itself when there is none).

    Example:
        >>> strip_code_fence('```json\\n{"a": 1}\\n```')
        '{"a": 1}'
        >>> strip_code_fence("```shipping```"), strip_code_fence("plain")
        ('shipping', 'plain')
    """
    m = _FENCE_OPEN.match(text)
    if not m:
        return text.strip()
    inner = text[m.end():]
    return _FENCE_CLOSE.sub("", inner).strip()


def normalise_answer(text: str) -> str:
    """A short answer in canonical form: fences removed, lower case, one space, no surrounding quotes or punctuation.

    Inner punctuation is kept (``app_bugs``, ``e-mail``, ``3.5``), and so is a leading minus sign.

    Example:
        >>> normalise_answer(' "Shipping." ')
        'shipping'
        >>> normalise_answer("```\\nApp   Bugs\\n```")
        'app bugs'
        >>> normalise_answer("-3.5!")
        '-3.5'
        >>> normalise_answer("Answer: shipping")
        'answer: shipping'
    """
    s = strip_code_fence(str(text))
    s = " ".join(s.split()).lower()
    prev = None
    while prev != s:   # '"shipping."' -> 'shipping."' ... -> 'shipping'
        prev = s
        s = s.strip(_SURROUNDING).strip()
    return s


def parse_json_answer(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``, or None when there is none or it does not parse.

    The object may sit in a code fence or after leading words (``Answer: {...}``) and be followed by
    more text. Only the FIRST place that starts an object (``{`` then a key or ``}``) is tried: when
    that object is broken (e.g. cut off by ``max_new_tokens``) the answer is None, not some object
    nested inside it. Braces that cannot start an object (``{braces}``) are passed over.

    Example:
        >>> parse_json_answer('Answer: {"topic": "shipping", "urgency": "high"} Thanks!')
        {'topic': 'shipping', 'urgency': 'high'}
        >>> parse_json_answer('```json\\n{"order_number": null}\\n```')
        {'order_number': None}
        >>> parse_json_answer('{"topic": "shipping", "meta": {"a": 1')  is None   # cut off: not the inner object
        True
        >>> parse_json_answer("shipping") is None
        True
    """
    text = str(text)
    m = _OBJECT_START.search(text)
    if not m:
        return None
    try:
        obj, _ = _DECODER.raw_decode(text, m.start())
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def reference_object(reference: str | None) -> dict[str, Any] | None:
    """The reference as a JSON object when it is one (its text, fences removed, starts with ``{``), else None.

    Example:
        >>> reference_object('{"topic": "billing"}')
        {'topic': 'billing'}
        >>> reference_object("billing") is None, reference_object(None) is None
        (True, True)
    """
    if reference is None:
        return None
    inner = strip_code_fence(str(reference))
    return parse_json_answer(inner) if inner.startswith("{") else None


def _canonical(value: Any) -> Any:
    """A JSON value in comparable form: strings normalised, types kept apart (null, bool, number, string)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", normalise_answer(value))
    if isinstance(value, list):
        return ("list", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(k), _canonical(v)) for k, v in value.items())))
    return ("other", repr(value))


def values_match(pred: Any, ref: Any) -> bool:
    """Whether two JSON values are the same answer (see the module's rules).

    Example:
        >>> values_match("High ", "high"), values_match(None, None), values_match("null", None), values_match(1, 1.0)
        (True, True, False, True)
    """
    return _canonical(pred) == _canonical(ref)


def field_matches(pred: str, ref: str) -> dict[str, bool]:
    """For a JSON-object reference: per reference field, whether the prediction's value is right.

    A prediction without a parseable object gets every field False; a field it lacks is False;
    fields only the prediction has are ignored (:func:`exact_match` counts them).

    Raises:
        ValueError: the reference is not a JSON object.

    Example:
        >>> ref = '{"topic": "shipping", "order_number": "48213977", "urgency": "high"}'
        >>> field_matches('{"urgency":"high","topic":"Shipping","order_number":null}', ref)
        {'topic': True, 'order_number': False, 'urgency': True}
        >>> field_matches("I think it is about shipping", ref)
        {'topic': False, 'order_number': False, 'urgency': False}
    """
    ref_obj = reference_object(ref)
    if ref_obj is None:
        raise ValueError(f"field_matches needs a JSON-object reference, got {str(ref)[:60]!r}")
    pred_obj = parse_json_answer(pred)
    if pred_obj is None:
        return {k: False for k in ref_obj}
    return {k: k in pred_obj and values_match(pred_obj[k], v) for k, v in ref_obj.items()}


def exact_match(pred: str, ref: str) -> bool:
    """Whether ``pred`` is the reference's answer: field by field for a JSON-object reference, else as text.

    Example:
        >>> exact_match("Shipping.", "shipping")
        True
        >>> exact_match('{"b": null, "a": "X"}', '{"a": "x", "b": null}')
        True
        >>> exact_match('{"a": "x", "b": null, "note": "extra"}', '{"a": "x", "b": null}')   # an extra key
        False
        >>> exact_match("billing", "shipping")
        False
    """
    ref_obj = reference_object(ref)
    if ref_obj is None:
        return normalise_answer(pred) == normalise_answer(ref)
    pred_obj = parse_json_answer(pred)
    if pred_obj is None or set(pred_obj) != set(ref_obj):
        return False
    return all(values_match(pred_obj[k], v) for k, v in ref_obj.items())
