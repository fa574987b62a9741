"""One WinRM client per Hyper-V host: pywinrm's ``Session.run_ps``, bounded in number and time.

Each script runs in a shell of its own (Create, Command, Receive, Signal,
Delete), on a pywinrm session lent by a :class:`~drivers.hyperv.sessions.SessionPool`:
NTLM authenticates a connection once (over http, it also seals every
message on it), so a script on a session an earlier one left needs no new
handshake; one session serves one script at a time. A semaphore bounds how many run on one host at once, well under
WinRM's per-user shell quota. pywinrm's read and operation timeouts bound
every HTTP exchange, so an unreachable host fails in bounded time.

Success is judged by the script's exit code, never by an empty stderr: hosts
write progress records there ("Preparing modules for first use.") even when
all goes well. The password is never logged, never put in an error, and
scrubbed from any text that comes back from the transport.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from computed import exception
from drivers.hyperv import constants, errors
from drivers.hyperv.powershell import Script, parse_error, parse_objects
from drivers.hyperv.sessions import SessionPool

__all__ = ["HostClient"]

LOG = logging.getLogger(__name__)


class HostClient:
    """Runs scripts on one Hyper-V host.

    :param host: the compute host name (for logs and errors).
    :param url: the host's WinRM endpoint, ``http(s)://name:port/wsman``.
    :param transport: ``ntlm`` or ``basic`` (https only).
    :raises ValueError: for a combination that would expose the password.
    """

    def __init__(
        self,
        host: str,
        url: str,
        *,
        username: str,
        password: str,
        transport: str = "ntlm",
        server_cert_validation: bool = True,
        ca_file: str | None = None,
        operation_timeout: int = 20,
        read_timeout: int = 30,
        max_sessions: int = 4,
    ) -> None:
        scheme = urlsplit(url).scheme
        if transport == "basic" and scheme != "https":
            raise ValueError(
                f"host {host}: Basic authentication over {scheme} would send the password "
                "in clear; use an https URL or transport = ntlm"
            )
        if operation_timeout >= read_timeout:
            raise ValueError("[hyperv] read_timeout must exceed operation_timeout")
        self.host = host
        self.url = url
        self._password = password
        self._session_args: dict[str, Any] = {
            "auth": (username, password),
            "transport": transport,
            "server_cert_validation": "validate" if server_cert_validation else "ignore",
            "ca_trust_path": ca_file or "legacy_requests",
            "operation_timeout_sec": operation_timeout,
            "read_timeout_sec": read_timeout,
            # Connect straight to the host: no proxy from the environment.
            "proxy": None,
        }
        self._slots = threading.BoundedSemaphore(max_sessions)
        self._sessions = SessionPool(url, self._session_args, max_sessions)

    def run(self, script: Script) -> list[dict[str, Any]]:
        """Run ``script``; its JSON output as a list of objects.

        :raises drivers.hyperv.powershell.PowerShellError: if the script failed (non-zero exit code).
        :raises computed.exception.DriverError: if the host could not run it
            (unreachable, credentials refused, WinRM fault, unreadable output).
        """
        started = time.monotonic()
        with self._slots:
            try:
                response = self._sessions.run_ps(script.text)
            except Exception as exc:
                raise self._transport_error(script, exc) from exc
        elapsed = time.monotonic() - started
        if response.status_code != 0:
            error = parse_error(script.name, response.std_err)
            LOG.debug("Host %s: %s failed in %.2f s: %s", self.host, script.name, elapsed, error)
            raise error
        LOG.debug("Host %s: %s ran in %.2f s", self.host, script.name, elapsed)
        try:
            return parse_objects(response.std_out)
        except ValueError as exc:
            raise exception.DriverError(
                driver=constants.DRIVER,
                host=self.host,
                reason=f"{script.name}: unreadable output from PowerShell ({exc})",
            ) from exc

    def close(self) -> None:
        """Close the idle sessions' connections."""
        self._sessions.close()

    # ----------------------------------------------------------------------

    def _transport_error(self, script: Script, exc: Exception) -> exception.ComputedError:
        reason = errors.describe_transport_error(exc, self.url)
        reason = reason.replace(self._password, "***") if self._password else reason
        LOG.warning("Host %s: %s could not run: %s", self.host, script.name, reason)
        return exception.DriverError(
            driver=constants.DRIVER, host=self.host, reason=f"{script.name}: {reason}"
        )
