"""pytest plugin: each gate of a suite becomes a test item, so an existing pytest / JUnit pipeline
gates models with no new tooling.

    pytest --audit-suite suites/release.yaml --audit-model ./checkpoints/candidate \\
           --audit-baseline reports/baselines/release.json --audit-out reports/ci --junitxml junit.xml

Items: ``audit[<suite>]::<gate expression>`` (fails with value, threshold and reason) and
``audit[<suite>]::section <name>`` (fails when the section raised). The suite runs once, on the
first item, and only then: whatever error stops it (an :class:`AuditError` or any other), it is
remembered and every item fails with its one line; the first item shows the full traceback of an
error that is not an ``AuditError`` (a bug, not a bad input). Without ``--audit-suite`` the plugin does nothing: it imports only
pytest at start-up (the audit library and torch load lazily), so a normal test run is not slowed.
"""

from __future__ import annotations

import pytest

import traceback

from .errors import AuditError, first_line

_STATE = "_audit_plugin_state"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("audit", "model release gates (audit)")
    group.addoption("--audit-suite", metavar="SUITE", default=None,
                    help="run this audit suite (YAML file or bundled name) and turn each gate into a test item")
    group.addoption("--audit-model", metavar="MODEL", default=None, help="model to audit (overrides the suite's)")
    group.addoption("--audit-baseline", metavar="FILE", default=None, help="baseline results.json for regression gates")
    group.addoption("--audit-force-baseline", action="store_true", default=False,
                    help="compare with an incompatible baseline anyway")
    group.addoption("--audit-out", metavar="DIR", default=None,
                    help="write results.json and the reports (report.html, junit.xml, summary.md) here")


class _Run:
    """The suite's single run, shared by every item (started by the first item that needs it)."""

    def __init__(self, config, suite):
        self.config, self.suite = config, suite
        self.result = None
        self.error: str | None = None
        self.traceback: str | None = None   # of an error that is not an AuditError, shown once

    def get(self):
        if self.result is None and self.error is None:
            from .runner import run_suite

            opt = self.config.getoption
            out = opt("audit_out")
            outputs = []
            if out:
                from pathlib import Path

                from .report import WRITERS

                outputs = [str(Path(out) / n) for e, n in ((".html", "report.html"), (".xml", "junit.xml"),
                                                            (".md", "summary.md")) if e in WRITERS]
            try:
                self.result = run_suite(self.suite, out_dir=out, outputs=outputs, progress=False,
                                        baseline=opt("audit_baseline"), force_baseline=opt("audit_force_baseline"))
            except AuditError as e:
                self.error = str(e)
            except Exception as e:  # noqa: BLE001 - any failure is the run's: remembered, never rerun per item
                self.error = f"{type(e).__name__}: {first_line(e, default='')}".rstrip(": ")
                self.traceback = traceback.format_exc()
        if self.error is not None:
            raise AuditRunError(self.error)
        return self.result


class AuditRunError(Exception):
    """The suite could not run (bad baseline, missing data, model load failure)."""


class GateFailed(AssertionError):
    pass


class AuditItem(pytest.Item):
    """One gate (``gate_index``) or one section (``section``) of the shared run."""

    def __init__(self, *, run: _Run, gate_index: int | None = None, section: str | None = None, **kw):
        super().__init__(**kw)
        self.run, self.gate_index, self.section = run, gate_index, section

    def runtest(self) -> None:
        try:
            result = self.run.get()
        except AuditRunError:
            tb, self.run.traceback = self.run.traceback, None
            if tb:
                self.add_report_section("call", "audit run traceback", tb)
            raise
        if self.section is not None:
            sec = result.sections.get(self.section)
            if sec is not None and sec.error:
                raise GateFailed(f"section {self.section} failed: {sec.error}")
            return
        g = result.gates[self.gate_index]
        if not g.passed:
            from .report.view import gate_failure_message

            raise GateFailed(gate_failure_message(g))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (GateFailed, AuditRunError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.run.suite.path or "audit", None, self.name


class AuditSuiteNode(pytest.Collector):
    """Parent node of the items (their node ids read ``audit[<suite>]::<gate>``)."""

    def collect(self):  # items are made directly in pytest_collection_modifyitems
        return []


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselection, so those apply to our items too
def pytest_collection_modifyitems(session, config, items) -> None:
    spec = config.getoption("audit_suite", default=None)
    if not spec:
        return
    from .suite import load_suite
    try:
        suite = load_suite(spec, model_override=config.getoption("audit_model"))
    except AuditError as e:
        raise pytest.UsageError(f"--audit-suite: {e}") from None
    run = _Run(config, suite)
    setattr(config, _STATE, run)
    parent = AuditSuiteNode.from_parent(session, name=f"audit[{suite.name}]", nodeid=f"audit[{suite.name}]")
    for i, gate in enumerate(suite.gates):
        items.append(AuditItem.from_parent(parent, name=gate.expression, run=run, gate_index=i))
    for name in suite.sections:
        items.append(AuditItem.from_parent(parent, name=f"section {name}", run=run, section=name))
