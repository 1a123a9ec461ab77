"""JUnit XML for CI systems: one testcase per gate (a ``<failure>`` with value, threshold and reason
when it fails) and one per section (an ``<error>`` when the section failed).

Written with ``xml.etree`` (escaping is the serializer's); characters XML 1.0 cannot carry (NUL and
other control characters a model may emit) are replaced, so the file always parses.

Example:
    >>> from audit.results import AuditResult, GateResult
    >>> r = AuditResult(suite={"name": "s"}, model={"spec": "m"}, generation={}, seed=0,
    ...                 gates=[GateResult("q.m < 1", "q.m", "<", 1.0, 2.0, False, "2 < 1 is false")], passed=False)
    >>> 'failures="1"' in render_junit(r)
    True
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..results import AuditResult
from . import WRITERS
from .view import gate_failure_message

# XML 1.0 allows tab, LF, CR and U+0020.. (minus surrogates and U+FFFE/U+FFFF).
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _x(text) -> str:
    return _INVALID_XML.sub("\ufffd", str(text))


def render_junit(result: AuditResult) -> str:
    """The result as a JUnit XML document (writer for ``.xml``)."""
    suite = str(result.suite.get("name", "suite"))
    model = str(result.model.get("spec") or result.model.get("path") or "model")
    gate_fail = sum(not g.passed for g in result.gates)
    n_err = len(result.errors)
    tests = len(result.gates) + len(result.sections)
    total = float(result.timings.get("total", 0.0) or 0.0)
    root = ET.Element("testsuites", name=_x(f"audit {suite}"), tests=str(tests), failures=str(gate_fail),
                      errors=str(n_err), time=f"{total:.3f}")
    ts = ET.SubElement(root, "testsuite", name=_x(f"audit.{suite}"), tests=str(tests), failures=str(gate_fail),
                       errors=str(n_err), skipped="0", time=f"{total:.3f}", timestamp=_x(result.created[:19]))
    props = ET.SubElement(ts, "properties")
    for name, value in [("model", model), ("model.fingerprint", result.model.get("fingerprint", "")),
                        ("suite.version", result.suite.get("version", "")),
                        ("suite.fingerprint", result.suite.get("fingerprint", "")), ("seed", result.seed),
                        ("verdict", "pass" if result.passed else "fail"),
                        ("baseline", (result.baseline or {}).get("path", ""))]:
        ET.SubElement(props, "property", name=name, value=_x(value))
    for g in result.gates:
        tc = ET.SubElement(ts, "testcase", classname=_x(f"audit.{suite}.gates"), name=_x(g.expression), time="0")
        if not g.passed:
            msg = gate_failure_message(g)
            fail = ET.SubElement(tc, "failure", message=_x(msg), type="GateFailed")
            fail.text = _x(f"{msg}\nmodel: {model}\nmetric: {g.metric}")
    for name, sec in result.sections.items():
        tc = ET.SubElement(ts, "testcase", classname=_x(f"audit.{suite}.sections"), name=_x(name),
                           time=f"{sec.seconds:.3f}")
        if sec.error:
            err = ET.SubElement(tc, "error", message=_x(sec.error), type="SectionError")
            err.text = _x(f"section {name} failed: {sec.error}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


WRITERS.register(".xml")(render_junit)
