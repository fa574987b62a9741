"""Running the checks and summing up what they found: per check, per operation group, overall.

Each operation group of :data:`drivers.base.OPERATION_GROUPS` gets its own
result, so a driver may be conformant for the lifecycle and partial for
volumes:

* ``conformant``: the driver declares some of the group's operations, and
  at least one of its checks ran and none failed;
* ``partial``: a check of the group failed;
* ``untested``: the driver declares some of the group's operations but none
  of its checks ran (all skipped, or left out with ``--only``);
* ``not claimed``: the driver declares none of the group's operations (its
  ``unsupported.*`` checks still prove that they are refused).

The overall tier, which the registry records and the client's
``[conformance] required_tier`` reads, is unchanged: conformant when no
check failed, partial otherwise; that is, partial as soon as any group is.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from computed import exception
from computed.conf.conformance import DEFAULT_IMAGE, DEFAULT_NETWORK, DEFAULT_VOLUME_PATH
from computed.conformance._context import CheckFailed, CheckSkipped, SuiteContext
from computed.conformance.checks import CHECKS, Check
from computed.registry.api import ConformanceRecord
from computed.testing.notifications import NotificationCollector
from drivers.base import OPERATION_GROUPS, SupportTier
from rpcapi import ComputeAPI

__all__ = ["CheckResult", "GroupResult", "SuiteResult", "run_suite", "select_checks"]

PASS, FAIL, SKIP = "pass", "fail", "skip"

#: The result of a group whose operations the driver does not declare.
NOT_CLAIMED = "not claimed"


@dataclass(frozen=True)
class CheckResult:
    id: str
    purpose: str
    outcome: str
    message: str
    seconds: float
    group: str = "lifecycle"


@dataclass(frozen=True)
class GroupResult:
    """What the checks of one operation group found."""

    group: str
    #: conformant, partial, untested or not claimed (see the module's docstring).
    result: str
    passed: int
    failed: int
    skipped: int
    failing: tuple[str, ...]


@dataclass
class SuiteResult:
    driver: str
    driver_version: str
    rpc_version: str
    hosts: list[str]
    results: list[CheckResult] = field(default_factory=list)
    #: The operations the driver declares (its capabilities).
    operations: frozenset[str] = frozenset()

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    def groups(self) -> list[GroupResult]:
        """One result per operation group, in :data:`~drivers.base.OPERATION_GROUPS` order."""
        return [self._group(name, operations) for name, operations in OPERATION_GROUPS.items()]

    def _group(self, name: str, operations: tuple[str, ...]) -> GroupResult:
        results = [r for r in self.results if r.group == name]
        passed, failed, skipped = (
            sum(1 for r in results if r.outcome == outcome) for outcome in (PASS, FAIL, SKIP)
        )
        if failed:
            verdict = SupportTier.PARTIAL.value
        elif not self.operations & set(operations):
            verdict = NOT_CLAIMED
        elif passed:
            verdict = SupportTier.CONFORMANT.value
        else:
            verdict = SupportTier.UNTESTED.value
        failing = tuple(r.id for r in results if r.outcome == FAIL)
        return GroupResult(name, verdict, passed, failed, skipped, failing)

    @property
    def failing(self) -> list[str]:
        return [r.id for r in self.results if r.outcome == FAIL]

    @property
    def tier(self) -> str:
        """Conformant when nothing failed; partial otherwise (when any group is)."""
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
    network: str = DEFAULT_NETWORK,
    volume_path: str = DEFAULT_VOLUME_PATH,
    image: str = DEFAULT_IMAGE,
    volume_command: str | None = None,
    volume_extend_command: str | None = None,
    hypervisor_command: str | None = None,
) -> SuiteResult:
    """Run ``checks`` (all by default) against the workers serving ``hosts``.

    :param network: a network the hosts have, for the interface checks.
    :param volume_path: a file the hosts can attach as a ``file`` volume.
    :param image: an image the hosts have, for root disks.
    :param volume_command: makes volumes the hosts can attach (``[conformance]
        volume_command``).
    :param volume_extend_command: grows them (``[conformance] volume_extend_command``).
    :param hypervisor_command: changes instances behind the worker's back
        (``[conformance] hypervisor_command``), for the event checks.

    :raises computed.exception.ComputedError: if the first host does not
        answer at all (nothing could be checked).
    """
    pong = api.ping(None, hosts[0])
    capabilities = api.get_capabilities(None, hosts[0])
    context = SuiteContext(
        api,
        hosts,
        capabilities,
        notifications,
        notification_timeout,
        network,
        volume_path,
        image,
        volume_command,
        volume_extend_command,
        hypervisor_command,
    )
    suite = SuiteResult(
        capabilities.driver,
        capabilities.driver_version,
        pong.rpc_version,
        hosts,
        operations=frozenset(capabilities.operations),
    )
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
    seconds = time.monotonic() - started
    return CheckResult(item.id, item.purpose, outcome, message, seconds, item.group)
