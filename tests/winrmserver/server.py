"""WinRMTestServer: one WinRM listener per emulated Hyper-V host, in a thread.

    with WinRMTestServer(users={"admin": "pw"}) as server:
        session = winrm.Session(server.url, auth=("admin", "pw"), transport="ntlm")
        session.run_ps("Get-VM | ConvertTo-Json")

Each host gets its own port (pywinrm only talks to ``/wsman``), so
``server.urls[name]`` is the endpoint of host ``name`` and ``server.url`` that of
the first one. With ``tls=(cert, key)`` the listeners speak HTTPS, where Basic
authentication is allowed and NTLM is not sealed (TLS protects it).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterable
from types import TracebackType

from .auth import CredentialStore
from .httpd import WinRMHTTPServer, WireRecord
from .hvmigration import MigrationRules
from .hyperv import HyperVHost
from .powershell import ShellOptions
from .wsman import WSManService

__all__ = ["WinRMTestServer", "make_self_signed_cert"]


def make_self_signed_cert(
    directory: str | os.PathLike[str], common_name: str = "localhost"
) -> tuple[str, str]:
    """Write ``cert.pem`` and ``key.pem`` (RSA 2048, SHA-256, for localhost/127.0.0.1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(common_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(os.fspath(directory), "cert.pem")
    key_path = os.path.join(os.fspath(directory), "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class WinRMTestServer:
    """WS-Management endpoints for emulated Hyper-V hosts, driven by unmodified pywinrm.

    :param users: accepted accounts, ``{"user": "password"}`` (``DOMAIN\\user`` allowed).
    :param hosts: host names or :class:`HyperVHost` objects (default: one ``HV01``).
    :param tls: ``(cert_path, key_path)`` to serve HTTPS instead of HTTP.
    :param port: first port to bind; 0 picks free ports.
    :param allow_unencrypted: accept Basic and unsealed NTLM over plain HTTP
        (WinRM's AllowUnencrypted=true); off by default as on Windows.
    :param console_width: width errors are wrapped at on stderr (None: no wrapping).
    :param module_progress: emit the "Preparing modules for first use." progress
        record when a script first uses a Hyper-V cmdlet.
    :param receive_timeouts: Receive operation-timeout faults to send before each
        command's output (pywinrm retries them silently).
    :param error_messages: ``en-US`` (default), ``de-DE`` for a host whose
        PowerShell words every error in another language (error ids and
        categories unchanged), or ``none`` for one that sends no stderr at all.
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        hosts: Iterable[HyperVHost | str] | HyperVHost | str | None = None,
        tls: tuple[str, str] | None = None,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        allow_unencrypted: bool = False,
        console_width: int | None = 80,
        module_progress: bool = True,
        max_shells_per_user: int = 30,
        receive_chunk_bytes: int = 64 * 1024,
        receive_timeouts: int = 0,
        error_messages: str = "en-US",
    ) -> None:
        if hosts is None:
            hosts = [HyperVHost()]
        elif isinstance(hosts, (HyperVHost, str)):
            hosts = [hosts]
        self.hosts = [h if isinstance(h, HyperVHost) else HyperVHost(h) for h in hosts]
        if not self.hosts or len({h.name.lower() for h in self.hosts}) != len(self.hosts):
            raise ValueError("hosts must be non-empty and uniquely named")
        # One fabric: Move-VM on any host reaches the others by name.
        fabric: dict[str, MigrationRules] = {h.name.lower(): h for h in self.hosts}
        for h in self.hosts:
            h.fabric = fabric
        self.users = dict(users or {"Administrator": "Password01"})
        self.tls = tls
        self.bind = bind
        self.port = port
        self.allow_unencrypted = allow_unencrypted
        self.options = ShellOptions(
            console_width=console_width,
            module_progress=module_progress,
            error_messages=error_messages,
        )
        self.max_shells_per_user = max_shells_per_user
        self.receive_chunk_bytes = receive_chunk_bytes
        self.receive_timeouts = receive_timeouts
        self.urls: dict[str, str] = {}
        self._servers: list[WinRMHTTPServer] = []
        self._services: dict[str, WSManService] = {}
        self._threads: list[threading.Thread] = []
        self._store: CredentialStore | None = None

    @property
    def url(self) -> str:
        """The endpoint of the first host, e.g. ``http://127.0.0.1:41234/wsman``."""
        if not self.urls:
            raise RuntimeError("the server is not started")
        return self.urls[self.hosts[0].name]

    def host(self, name: str | None = None) -> HyperVHost:
        if name is None:
            return self.hosts[0]
        return next(h for h in self.hosts if h.name.lower() == name.lower())

    def open_shells(self, name: str | None = None) -> int:
        """Shells created and not yet deleted on a host (a leak detector)."""
        return self._services[self.host(name).name].open_shells()

    def drop_connections(self) -> None:
        """Close every open client connection, as a host whose WinRM service restarts does."""
        for server in self._servers:
            server.close_connections()

    @property
    def wire_log(self) -> list[WireRecord]:
        """Every request received so far (all hosts), oldest first."""
        return [record for server in self._servers for record in server.wire_log]

    def start(self) -> WinRMTestServer:
        if self._servers:
            return self
        self._store = CredentialStore(self.users)
        context, der = self._tls_context()
        scheme = "https" if context else "http"
        try:
            for index, host in enumerate(self.hosts):
                port = self.port + index if self.port else 0
                service = WSManService(
                    host,
                    self.options,
                    max_shells_per_user=self.max_shells_per_user,
                    receive_chunk_bytes=self.receive_chunk_bytes,
                    receive_timeouts=self.receive_timeouts,
                )
                server = WinRMHTTPServer(
                    (self.bind, port),
                    service,
                    self._store,
                    tls=context,
                    certificate_der=der,
                    allow_unencrypted=self.allow_unencrypted,
                )
                url_host = f"[{self.bind}]" if ":" in self.bind else self.bind
                url = f"{scheme}://{url_host}:{server.server_address[1]}/wsman"
                service.address = url
                self.urls[host.name] = url
                self._services[host.name] = service
                self._servers.append(server)
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.1},
                    name=f"winrm-{host.name}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        return self

    def _tls_context(self) -> tuple[ssl.SSLContext | None, bytes | None]:
        if self.tls is None:
            return None, None
        cert_path, key_path = self.tls
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        with open(cert_path, encoding="ascii") as handle:
            der = ssl.PEM_cert_to_DER_cert(handle.read())
        return context, der

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        self._services.clear()
        self.urls.clear()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> WinRMTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
