"""Reports of a run: readable text, JSON and JUnit XML."""

from __future__ import annotations

import json
from typing import Any, TextIO
from xml.etree import ElementTree as ET

from computed.conformance.runner import FAIL, PASS, SKIP, CheckResult, GroupResult, SuiteResult

__all__ = ["progress_line", "summary", "group_line", "to_json", "to_junit", "dump_json"]

_WORDS = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip"}


def progress_line(result: CheckResult) -> str:
    line = f"{_WORDS[result.outcome]}  {result.id:<44} {result.seconds:6.2f}s  {result.purpose}"
    if result.message:
        line += f"\n      {result.message}"
    return line


def summary(suite: SuiteResult, out: TextIO) -> None:
    print(
        f"\n{suite.driver} {suite.driver_version} (RPC {suite.rpc_version}) on {', '.join(suite.hosts)}: "
        f"{suite.count(PASS)} passed, {suite.count(FAIL)} failed, {suite.count(SKIP)} skipped "
        f"-> tier {suite.tier}",
        file=out,
    )
    print("By operation group:", file=out)
    for group in suite.groups():
        print("  " + group_line(group), file=out)
    if suite.failing:
        print("Failing checks: " + ", ".join(suite.failing), file=out)


def group_line(group: GroupResult) -> str:
    """``volumes     partial      3 passed, 1 failed, 2 skipped: volume.extend.grows``"""
    line = (
        f"{group.group:<11} {group.result:<12} "
        f"{group.passed} passed, {group.failed} failed, {group.skipped} skipped"
    )
    return line + (": " + ", ".join(group.failing) if group.failing else "")


def to_json(suite: SuiteResult) -> dict[str, Any]:
    return {
        "driver": suite.driver,
        "driver_version": suite.driver_version,
        "rpc_version": suite.rpc_version,
        "hosts": suite.hosts,
        "tier": suite.tier,
        "passed": suite.count(PASS),
        "failed": suite.count(FAIL),
        "skipped": suite.count(SKIP),
        "failing": suite.failing,
        "groups": {
            g.group: {
                "result": g.result,
                "passed": g.passed,
                "failed": g.failed,
                "skipped": g.skipped,
                "failing": list(g.failing),
            }
            for g in suite.groups()
        },
        "checks": [
            {
                "id": r.id,
                "group": r.group,
                "purpose": r.purpose,
                "outcome": r.outcome,
                "message": r.message,
                "seconds": round(r.seconds, 3),
            }
            for r in suite.results
        ],
    }


def to_junit(suite: SuiteResult) -> str:
    root = ET.Element(
        "testsuite",
        name=f"computed-conformance.{suite.driver}",
        tests=str(len(suite.results)),
        failures=str(suite.count(FAIL)),
        skipped=str(suite.count(SKIP)),
        time=f"{sum(r.seconds for r in suite.results):.3f}",
    )
    for result in suite.results:
        case = ET.SubElement(
            root,
            "testcase",
            classname=f"{suite.driver}.{suite.driver_version}",
            name=result.id,
            time=f"{result.seconds:.3f}",
        )
        if result.outcome == FAIL:
            ET.SubElement(case, "failure", message=result.message).text = result.purpose
        elif result.outcome == SKIP:
            ET.SubElement(case, "skipped", message=result.message)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def dump_json(suite: SuiteResult, out: TextIO) -> None:
    json.dump(to_json(suite), out, indent=2)
    out.write("\n")
