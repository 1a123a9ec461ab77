"""Name -> component registries: registration by decorator, duplicates raise, unknown names suggest.

Every pluggable piece (suite sections, toxicity backends, attack recipes, attribution methods,
training losses) lives in a :class:`Registry`. Suites can only name registered components, so a
YAML file can never smuggle in code.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from .errors import AuditError

T = TypeVar("T")


class UnknownNameError(AuditError, KeyError):
    """An unknown component name; the message lists what exists and the closest match."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


def did_you_mean(name: str, options) -> str:
    """``" (did you mean 'x'?)"`` for the closest option, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: Any, options: Iterable[Any]) -> str:
    """The one wording of an unknown name: what it is, the closest option and every option.

    Example:
        >>> unknown_name("goal", "toxic", ["toxicity", "output_change"])
        "unknown goal 'toxic' (did you mean 'toxicity'?); available: toxicity, output_change"
    """
    names = [str(o) for o in options]
    return f"unknown {kind} {name!r}{did_you_mean(str(name), names)}; available: {', '.join(names) or 'none'}"


class Registry(Generic[T]):
    """A named collection of components.

    Example:
        >>> losses = Registry("loss")
        >>> @losses.register("ce")
        ... def ce(): return 1
        >>> losses.get("ce")()
        1
    """

    def __init__(self, kind: str, *, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        # Modules that register into this registry are imported lazily, on first look-up.
        self._loader = loader
        self._loaded = loader is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True
            self._loader()

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name(self.kind, name, sorted(self._items))) from None

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._items

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._ensure_loaded()
        return iter(sorted(self._items.items()))
