"""Running the checks and summing up what they found."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from computed import exception
from computed.conformance._context import CheckFailed, CheckSkipped, SuiteContext
from computed.conformance.checks import CHECKS, Check
from computed.registry.api import ConformanceRecord
from computed.testing.notifications import NotificationCollector
from drivers.base import SupportTier
from rpcapi import ComputeAPI

__all__ = ["CheckResult", "SuiteResult", "run_suite", "select_checks"]

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class CheckResult:
    id: str
    purpose: str
    outcome: str
    message: str
    seconds: float


@dataclass
class SuiteResult:
    driver: str
    driver_version: str
    rpc_version: str
    hosts: list[str]
    results: list[CheckResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def failing(self) -> list[str]:
        return [r.id for r in self.results if r.outcome == FAIL]

    @property
    def tier(self) -> str:
        """Conformant when nothing failed; partial otherwise."""
        return str((SupportTier.PARTIAL if self.failing else SupportTier.CONFORMANT).value)

    def record(self) -> ConformanceRecord:
        return ConformanceRecord(
            driver=self.driver,
            driver_version=self.driver_version,
            rpc_version=self.rpc_version,
            host=",".join(self.hosts),
            passed=self.count(PASS),
            failed=self.count(FAIL),
            skipped=self.count(SKIP),
            failing=tuple(self.failing),
            tier=self.tier,
        )


def select_checks(patterns: list[str] | None) -> list[Check]:
    """The checks whose id matches any of the shell-style patterns (all without any)."""
    if not patterns:
        return list(CHECKS)
    return [c for c in CHECKS if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]


def run_suite(
    api: ComputeAPI,
    hosts: list[str],
    notifications: NotificationCollector | None = None,
    checks: list[Check] | None = None,
    notification_timeout: float = 60.0,
    progress: Callable[[CheckResult], None] | None = None,
) -> SuiteResult:
    """Run ``checks`` (all by default) against the workers serving ``hosts``.

    :raises computed.exception.ComputedError: if the first host does not
        answer at all (nothing could be checked).
    """
    pong = api.ping(None, hosts[0])
    capabilities = api.get_capabilities(None, hosts[0])
    context = SuiteContext(api, hosts, capabilities, notifications, notification_timeout)
    suite = SuiteResult(capabilities.driver, capabilities.driver_version, pong.rpc_version, hosts)
    for item in checks if checks is not None else CHECKS:
        result = _run_one(item, context)
        suite.results.append(result)
        if progress is not None:
            progress(result)
    return suite


def _run_one(item: Check, context: SuiteContext) -> CheckResult:
    started = time.monotonic()
    try:
        item.run(context)
        outcome, message = PASS, ""
    except CheckSkipped as exc:
        outcome, message = SKIP, str(exc)
    except CheckFailed as exc:
        outcome, message = FAIL, str(exc)
    except exception.ComputedError as exc:
        outcome, message = FAIL, f"unexpected {type(exc).__name__}: {exc}"
    except Exception as exc:  # a check must never stop the suite
        outcome, message = FAIL, f"unexpected {type(exc).__name__}: {exc}"
    return CheckResult(item.id, item.purpose, outcome, message, time.monotonic() - started)
