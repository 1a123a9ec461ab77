"""YAML for files that come from outside: safe tags only, and no alias bombs or runaway nesting.

``yaml.safe_load`` runs no code, but it accepts a "billion laughs" file: nine levels of
``&a [*b, *b, ...]`` are 600 bytes on disk and ~10^9 nodes once anything walks the value (a
``repr`` in an error message, ``json.dumps`` for a fingerprint): minutes of CPU and a
``MemoryError``. Aliases are useful (``defaults: &d {...}`` then ``<<: *d``), so they are kept,
but what they may add is budgeted: the document as a tree, aliases expanded, may hold at most
:data:`ALIAS_BUDGET` nodes more than the file itself spells out, and no alias may refer to itself.
Nesting deeper than :data:`MAX_DEPTH` levels is refused too (the parser recurses per level), and so
is a file of more than :data:`MAX_NODES` values (pure-Python parsing costs ~0.1 ms a value).

Every refusal is a :class:`yaml.MarkedYAMLError`, so callers' ``except yaml.YAMLError`` report it
with the file's line and column like any other malformed YAML.

Example:
    >>> load_yaml("a: &x [1, 2]\\nb: *x")
    {'a': [1, 2], 'b': [1, 2]}
    >>> bomb = "a: &a [1]\\n" + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\\n" for p, c in zip("abcdefgh", "bcdefghi"))
    >>> try:
    ...     load_yaml(bomb)
    ... except YAMLLimitError as e:
    ...     print(e.problem)
    aliases expand this document beyond 10,000 extra nodes (an alias bomb?); write the values out or use fewer aliases
"""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, SequenceNode

from .input_files import read_text

ALIAS_BUDGET = 10_000   # nodes aliases may add: far above any real suite, far below a bomb
MAX_NODES = 20_000      # nodes written out (the largest bundled YAML file has ~200); parsing is ~0.1 ms a node
MAX_DEPTH = 100         # nesting levels


class YAMLLimitError(yaml.MarkedYAMLError):
    """The document is refused: aliases expand too far, refer to themselves, or nest too deep."""


class _BudgetLoader(yaml.SafeLoader):
    """``SafeLoader`` that checks the composed node graph before constructing any Python value."""

    _nodes = 0

    def compose_node(self, parent, index):
        # Counted as the parser goes, so a file of a million tiny nodes stops after MAX_NODES, not minutes later.
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise YAMLLimitError(None, None, f"more than {MAX_NODES:,} values; a suite or config is far smaller",
                                 self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check(node)
        return node


def _children(node) -> list:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check(root) -> None:
    """Count nodes as written (distinct) and as expanded (aliases followed), iteratively, memoised per node."""
    expanded: dict[int, int] = {}     # id(node) -> size of its subtree with aliases expanded
    on_path: set[int] = set()
    stack = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            if expanded[key] - len(expanded) > ALIAS_BUDGET:
                raise YAMLLimitError(None, None, f"aliases expand this document beyond {ALIAS_BUDGET:,} extra nodes "
                                                 f"(an alias bomb?); write the values out or use fewer aliases",
                                     node.start_mark)
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise YAMLLimitError(None, None, "an alias refers to a value that contains it (recursive alias)", node.start_mark)
        if depth > MAX_DEPTH:
            raise YAMLLimitError(None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node) if id(c) not in expanded)


def load_yaml(stream):
    """``yaml.safe_load`` with the alias budget, the self-reference ban and the depth limit above.

    Raises:
        yaml.YAMLError: malformed YAML, or a :class:`YAMLLimitError` refusal (both carry a mark).
    """
    try:
        return yaml.load(stream, Loader=_BudgetLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        # The parser recurses per nesting level; a file of ten thousand '[' exhausts the stack first.
        raise YAMLLimitError(None, None, "nested too deeply to parse", None) from None


def load_yaml_file(path, *, what: str = "YAML file", error: type[Exception] = ValueError):
    """Read ``path`` (a regular, bounded UTF-8 file) and :func:`load_yaml` it; any failure is one
    ``error`` naming the file, and the line and column when the parser knows them."""
    text = read_text(path, what=what, error=error)
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}:{at} malformed YAML: {getattr(e, 'problem', None) or e}") from None
