"""The HTTP(S) listener of one emulated host: authentication, sealing, routing to WS-Man.

Rules, as a Windows WinRM listener with its defaults (AllowUnencrypted=false):

* 401 without credentials, advertising ``Negotiate`` (and ``Basic realm="WSMAN"``
  where Basic may be used: over HTTPS, or when unencrypted traffic is allowed);
* NTLM (sent as ``Negotiate`` or ``NTLM`` tokens) authenticates the keep-alive
  connection; over HTTP every later SOAP message on it must be sealed
  (``multipart/encrypted``); a plaintext SOAP body there is refused with 401,
  as real hosts do;
* Basic is checked on every request and refused over plain HTTP;
* a bad user name or password is a 401, which pywinrm raises as InvalidCredentialsError.
"""

from __future__ import annotations

import base64
import binascii
import collections
import logging
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .auth import (
    ENCRYPTED_CONTENT_TYPE,
    AuthFailed,
    CredentialStore,
    NtlmAcceptor,
    channel_bindings_for,
    decrypt_message,
    encrypt_message,
)
from .wsman import WSManService

__all__ = ["WinRMHTTPServer", "WireRecord"]

LOG = logging.getLogger(__name__)
_SOAP_TYPE = "application/soap+xml;charset=UTF-8"


@dataclass(frozen=True)
class WireRecord:
    """One request as it crossed the wire, for tests that inspect the transport."""

    method: str
    path: str
    authorization: str
    content_type: str
    body: bytes
    status: int
    user: str


class WinRMHTTPServer(ThreadingHTTPServer):
    """A threaded listener; each keep-alive connection gets its own handler thread."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        service: WSManService,
        store: CredentialStore,
        *,
        tls: ssl.SSLContext | None = None,
        certificate_der: bytes | None = None,
        allow_unencrypted: bool = False,
        wire_log_size: int = 500,
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.store = store
        self.tls = tls
        self.bindings = channel_bindings_for(certificate_der) if certificate_der else None
        self.allow_unencrypted = allow_unencrypted
        self.wire_log: collections.deque[WireRecord] = collections.deque(maxlen=wire_log_size)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._connections_lock:
            self._connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: WinRMHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    timeout = 300
    # A response goes out in two writes (headers, then body). With Nagle on,
    # the body waits for the client's delayed ACK of the headers, some 40 ms
    # per exchange (five exchanges per script), where HTTP.sys answers at once.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
        super().setup()
        self._ntlm: NtlmAcceptor | None = None

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s " + format, self.client_address[0], *args)

    # -- responses -------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self, token: bytes | None = None) -> None:
        self.send_response(401)
        if token is not None:
            self.send_header(
                "WWW-Authenticate", "Negotiate " + base64.b64encode(token).decode("ascii")
            )
        else:
            self.send_header("WWW-Authenticate", "Negotiate")
            if self._basic_allowed():
                self.send_header("WWW-Authenticate", 'Basic realm="WSMAN"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _basic_allowed(self) -> bool:
        return self.server.tls is not None or self.server.allow_unencrypted

    # -- requests ----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._send(405)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        authorization = self.headers.get("Authorization", "")
        content_type = self.headers.get("Content-Type", "")
        status, user = self._dispatch(body, authorization, content_type)
        self.server.wire_log.append(
            WireRecord(
                "POST", self.path, authorization.split(" ", 1)[0], content_type, body, status, user
            )
        )

    def _dispatch(self, body: bytes, authorization: str, content_type: str) -> tuple[int, str]:
        if self.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            self._send(404)
            return 404, ""
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            if not self._basic_allowed():
                self._challenge()
                return 401, ""
            try:
                user = self.server.store.check_basic(value.strip())
            except AuthFailed:
                self._challenge()
                return 401, ""
            return self._plain(body, user), user
        if scheme in ("negotiate", "ntlm"):
            return self._ntlm_step(value.strip(), body, content_type)
        if self._ntlm is not None and self._ntlm.complete:
            return self._sealed(body, content_type), self._ntlm.user
        self._challenge()
        return 401, ""

    def _ntlm_step(self, value: str, body: bytes, content_type: str) -> tuple[int, str]:
        try:
            token = base64.b64decode(value, validate=True)
        except binascii.Error:
            self._challenge()
            return 401, ""
        if not token.startswith(b"NTLMSSP\x00"):
            self._challenge()
            return 401, ""
        try:
            if token[8:12] == b"\x01\x00\x00\x00" or self._ntlm is None:
                self._ntlm = NtlmAcceptor(self.server.store, self.server.bindings)
            out = self._ntlm.step(token)
        except AuthFailed:
            self._ntlm = None
            self._challenge()
            return 401, ""
        if not self._ntlm.complete:
            self._challenge(out or b"")
            return 401, ""
        return self._sealed(body, content_type), self._ntlm.user

    def _sealed(self, body: bytes, content_type: str) -> int:
        """A request on an NTLM-authenticated connection."""
        assert self._ntlm is not None
        if not body:
            self._send(200)
            return 200
        if content_type.lower().startswith("multipart/encrypted"):
            try:
                plaintext = decrypt_message(self._ntlm, body)
            except (ValueError, AuthFailed, struct.error):
                self._ntlm = None
                self._challenge()
                return 401
            status, response = self.server.service.handle(plaintext, self._ntlm.user)
            self._send(status, encrypt_message(self._ntlm, response), ENCRYPTED_CONTENT_TYPE)
            return status
        if self.server.tls is None and not self.server.allow_unencrypted:
            self._challenge()
            return 401
        return self._plain(body, self._ntlm.user)

    def _plain(self, body: bytes, user: str) -> int:
        status, response = self.server.service.handle(body, user)
        self._send(status, response, _SOAP_TYPE)
        return status
