"""pywinrm sessions kept between scripts, so each script skips the NTLM handshake.

pywinrm's ``Session`` authenticates its HTTP connection once (NTLM, and over
http the key that seals every message) and keeps it alive; what it does not
do is share one connection between threads. A :class:`SessionPool` lends
each script a session of its own, takes it back when the script is done
and drops it when anything went wrong, so a connection is only ever reused
after a clean exchange. A connection the host closed while it sat idle fails
when the next script opens its shell, before anything ran: that script gets
a fresh session and goes on.
"""

from __future__ import annotations

import threading
from base64 import b64encode
from typing import Any

import winrm

__all__ = ["SessionPool"]


class SessionPool:
    """Idle pywinrm sessions to one WinRM endpoint; at most ``size`` are kept."""

    def __init__(self, url: str, session_args: dict[str, Any], size: int) -> None:
        self._url = url
        self._args = session_args
        self._size = size
        self._idle: list[winrm.Session] = []
        self._lock = threading.Lock()

    def run_ps(self, script: str) -> winrm.Response:
        """Run ``script`` as pywinrm's ``Session.run_ps`` does, on a pooled session."""
        session, reused = self._take()
        try:
            shell_id = session.protocol.open_shell()
        except Exception:
            self._discard(session)
            if not reused:
                raise
            session = self._new()  # the idle connection was closed: nothing ran yet
            shell_id = session.protocol.open_shell()
        encoded = b64encode(script.encode("utf_16_le")).decode("ascii")
        try:
            protocol = session.protocol
            command_id = protocol.run_command(shell_id, f"powershell -encodedcommand {encoded}")
            response = winrm.Response(protocol.get_command_output(shell_id, command_id))
            protocol.cleanup_command(shell_id, command_id)
            protocol.close_shell(shell_id, close_session=False)
        except Exception:
            self._discard(session)
            raise
        if response.std_err:
            response.std_err = session._clean_error_msg(response.std_err)
        self._give(session)
        return response

    def close(self) -> None:
        """Close every idle session's connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for session in idle:
            self._discard(session)

    # ----------------------------------------------------------------------

    def _new(self) -> winrm.Session:
        return winrm.Session(self._url, **self._args)

    def _take(self) -> tuple[winrm.Session, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._new(), False

    def _give(self, session: winrm.Session) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(session)
                return
        self._discard(session)

    @staticmethod
    def _discard(session: winrm.Session) -> None:
        try:
            session.protocol.transport.close_session()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail too
            pass
