"""HTTP/HTTPS XML-RPC transport and the :class:`XapiTestServer` facade.

One listener per pool: each pool has its own port (and URL), like a real pool
whose master answers on its own address. Requests are served by
``xmlrpc.server`` in one thread per connection (HTTP/1.1 keep-alive, as the
``XenAPI`` client reuses its connection). With TLS the handshake happens in
the connection's thread, so a silent client cannot stall the listener.
"""

from __future__ import annotations

import os
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from . import storage
from .api import Dispatcher
from .state import Fault, PoolSpec, PoolState, ProgressHold


def make_self_signed_cert(directory: str | os.PathLike[str]) -> tuple[str, str]:
    """Write a self-signed certificate for localhost/127.0.0.1 into ``directory``.

    Uses ``cryptography`` when importable, else the ``openssl`` command.
    Returns ``(certfile, keyfile)``.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    certfile = os.path.join(directory, "xapi-test-cert.pem")
    keyfile = os.path.join(directory, "xapi-test-key.pem")
    try:
        _cert_with_cryptography(certfile, keyfile)
    except ImportError:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-keyout",
                keyfile,
                "-out",
                certfile,
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return certfile, keyfile


def _cert_with_cryptography(certfile: str, keyfile: str) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=31))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with open(keyfile, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(certfile, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))


class _Handler(SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"
    rpc_paths = ("/", "/RPC2")
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Listener(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """XML-RPC server for one pool; tracks connections so stop() can cut them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], dispatcher: Dispatcher, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.dispatcher = dispatcher
        self.ssl_context = ssl_context
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(
            address,
            requestHandler=_Handler,
            logRequests=False,
            allow_none=False,
            encoding="utf-8",
            bind_and_activate=True,
        )

    def _dispatch(self, method: str, params: Iterable[Any]) -> Any:
        return self.dispatcher.dispatch(method, tuple(params))

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        if self.ssl_context is not None:
            try:
                request.settimeout(10)
                conn = self.ssl_context.wrap_socket(request, server_side=True)
                conn.settimeout(None)
            except (OSError, ssl.SSLError):
                request.close()
                return
        with self.conn_lock:
            self.connections.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self.conn_lock:
                self.connections.discard(conn)
            if conn is not request:
                conn.close()

    def cut_connections(self) -> None:
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class XapiTestServer:
    """Serves one or more simulated pools, each on its own port.

    ``pools``: :class:`PoolSpec` objects or ``"NAME:user:password[:host,...]"``
    strings. ``tls``: False, True (self-signed certificate made in a temporary
    directory) or ``(certfile, keyfile)``. ``port``: 0 for ephemeral ports,
    else the first pool's port (the next pools take the following ones).
    """

    def __init__(
        self,
        pools: Iterable[PoolSpec | str] = ("pool1:root:password",),
        tls: bool | tuple[str, str] = False,
        host: str = "127.0.0.1",
        port: int = 0,
        session_ttl: float | None = None,
        testing_api: bool = True,
    ) -> None:
        self.specs = [PoolSpec.coerce(p) for p in pools]
        names = [s.name for s in self.specs]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"pool names must be given and unique: {names}")
        self.host = host
        self.port = port
        self.tls = tls
        self.testing_api = testing_api
        self.pools = {s.name: PoolState(s, session_ttl=session_ttl) for s in self.specs}
        self.listeners: dict[str, _Listener] = {}
        self.threads: list[threading.Thread] = []
        self.certfile: str | None = None
        self.keyfile: str | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------ lifecycle

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        if isinstance(self.tls, (tuple, list)):
            self.certfile, self.keyfile = self.tls
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="xapi-test-tls-")
            self.certfile, self.keyfile = make_self_signed_cert(self._tmpdir.name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx

    def start(self) -> XapiTestServer:
        if self.listeners:
            return self
        ctx = self._ssl_context()
        try:
            for index, spec in enumerate(self.specs):
                port = self.port + index if self.port else 0
                listener = _Listener(
                    (self.host, port), Dispatcher(self.pools[spec.name], self.testing_api), ctx
                )
                self.listeners[spec.name] = listener
                thread = threading.Thread(
                    target=listener.serve_forever,
                    kwargs={"poll_interval": 0.1},
                    name=f"xapi-test-{spec.name}",
                    daemon=True,
                )
                thread.start()
                self.threads.append(thread)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for listener in self.listeners.values():
            listener.shutdown()
            listener.server_close()
            listener.cut_connections()
        for thread in self.threads:
            thread.join(timeout=5)
        self.listeners.clear()
        self.threads.clear()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> XapiTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def urls(self) -> dict[str, str]:
        scheme = "https" if self.tls else "http"
        return {
            name: f"{scheme}://{self.host}:{lst.server_address[1]}/"
            for name, lst in self.listeners.items()
        }

    @property
    def url(self) -> str:
        """URL of the first pool."""
        return self.urls[self.specs[0].name]

    def url_for(self, pool: str) -> str:
        return self.urls[pool]

    def pool(self, name: str | None = None) -> PoolState:
        return self.pools[name or self.specs[0].name]

    # ------------------------------------------------------------ test controls

    def expire_sessions(self, pool: str | None = None) -> int:
        """Invalidate every session (of one pool, or of all pools)."""
        targets = [self.pool(pool)] if pool else list(self.pools.values())
        return sum(p.expire_sessions() for p in targets)

    def set_session_ttl(self, seconds: float | None, pool: str | None = None) -> None:
        for p in [self.pool(pool)] if pool else self.pools.values():
            p.session_ttl = seconds

    def inject_failure(
        self,
        method: str,
        description: Sequence[str],
        *,
        pool: str | None = None,
        count: int | None = 1,
        ref: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (e.g. ``"VM.start"``), optionally
        only those naming ``ref``, fail with ``description`` ([CODE, params...])."""
        self.pool(pool).inject(Fault(method, [str(d) for d in description], delay, count, ref))

    def set_delay(
        self,
        method: str,
        seconds: float,
        *,
        pool: str | None = None,
        count: int | None = None,
        ref: str | None = None,
    ) -> None:
        """Make calls of ``method`` take ``seconds`` longer (VM operations stay
        in the VM's current_operations meanwhile)."""
        self.pool(pool).inject(Fault(method, None, seconds, count, ref))

    def clear_faults(self, pool: str | None = None) -> None:
        for p in [self.pool(pool)] if pool else self.pools.values():
            p.clear_faults()

    def hold_progress(self, method: str, at: float, pool: str | None = None) -> ProgressHold:
        """Stop tasks of ``method`` (e.g. ``"VM.snapshot"``) once their progress
        reaches ``at`` (0 to 1), until ``release()``; ``reached`` is set then."""
        return self.pool(pool).hold(method, at)

    def set_copy_time(self, seconds: float, pool: str | None = None) -> None:
        """How long a disk copy (``VM.snapshot``) takes, its task advancing meanwhile."""
        for p in [self.pool(pool)] if pool else self.pools.values():
            p.copy_time = seconds

    def set_vm_power_state(self, vm_ref: str, state: str, pool: str | None = None) -> None:
        """Simulate a guest-side power change (crash, poweroff from inside...)."""
        from .vmops import set_power_state

        set_power_state(self.pool(pool), vm_ref, state)

    def set_host_live(self, host: str, live: bool, pool: str | None = None) -> None:
        """Stop (or restart) the heartbeat of ``host`` (a name or a ref): xapi then
        shows it not live and disabled, its VMs still resident on it."""
        from .migration import host_by_name, set_host_live

        state = self.pool(pool)
        set_host_live(state, host_by_name(state, host), live)

    # ------------------------------------------------------------ storage backends

    def add_iscsi_lun(
        self,
        iqn: str,
        portal: str,
        lun: int,
        size: int,
        *,
        chap: tuple[str, str] | None = None,
        pool: str | None = None,
    ) -> str:
        """Export LUN ``lun`` of ``size`` bytes from target ``iqn`` at ``portal``
        (``host[:port]``), as a storage array would; returns the uuid its VDI
        gets when an ``iscsi`` SR of the target is scanned."""
        state = self.pool(pool)
        with state.lock:
            return state.backends.add_lun(iqn, portal, lun, size, chap).vdi_uuid

    def resize_iscsi_lun(self, iqn: str, lun: int, size: int, pool: str | None = None) -> None:
        """Grow (or shrink) a LUN on the array; xapi sees it at the next SR.scan."""
        state = self.pool(pool)
        with state.lock:
            state.backends.targets[iqn].luns[str(lun)].size = size

    def add_image(self, name: str, size: int, pool: str | None = None) -> str:
        """Import image ``name`` (``size`` bytes) into the default SR as a VDI of
        that name, as an operator would with ``xe vdi-import``; returns its ref."""
        return storage.add_image(self.pool(pool), name, size)

    def add_nfs_vdi(
        self, server: str, path: str, vdi_uuid: str, size: int, pool: str | None = None
    ) -> None:
        """Put the VHD file of VDI ``vdi_uuid`` (``size`` bytes) on export ``server:path``."""
        state = self.pool(pool)
        with state.lock:
            state.backends.exports.setdefault((server, path), {})[vdi_uuid] = size
