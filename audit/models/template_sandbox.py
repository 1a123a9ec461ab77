"""Rendering a chat template within a time and size budget, in Jinja's immutable sandbox.

A chat template is code that comes with a model (its tokenizer config, a GGUF file's
``tokenizer.chat_template``) or a suite (``chat_template:``). Jinja's sandbox stops it reaching
Python internals, but not from looping 10^5 x 10^5 times or building a multi-GB string. So every
render here has two budgets:

- time: :data:`TEMPLATE_SECONDS` of wall clock per render. A watchdog raises in the rendering
  thread when it is over, which interrupts even a loop that calls nothing (``for i in r`` over a
  list);
- size: :data:`TEMPLATE_MAX_CHARS` characters of output, counted as it is produced, and the same
  cap on any one value the template builds with ``*``, ``+``, ``%``, ``~``, a filter or a string
  method, checked *before* building it (``"x" * 10**10`` is refused, not allocated). A value's
  size counts what printing it would give (a list of 10^5 references to one long string is
  long), so printing a value cannot overrun the budget either.

The environment otherwise matches the one transformers renders ``apply_chat_template`` in
(``trim_blocks``, ``lstrip_blocks``, loop controls, the ``{% generation %}`` tag, ``tojson``,
``raise_exception``, ``strftime_now``), so renderings are identical; ``lipsum`` is left out (its
paragraph count is an allocation no template needs).

Example:
    >>> render_template("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    ...                 messages=[{"role": "user", "content": "Hi"}])
    '<user>Hi'
"""

from __future__ import annotations

import ctypes
import functools
import json
import re
import threading
from datetime import datetime
from collections.abc import Iterator
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg

# Wall-clock seconds one render may take (a real chat template renders in well under a millisecond).
TEMPLATE_SECONDS = 5.0
# Characters one render may output, and the largest value (string, or what printing a list gives) it may build.
TEMPLATE_MAX_CHARS = 4_000_000


class TemplateBudgetError(Exception):
    """A template ran past its time or size budget (the message says which)."""


class _OutOfTime(BaseException):
    """Raised asynchronously in the rendering thread. A BaseException: Jinja's and a template's
    own handlers catch Exception, and must not swallow the deadline."""


def _limit() -> int:
    return TEMPLATE_MAX_CHARS


def _too_big(what: str, size: int) -> TemplateBudgetError:
    return TemplateBudgetError(f"{what} would be {size} characters, over the {_limit()}-character template budget")


def _size(value: Any, cap: int) -> int:
    """About how many characters ``str(value)`` has, counting shared references each time; stops past ``cap``."""
    total, stack = 0, [value]
    while stack and total <= cap:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(v)
            stack.extend(v)
        elif isinstance(v, dict):
            total += 2 + 4 * len(v)
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, Namespace):
            attrs = getattr(v, "_Namespace__attrs", {})
            total += 13 + 4 * len(attrs)
            stack.extend(attrs.values())
        elif isinstance(v, int) and not isinstance(v, bool):
            total += max(1, (v.bit_length() * 30103) // 100000 + 1)   # decimal digits of an int
        else:
            total += 24   # floats, None, bools, Undefined, loop and cycler objects: short reprs
    return total


def _check_ints(values: Any) -> None:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _limit():
            raise TemplateBudgetError(f"a width or count of {v} is over the {_limit()}-character template budget")


_WIDTH = re.compile(r"\d+")


def _format_size(fmt: str, args: Any) -> int:
    """An upper bound of ``fmt % args`` / ``fmt.format(*args)``: every field may print every argument."""
    _check_ints(int(w) for w in _WIDTH.findall(fmt) if len(w) < 12)
    if any(len(w) >= 12 for w in _WIDTH.findall(fmt)):
        raise TemplateBudgetError(f"a format width in {fmt[:40]!r} is over the {_limit()}-character template budget")
    fields = fmt.count("%") + fmt.count("{") + 1
    return len(fmt) + fields * _size(args, _limit())


def _estimate(name: str, value: Any, args: tuple, kwargs: dict) -> int:
    """Characters a filter or str method ``name`` may produce from ``value`` (before running it)."""
    cap = _limit()
    _check_ints(args)
    _check_ints(kwargs.values())
    base = _size(value, cap) + _size(args, cap) + _size(kwargs, cap)
    if not isinstance(value, str):
        if name == "join" and isinstance(value, (list, tuple)):
            sep = args[0] if args else kwargs.get("d", "")
            return base + len(value) * len(str(sep))
        return base
    n = len(value)
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        hits = value.count(old) if old else n + 1
        return n + hits * len(new)
    if name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        return n + (value.count("\n") + 1) * (width if isinstance(width, int) else len(str(width)))
    if name == "wordwrap":
        wrap = kwargs.get("wrapstring", args[2] if len(args) > 2 else "\n")
        return n + (n + 1) * len(str(wrap or "\n"))
    if name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        return n + value.count("\t") * (tab if isinstance(tab, int) else 8)
    if name in ("format", "format_map"):
        return _format_size(value, (args, kwargs))
    if name == "join":   # str.join(iterable): the separator between every item
        items = args[0] if args else ()
        return _size(items, cap) + (len(items) if hasattr(items, "__len__") else 0) * n
    if name in ("center", "ljust", "rjust", "zfill", "truncate"):
        return max(n, *(a for a in args if isinstance(a, int)), 0)
    return base


def _bounded_list(items: Iterator, name: str) -> list:
    out, total, cap = [], 0, _limit()
    for item in items:
        total += _size(item, cap) + 2
        if total > cap:
            raise _too_big(f"the input of the {name!r} filter", total)
        out.append(item)
    return out


def _result_checked(what: str, result: Any) -> Any:
    if isinstance(result, (str, list, tuple, dict)):
        size = _size(result, _limit())
        if size > _limit():
            raise _too_big(what, size)
    return result


class _BudgetCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``~`` concatenation routed through a size check."""

    @optimizeconst
    def visit_Concat(self, node: jinja2.nodes.Concat, frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (transformers marks assistant tokens with it): renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # As transformers: Jinja's own tojson escapes HTML characters, which a prompt must keep.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


class _BudgetEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the operators, filters and calls that can grow a value checked first."""

    code_generator_class = _BudgetCodeGenerator
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self):
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols],
                         finalize=self._finalize)
        self.filters["tojson"] = _tojson
        self.globals.pop("lipsum", None)
        self.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        self.filters = {name: self._checked_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def _checked_filter(name: str, f):
        skip = 1 if _PassArg.from_obj(f) is not None else 0   # context / eval_ctx / environment comes first

        @functools.wraps(f)
        def checked(*args, **kwargs):
            value, rest = (args[skip], args[skip + 1:]) if len(args) > skip else (None, ())
            if isinstance(value, Iterator):   # map/select pipelines: count items as they come, keep at most the cap
                value = _bounded_list(value, name)
                args = (*args[:skip], value, *rest)
            size = _estimate(name, value, rest, kwargs)
            if size > _limit():
                raise _too_big(f"the {name!r} filter's result", size)
            return _result_checked(f"the {name!r} filter's result", f(*args, **kwargs))
        return checked

    def _finalize(self, value):
        # Every {{ ... }} passes here, in macros and {% set %} blocks too (which build their text apart
        # from the output stream): their total in one render is bounded, not only each value.
        size = _size(value, _limit())
        if size > _limit():
            raise _too_big("a printed value", size)
        state = getattr(_RENDER, "printed", None)
        if state is not None:
            _RENDER.printed = state + size
            if _RENDER.printed > _PRINTED_FACTOR * _limit():
                raise TemplateBudgetError(f"it printed more than {_PRINTED_FACTOR * _limit()} characters "
                                          f"(in macros, blocks and output), over the template budget")
        return value

    def checked_concat(self, parts):
        texts = [p if isinstance(p, str) else str(self._finalize(p)) for p in parts]
        size = sum(len(t) for t in texts)
        if size > _limit():
            raise _too_big("a '~' concatenation", size)
        return "".join(texts)

    def call_binop(self, context, operator, left, right):
        cap = _limit()
        if operator == "*":
            seq, n = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                size = _size(seq, cap) * max(n, 0)
                if size > cap:
                    raise _too_big(f"a '*' repetition ({n} times)", size)
        elif operator == "+" and isinstance(left, (str, list, tuple)):
            size = _size(left, cap) + _size(right, cap)
            if size > cap:
                raise _too_big("a '+' concatenation", size)
        elif operator == "%" and isinstance(left, str):
            size = _format_size(left, right)
            if size > cap:
                raise _too_big("a '%' format", size)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and abs(left).bit_length() * right > 32 * cap:
                raise TemplateBudgetError(f"{left} ** {right} is over the template budget")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's own signature
        if isinstance(getattr(__obj, "__self__", None), str):   # a str method: "x".ljust(10**10), .replace(...)
            size = _estimate(__obj.__name__, __obj.__self__, args, kwargs)
        else:
            _check_ints(args)
            _check_ints(kwargs.values())
            size = _size(args, _limit()) + _size(kwargs, _limit())
        if size > _limit():
            raise _too_big(f"the result of {getattr(__obj, '__name__', 'a call')}()", size)
        return _result_checked(f"the result of {getattr(__obj, '__name__', 'a call')}()",
                               super().call(__context, __obj, *args, **kwargs))


# Macro results are printed again by their callers, so what passes through finalize in one render
# may exceed the output a little; past this multiple of the cap it is a runaway.
_PRINTED_FACTOR = 4
_RENDER = threading.local()   # per-thread running total of printed characters (None outside a render)


@functools.lru_cache(maxsize=1)
def _environment() -> _BudgetEnvironment:
    return _BudgetEnvironment()   # Jinja environments are safe to share between threads once set up


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


class _Deadline:
    """Raises :class:`_OutOfTime` in the current thread once ``seconds`` have passed inside the block."""

    def __init__(self, seconds: float):
        self._tid = threading.get_ident()
        self._lock = threading.Lock()
        self._armed, self._fired = True, False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        with self._lock:
            if self._armed:
                self._fired = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._tid), ctypes.py_object(_OutOfTime))

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> bool:
        self._timer.cancel()
        with self._lock:
            self._armed = False
            if self._fired:   # fired just as the block ended: drop the exception not yet delivered
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._tid), None)
        return False


def render_template(source: str, **variables: Any) -> str:
    """Render Jinja ``source`` with ``variables`` in the sandbox, within :data:`TEMPLATE_SECONDS` and
    :data:`TEMPLATE_MAX_CHARS`.

    Raises:
        TemplateBudgetError: the render ran out of time or would produce / build too much text.
        jinja2.TemplateError: the template does not parse, or fails (its own ``raise_exception``).
    """
    template = _compile(source)
    cap, seconds = _limit(), TEMPLATE_SECONDS
    chunks: list[str] = []
    produced = 0
    _RENDER.printed = 0
    try:
        with _Deadline(seconds):
            for chunk in template.generate(**variables):
                produced += len(chunk)
                if produced > cap:
                    raise TemplateBudgetError(f"its output passed the {cap}-character template budget")
                chunks.append(chunk)
    except _OutOfTime:
        raise TemplateBudgetError(f"it ran past the {seconds:g}-second template time budget") from None
    finally:
        _RENDER.printed = None
    return "".join(chunks)
