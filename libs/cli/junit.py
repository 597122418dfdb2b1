"""JUnit XML for CI systems: one test case per threshold and per endpoint. Pure."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from callmeter_events import GOOD_OUTCOMES

GOOD = GOOD_OUTCOMES


def junit_xml(run: dict[str, Any]) -> str:
    suite = ET.Element("testsuite", name=f"callmeter run {run['id']} ({run['name']})")
    cases = 0
    failures = 0
    evaluation = run.get("evaluation") or {}
    for result in evaluation.get("results", []):
        cases += 1
        case = ET.SubElement(suite, "testcase", classname="thresholds", name=result["expression"])
        if not result["passed"]:
            failures += 1
            ET.SubElement(case, "failure", message=f"actual {result['actual']}")
    for ep in run.get("endpoints", []):
        cases += 1
        case = ET.SubElement(suite, "testcase", classname=f"endpoints.{ep['group']}", name=ep["id"])
        if ep.get("outcome") not in GOOD:
            failures += 1
            message = f"{ep.get('outcome')} {ep.get('sip_code') or ''} {ep.get('reason') or ''}"
            ET.SubElement(case, "failure", message=message.strip())
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
