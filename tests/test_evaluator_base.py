"""The evaluator template: a section declares its metrics once, through ``Evaluator.metric_infos``,
and gate validation, ``audit ls`` and the section's result all read that one declaration."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from audit.cli import listings
from audit.config import ConfigError, GenerationSettings
from audit.suite import parse_suite
from audit.evaluators import SECTIONS
from audit.evaluators.base import Context, Evaluator
from audit.results import MetricInfo


class CountEvaluator(Evaluator):
    """A section whose metrics depend on its options (one per order), like diversity's distinct-n."""

    name = "count"

    @dataclass
    class Options:
        orders: list[int] = field(default_factory=lambda: [1, 2])

    @classmethod
    def metric_infos(cls, options) -> dict[str, MetricInfo]:
        return {f"count_{n}": MetricInfo(f"count_{n}", n % 2 == 0, f"order {n}") for n in options.orders}

    def _evaluate(self, ctx, result) -> None:
        for n in self.options.orders:
            result.metrics[f"count_{n}"] = float(n)


@pytest.fixture
def count_section(monkeypatch):
    SECTIONS.names()  # register the real sections first
    monkeypatch.setitem(SECTIONS._items, "count", CountEvaluator)


def _suite(gate: str) -> dict:
    return {"name": "s", "data": "d.jsonl", "sections": {"count": {"orders": [3, 4]}}, "gates": [gate]}


def test_option_dependent_metrics_are_declared_by_one_hook(count_section):
    # Gates are checked against the metrics these options declare ...
    assert parse_suite(_suite("count.count_3 >= 0")).gates[0].metric == "count.count_3"
    with pytest.raises(ConfigError, match=r"unknown metric 'count.count_1'.*count has: count_3, count_4"):
        parse_suite(_suite("count.count_1 >= 0"))
    # ... `audit ls` lists the default options' metrics with their direction ...
    assert listings()["section count"] == ["count.count_1 ↓  order 1", "count.count_2 ↑  order 2"]
    # ... and the section's result carries the same declaration, without the section attaching it.
    result = CountEvaluator(CountEvaluator.Options([3, 4])).evaluate(Context(model=None, samples=[], settings=GenerationSettings()))
    assert result.metric_info == CountEvaluator.metric_infos(CountEvaluator.Options([3, 4]))


def test_every_section_names_what_it_declares():
    for name, cls in SECTIONS.items():
        options = cls.Options()
        infos = cls.metric_infos(options)
        assert infos and all(isinstance(i, MetricInfo) and i.name == k for k, i in infos.items()), name
        names = cls.metric_names(options)
        assert names is None or names == set(infos), name
