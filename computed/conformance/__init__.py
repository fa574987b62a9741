"""The conformance suite: proves over the bus that a driver honours the contract.

It drives a live worker through :class:`rpcapi.ComputeAPI`, exactly as a
scheduler would, so it checks the driver, the worker around it and the wire
between them together. Run it with the ``computed-conformance`` command, or
from Python::

    from computed.conformance import run_suite
    result = run_suite(api, ["host-1"], notifications=collector)
    print(result.tier, result.failing)

Each check has a stable id and a one-line purpose; the ids are what CI jobs
and the registry record. The suite carries no per-driver exceptions: a
driver that cannot do something declares it in its capabilities, and the
suite then checks that the operation is refused with UnsupportedOperation.
"""

from __future__ import annotations

from computed.conformance.checks import CHECKS, Check
from computed.conformance.runner import CheckResult, GroupResult, SuiteResult, run_suite

__all__ = ["CHECKS", "Check", "CheckResult", "GroupResult", "SuiteResult", "run_suite"]
