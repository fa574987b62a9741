"""Loading drivers from the ``computed.drivers`` entry-point namespace with stevedore."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from oslo_config import cfg
from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exception

from computed import exception
from drivers.base import ComputeDriver

__all__ = ["NAMESPACE", "available_drivers", "load_driver"]

NAMESPACE = "computed.drivers"


def available_drivers() -> list[str]:
    """Names registered in the namespace, whether or not they import."""
    return sorted({ep.name for ep in metadata.entry_points(group=NAMESPACE)})


def load_driver(name: str | None, conf: cfg.ConfigOpts) -> ComputeDriver:
    """Import the named driver, register its options and instantiate it.

    The class's :attr:`~drivers.base.ComputeDriver.name` must be ``name``,
    the entry point's.

    :raises computed.exception.DriverLoadError: naming the driver and the cause.
    """
    if not name:
        raise exception.DriverLoadError(
            driver="", reason=f"no driver configured; choose one of: {_choices()}"
        )
    failures: list[BaseException] = []

    def _failed(_manager: Any, _entrypoint: Any, exc: BaseException) -> None:
        failures.append(exc)

    try:
        manager = stevedore_driver.DriverManager(
            NAMESPACE,
            name,
            invoke_on_load=False,
            on_load_failure_callback=_failed,
            on_missing_entrypoints_callback=None,
        )
        driver_class = manager.driver
    except stevedore_exception.NoMatches:
        reason = (
            f"{type(failures[0]).__name__}: {failures[0]}"
            if failures
            else f"no such driver; installed drivers: {_choices()}"
        )
        raise exception.DriverLoadError(driver=name, reason=reason) from None
    if not (isinstance(driver_class, type) and issubclass(driver_class, ComputeDriver)):
        raise exception.DriverLoadError(
            driver=name, reason=f"{driver_class!r} is not a drivers.base.ComputeDriver subclass"
        )
    if driver_class.name != name:
        # The registry, capabilities, tiers and ping all know a driver by
        # its name; two names for one driver would split its records.
        raise exception.DriverLoadError(
            driver=name,
            reason=f"its class {driver_class.__module__}.{driver_class.__qualname__} is named "
            f"{driver_class.name!r}: a driver's name must be its entry-point name "
            f"(set name = {name!r}, or register the entry point as {driver_class.name!r})",
        )
    try:
        driver_class.register_opts(conf)
        return driver_class(conf)
    except exception.ComputedError:
        raise
    except Exception as exc:
        raise exception.DriverLoadError(driver=name, reason=f"{type(exc).__name__}: {exc}") from exc


def _choices() -> str:
    return ", ".join(available_drivers()) or "(none installed)"
