"""JUnit XML for CI systems: one test case per threshold and per endpoint, and the run's
quality per direction as suite properties. Pure.

Every figure comes from the API's run view, i.e. from callmeter_storage.stats, the
module the results pages and the threshold evaluator use: the XML cannot disagree
with them."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from callmeter_events import GOOD_OUTCOMES
from callmeter_events.thresholds import verdict

GOOD = GOOD_OUTCOMES
# Summary keys reported as properties: the worse direction's, then send and recv.
PROPERTIES = ("mos", "mos_p5", "mos_min", "jitter_ms", "loss_pct", "rtt_ms")
# PESQ MOS-LQO of the scored calls: once per run, not per direction (empty: none scored).
RUN_PROPERTIES = ("mos_lqo", "mos_lqo_min", "mos_lqo_scored")


def junit_xml(run: dict[str, Any]) -> str:
    suite = ET.Element("testsuite", name=f"callmeter run {run['id']} ({run['name']})")
    properties = ET.SubElement(suite, "properties")
    summary = run.get("summary") or {}
    for side in ("", "send", "recv"):
        figures = (summary.get(side) or {}) if side else summary
        for key in PROPERTIES:
            value = figures.get(key)
            name = f"{key}.{side}" if side else key
            ET.SubElement(
                properties, "property", name=name, value="" if value is None else f"{value:g}"
            )
    for key in RUN_PROPERTIES:
        value = summary.get(key)
        ET.SubElement(properties, "property", name=key, value="" if value is None else f"{value:g}")
    cases = 0
    failures = 0
    evaluation = run.get("evaluation") or {}
    for result in evaluation.get("results", []):
        cases += 1
        case = ET.SubElement(suite, "testcase", classname="thresholds", name=result["expression"])
        if not result["passed"]:
            failures += 1
            said = verdict(result["actual"], result["passed"])
            message = said if result["actual"] is None else f"actual {result['actual']:g}"
            ET.SubElement(case, "failure", message=message)
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
