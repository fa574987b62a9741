"""The life cycle the private servers of :mod:`computed.testing` share.

A private server lives in a temporary directory of its own; starting it
either succeeds or leaves nothing behind; stopping it is idempotent and
removes the directory; the context manager stops it; and whatever is still
running when the interpreter exits is stopped then.  Each server says how to
find its programs, launch itself and halt; this module does the rest.

Private: the names here may change without notice.
"""

from __future__ import annotations

import abc
import atexit
import logging
import tempfile
import time
from typing import ClassVar, Self

from computed.testing import _procs

LOG = logging.getLogger(__name__)

#: How long a graceful stop may take before a server is killed.
STOP_TIMEOUT = 10.0

_LIVE: set[PrivateServer] = set()  # started and not stopped; stopped at exit


class PrivateServer(abc.ABC):
    """A server of the test run's own, in a temporary directory.

    :param workdir: directory to create the server's temporary directory in
        (default: the system temporary directory).  Only the temporary
        directory inside it is removed at stop.
    :param label: the server in messages (``RabbitMQ node x@localhost``).
    :param dir_prefix: the prefix of its temporary directory's name.
    """

    #: Seconds :meth:`start` waits for the server by default.
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, workdir: str | None, label: str, dir_prefix: str) -> None:
        self._parent = workdir
        self._label = label
        self._dir_prefix = dir_prefix
        self._dir: str | None = None

    @property
    def directory(self) -> str:
        """The server's temporary directory."""
        if self._dir is None:
            raise RuntimeError(f"{self._label} is not started")
        return self._dir

    def start(self, timeout: float | None = None) -> Self:
        """Create the directory, launch the server and wait until it is ready.

        :param timeout: seconds to wait (default :attr:`start_timeout`).
        :raises RuntimeError: if it is not ready in time; the message ends
            with the tail of the server's logs.  Everything started so far is
            stopped and removed.
        """
        if self._dir is not None:
            raise RuntimeError(f"{self._label} is already started")
        self._locate()
        begin = time.monotonic()
        try:
            self._dir = tempfile.mkdtemp(prefix=self._dir_prefix, dir=self._parent)
            self._launch(self.start_timeout if timeout is None else timeout)
        except BaseException:
            self.stop()
            raise
        _LIVE.add(self)
        LOG.info("%r ready in %.1f s", self, time.monotonic() - begin)
        return self

    def stop(self) -> None:
        """Stop the server (killing what does not stop within
        :data:`STOP_TIMEOUT` seconds), then remove the directory.  Idempotent."""
        try:
            self._halt()
        finally:
            _procs.remove_tree(self._dir)
            self._dir = None
            self._forget()
            _LIVE.discard(self)

    def __enter__(self) -> Self:
        if self._dir is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what each server says about itself -------------------------------------------

    def _locate(self) -> None:
        """Find the server's programs before anything is made.

        :raises RuntimeError: naming the package to install.
        """

    @abc.abstractmethod
    def _launch(self, timeout: float) -> None:
        """Fill the new directory, start the server, return once it is ready."""

    @abc.abstractmethod
    def _halt(self) -> None:
        """Stop whatever runs (nothing may); the directory is removed after."""

    def _forget(self) -> None:
        """Drop what belonged to the run just stopped (its ports, say)."""

    def _logs(self) -> list[str]:
        """The logs whose tail a failed start reports."""
        return []

    def _failure(self, reason: str, *logs: str) -> RuntimeError:
        """The error a failed start raises: ``reason``, then the tail of
        ``logs`` (by default :meth:`_logs`)."""
        parts = [f"{self._label} failed to start: {reason}"]
        if self._dir is not None:
            for path in logs or self._logs():
                parts.append(f"--- last lines of {path} ---\n{_procs.tail(path)}")
        return RuntimeError("\n".join(parts))


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        LOG.warning("stopping %r left running at exit", server)
        server.stop()
