"""The hosts a real driver serves, and the boundary its backend calls cross.

Each in-tree driver keeps one backend handle per served host (a libvirt
connection, a xapi pool session, a WinRM client) and wraps every backend
call the same way: find the host's handle, refusing a host this worker does
not serve; run the call; map the backend's errors onto the project's with
``raise ... from``, as :mod:`drivers.base` requires.
:class:`ServedHosts` does that once; each driver gives it the backend's
exception types and its own mapping.

Private to the in-tree drivers: not part of the driver contract, which is
:mod:`drivers.base` alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from computed import exception

__all__ = ["ServedHosts", "Translate"]

H = TypeVar("H")
T = TypeVar("T")
E = TypeVar("E", bound=Exception)
E_contra = TypeVar("E_contra", bound=Exception, contravariant=True)


class Translate(Protocol[E_contra]):
    """A driver's mapping of one backend error onto the project's exception."""

    def __call__(
        self, exc: E_contra, /, *, host: str, operation: str, uuid: str | None
    ) -> exception.ComputedError: ...


class ServedHosts(Generic[H, E]):
    """The served hosts' backend handles, and the calls made through them.

    :param driver: the driver's name, for the errors raised here.
    :param failures: the backend's exception types that :meth:`call` maps.
    :param translate: maps one of those onto the project's exception.
    """

    def __init__(self, driver: str, failures: tuple[type[E], ...], translate: Translate[E]) -> None:
        self._driver = driver
        self._failures = failures
        self._translate = translate
        self._handles: dict[str, H] = {}
        self._lock = threading.Lock()

    def serve(self, host: str, handle: H) -> H | None:
        """Serve ``host`` through ``handle`` from now on; return the handle it replaces."""
        with self._lock:
            previous = self._handles.get(host)
            self._handles[host] = handle
        return previous

    def release(self, host: str) -> H | None:
        """Stop serving ``host``; return its handle, for the caller to close."""
        with self._lock:
            return self._handles.pop(host, None)

    def handles(self) -> list[H]:
        """The handles of every served host."""
        with self._lock:
            return list(self._handles.values())

    def __getitem__(self, host: str) -> H:
        """The handle of ``host``.

        :raises computed.exception.DriverError: if this worker does not serve it.
        """
        with self._lock:
            handle = self._handles.get(host)
        if handle is None:
            raise exception.DriverError(
                driver=self._driver, host=host, reason="host is not served by this worker"
            )
        return handle

    def call(
        self,
        host: str,
        operation: str,
        uuid: str | None,
        func: Callable[[H], T],
        handle: H | None = None,
    ) -> T:
        """Run ``func`` with the host's handle (or ``handle``, for a host not
        served yet), mapping the backend's errors at the boundary.

        :param operation: the contract operation, or a transition key such as
            ``reboot.hard``, for the mapped error.
        :param uuid: the instance concerned, if any.
        :raises computed.exception.ComputedError: what the backend's error
            maps onto, raised from it.
        """
        if handle is None:
            handle = self[host]
        try:
            return func(handle)
        except self._failures as exc:
            raise self._translate(exc, host=host, operation=operation, uuid=uuid) from exc
