"""Private RabbitMQ for tests, loopback only, in a temporary directory: one
node, or a cluster of several.

::

    with RabbitMQBroker() as broker:
        transport_url = broker.url      # rabbit://guest:guest@127.0.0.1:<port>/

    with RabbitMQCluster() as cluster:  # three nodes, clustered
        transport_url = cluster.url     # rabbit://guest:guest@127.0.0.1:<p0>,...:<p2>/
        cluster.nodes[0].kill()         # clients fail over to the next host

    with RabbitMQBroker(tls=make_certificates(tmp)) as broker:
        transport_url = broker.url      # a TLS listener only, on broker.port

Every broker picks its own free ports at :meth:`RabbitMQBroker.start` (AMQP,
Erlang distribution, and an epmd of its own through ``ERL_EPMD_PORT``), so
several brokers can run side by side, next to a system RabbitMQ, without
touching each other.  Its data, logs, pid file and configuration all live in
one temporary directory that :meth:`RabbitMQBroker.stop` removes.  The nodes
of a :class:`RabbitMQCluster` share one epmd, which is how Erlang nodes on
one machine find each other, and their directories sit in the cluster's.

Which user runs the RabbitMQ tools matters because Erlang nodes authenticate
each other with a cookie read from ``$HOME/.erlang.cookie``:

* as root, the server and every ``rabbitmqctl`` run as the ``rabbitmq`` user
  with its home, exactly as Debian's ``/usr/sbin/rabbitmqctl`` wrapper does
  (calling ``/usr/lib/rabbitmq/bin/rabbitmqctl`` as root would make a new
  cookie in ``/root`` that the node does not know).  We switch users
  ourselves instead of going through the wrapper, whose ``su -c`` re-parses
  arguments through a shell;
* as any other user, they run directly with that user's ``$HOME`` cookie
  (the ``/usr/sbin`` wrapper refuses to run for such users).
"""

from __future__ import annotations

import abc
import contextlib
import glob
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import ssl
import string
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

from computed.testing import _procs, _server

if TYPE_CHECKING:
    from computed.testing.tls import TLSFiles

__all__ = ["RabbitMQBroker", "RabbitMQCluster"]

LOG = logging.getLogger(__name__)

#: How long a graceful stop may take before the node is killed.
STOP_TIMEOUT = _server.STOP_TIMEOUT

_DEBIAN_BIN_DIR = "/usr/lib/rabbitmq/bin"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _find_bin_dir() -> str:
    if os.path.isfile(os.path.join(_DEBIAN_BIN_DIR, "rabbitmq-server")):
        return _DEBIAN_BIN_DIR
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("rabbitmq-server", path=path)
    if found:
        return os.path.dirname(os.path.realpath(found))
    raise RuntimeError(
        "rabbitmq-server is not installed: install the rabbitmq-server package "
        "(tools/bootstrap.sh does so on Debian when run as root)"
    )


def _find_epmd() -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/lib/erlang/bin"])
    found = shutil.which("epmd", path=path)
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
    if candidates:
        return candidates[-1]
    raise RuntimeError("epmd (Erlang) is not installed: install the rabbitmq-server package")


def _node_name(name: str | None) -> str:
    if name is not None and not _NAME_RE.match(name):
        raise ValueError(f"invalid node name {name!r}: use letters, digits, '-' and '_'")
    return name or f"computed-{os.getpid()}-{secrets.token_hex(4)}"


def _url(scheme: str, ports: Sequence[int], vhost: str, user: str, password: str) -> str:
    """A URL naming every port as a host; oslo.messaging fails over between them."""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
    hosts = ",".join(f"{auth}@{_procs.LOOPBACK}:{port}" for port in ports)
    return f"{scheme}://{hosts}/{'' if vhost == '/' else quote(vhost, safe='')}"


def _base_env(user: pwd.struct_passwd | None) -> dict[str, str]:
    """Our environment without RabbitMQ's and Erlang's settings, as ``user``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    env.setdefault("LANG", "C.UTF-8")
    env.setdefault("LC_ALL", "C.UTF-8")
    if "HOME" not in env and user is None:
        env["HOME"] = os.path.expanduser("~")
    return _procs.user_env(user, env)


def _start_epmd(
    port: int, directory: str, log: str, user: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    """An epmd on 127.0.0.1:``port``, listening when this returns.

    :raises RuntimeError: saying why it is not.
    """
    with open(log, "ab") as out:
        epmd = _procs.popen(
            [_find_epmd(), "-port", str(port), "-address", _procs.LOOPBACK],
            user=user,
            env=_base_env(user),
            cwd=directory,
            stdout=out,
        )
    try:
        _procs.await_ready(epmd, lambda: _procs.port_open(port), 10)
    except BaseException:
        _procs.end_process(epmd)
        raise
    return epmd


class _Management(abc.ABC):
    """``rabbitmqctl`` commands tests use, for a node or a whole cluster."""

    @abc.abstractmethod
    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n <node> *args`` as the right user; return stdout.

        :raises RuntimeError: with its stderr if it fails.
        """

    def add_vhost(self, name: str) -> None:
        self.rabbitmqctl("add_vhost", name)

    def file_handles(self) -> dict[str, int]:
        """The node's file handle accounting (``file_handle_cache:info()``).

        ``total_limit`` is what the node allows from its open-file limit,
        ``total_used`` what it has handed out. Past the limit a new
        connection waits for a handle, and a client sees a connect timeout:
        RabbitMQ 3.10 reserves handles for each quorum queue whether or not
        it has messages.
        """
        out = self.rabbitmqctl("eval", "file_handle_cache:info().")
        return {key: int(value) for key, value in re.findall(r"\{(\w+),(\d+)\}", out)}

    def add_user(self, user: str, password: str) -> None:
        self.rabbitmqctl("add_user", user, password)

    def set_permissions(
        self, vhost: str, user: str, conf: str = ".*", write: str = ".*", read: str = ".*"
    ) -> None:
        self.rabbitmqctl("set_permissions", "-p", vhost, user, conf, write, read)

    def list_queues(self, vhost: str = "/") -> dict[str, int]:
        """``{queue name: ready + unacknowledged messages}`` in ``vhost``."""
        return self._queue_column(vhost, "messages")

    def consumers(self, vhost: str = "/") -> dict[str, int]:
        """``{queue name: number of consumers}`` in ``vhost``."""
        return self._queue_column(vhost, "consumers")

    def _queue_column(self, vhost: str, column: str) -> dict[str, int]:
        out = self.rabbitmqctl(
            "list_queues", "-q", "-p", vhost, "--formatter", "json", "name", column
        )
        rows = json.loads(out or "[]")
        return {row["name"]: int(row.get(column) or 0) for row in rows}


class RabbitMQBroker(_Management, _server.PrivateServer):
    """A RabbitMQ node on 127.0.0.1 with its own ports, epmd and data directory.

    :param workdir: directory to create the broker's temporary directory in
        (default: the system temporary directory).  Only the temporary
        directory inside it is removed at stop.
    :param name: node name without host (default: unique per broker);
        the node is ``<name>@localhost``.
    :param epmd_port: the port of an epmd already listening on 127.0.0.1 for
        the node to register with, as the nodes of a :class:`RabbitMQCluster`
        share one (default: the broker starts an epmd of its own).
    :param tls: the CA, certificate and key to serve with
        (:func:`computed.testing.tls.make_certificates`): the node then has
        a TLS listener on :attr:`port` and no plain AMQP listener at all.
        Clients need ``[oslo_messaging_rabbit] ssl`` (and ``ssl_ca_file``
        for this CA); :attr:`url` carries neither.
    :param require_client_cert: with ``tls``, refuse clients that present
        no certificate signed by its CA (mutual TLS).
    """

    def __init__(
        self,
        workdir: str | None = None,
        name: str | None = None,
        *,
        epmd_port: int | None = None,
        tls: TLSFiles | None = None,
        require_client_cert: bool = False,
    ) -> None:
        self.name = _node_name(name)
        self.node = f"{self.name}@localhost"
        super().__init__(workdir, f"RabbitMQ node {self.node}", f"rabbitmq-{self.name}-")
        self._user = _procs.service_user("rabbitmq")
        self._shared_epmd = epmd_port
        #: The TLS files the node serves with, or None for plain AMQP.
        self.tls = tls
        self._require_client_cert = require_client_cert
        self._ports: tuple[int, int, int] | None = None  # amqp, dist, epmd
        self._env: dict[str, str] = {}
        self._bin = ""
        self._server: subprocess.Popen[bytes] | None = None
        self._server_out: IO[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None

    # -- public properties ------------------------------------------------

    @property
    def port(self) -> int:
        """The AMQP port on 127.0.0.1 (AMQP over TLS only, with ``tls``)."""
        return self._require_ports()[0]

    @property
    def dist_port(self) -> int:
        """The Erlang distribution port on 127.0.0.1."""
        return self._require_ports()[1]

    @property
    def epmd_port(self) -> int:
        """The port of the epmd the node registers with on 127.0.0.1."""
        return self._require_ports()[2]

    @property
    def url(self) -> str:
        """oslo.messaging transport URL for the default vhost as ``guest``."""
        return self.url_for("/", "guest", "guest")

    @property
    def amqp_url(self) -> str:
        """The same as :attr:`url` with the ``amqp://`` scheme kombu understands."""
        return self.url_for("/", "guest", "guest", scheme="amqp")

    @property
    def log_file(self) -> str:
        """The node's main log file."""
        return os.path.join(self.directory, "log", "rabbit.log")

    @property
    def running(self) -> bool:
        """True while the node's processes are alive."""
        return self._server is not None and self._server.poll() is None

    def url_for(
        self, vhost: str = "/", user: str = "guest", password: str = "guest", scheme: str = "rabbit"
    ) -> str:
        """A transport URL for ``vhost`` as ``user``; ``scheme='amqp'`` for kombu."""
        return _url(scheme, [self.port], vhost, user, password)

    # -- life cycle ---------------------------------------------------------
    # start() and stop() (which removes the directory) come from PrivateServer.

    def stop_node(self) -> None:
        """Stop the node gracefully, keeping its directory, ports and epmd:
        :meth:`start_node` brings it back with its durable queues and their
        persistent messages."""
        if self._dir is None:
            raise RuntimeError(f"broker {self.node} is not started")
        self._stop_node()

    def start_node(self, timeout: float = 60) -> None:
        """Start the node again after :meth:`stop_node` or :meth:`kill`, on
        the same ports and data directory (a no-op if it runs).

        :raises RuntimeError: as :meth:`start` does; everything is then removed.
        """
        if self._dir is None:
            raise RuntimeError(f"broker {self.node} is not started")
        if self.running:
            return
        try:
            self._start_node(timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, timeout: float = 60) -> None:
        """Stop the node gracefully and start it again on the same ports and
        data directory: durable queues and their persistent messages survive."""
        self.stop_node()
        self.start_node(timeout)

    def kill(self) -> None:
        """Kill the node at once (SIGKILL), as a crash would.  Its directory,
        ports and epmd stay: :meth:`start_node` or :meth:`restart` brings it
        back, :meth:`stop` cleans up."""
        server = self._server
        if server is None or server.poll() is not None:
            return
        self._kill_node(server)

    def __repr__(self) -> str:
        port = self._ports[0] if self._ports else None
        return f"<RabbitMQBroker {self.node} port={port} running={self.running}>"

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl -n <node> *args`` as the right user; return stdout.

        :raises RuntimeError: with its stderr if it fails.
        """
        return _procs.run(
            [os.path.join(self._bin, "rabbitmqctl"), "-n", self.node, *args],
            user=self._user,
            env=self._env,
            cwd=self.directory,
            timeout=timeout,
        ).stdout

    # -- life cycle (see PrivateServer) -------------------------------------------

    def _locate(self) -> None:
        self._bin = _find_bin_dir()
        _find_epmd()

    def _logs(self) -> list[str]:
        return [self.log_file, self._path("log", "startup.log")]

    def _launch(self, timeout: float) -> None:
        """Pick ports, write the configuration, start epmd and the node, wait
        until it accepts AMQP connections."""
        if self._shared_epmd is None:
            amqp, dist, epmd = _procs.free_ports(3)
        else:
            (amqp, dist), epmd = _procs.free_ports(2), self._shared_epmd
        self._ports = (amqp, dist, epmd)
        self._write_files()
        _procs.check_reachable(self.directory, self._user, "RabbitMQ")
        self._env = self._make_env()
        self._ensure_cookie()
        if self._shared_epmd is None:
            log = self._path("log", "epmd.log")
            try:
                self._epmd = _start_epmd(epmd, self.directory, log, self._user)
            except RuntimeError as exc:
                raise self._failure(str(exc), log) from None
        self._start_node(timeout)

    def _halt(self) -> None:
        try:
            self._stop_node()
        finally:
            _procs.end_process(self._epmd)
            self._epmd = None

    def _forget(self) -> None:
        self._ports = None

    # -- internals ----------------------------------------------------------------

    def _require_ports(self) -> tuple[int, int, int]:
        if self._ports is None:
            raise RuntimeError("the broker is not started")
        return self._ports

    def _path(self, *parts: str) -> str:
        return os.path.join(self.directory, *parts)

    @property
    def _pidfile(self) -> str:
        return self._path("rabbitmq.pid")

    def _write_files(self) -> None:
        os.makedirs(self._path("mnesia"))
        os.makedirs(self._path("log"))
        with open(self._path("rabbitmq.conf"), "w", encoding="utf-8") as fh:
            fh.write(self._listeners())
            fh.write(
                "log.console = false\n"
                "log.file.level = info\n"
                # a nearly full CI disk must not make the broker block publishers
                "disk_free_limit.absolute = 10MB\n"
            )
        with open(self._path("enabled_plugins"), "w", encoding="utf-8") as fh:
            fh.write("[].\n")
        # an empty env file so /etc/rabbitmq/rabbitmq-env.conf is not read
        open(self._path("rabbitmq-env.conf"), "w", encoding="utf-8").close()
        _procs.chown_tree(self.directory, self._user)

    def _listeners(self) -> str:
        """The configuration of the node's one AMQP listener, plain or TLS.

        The TLS files are copied into the node's directory, where its user
        can read them whoever owns the originals.
        """
        address = f"{_procs.LOOPBACK}:{self.port}"
        if self.tls is None:
            return f"listeners.tcp.default = {address}\n"
        os.makedirs(self._path("tls"))
        copies = {
            key: shutil.copyfile(path, self._path("tls", f"{key}.pem"))
            for key, path in (
                ("cacertfile", self.tls.ca_file),
                ("certfile", self.tls.cert_file),
                ("keyfile", self.tls.key_file),
            )
        }
        return (
            "listeners.tcp = none\n"
            f"listeners.ssl.default = {address}\n"
            + "".join(f"ssl_options.{key} = {path}\n" for key, path in copies.items())
            + "ssl_options.verify = verify_peer\n"
            + f"ssl_options.fail_if_no_peer_cert = {str(self._require_client_cert).lower()}\n"
        )

    def _make_env(self) -> dict[str, str]:
        env = _base_env(self._user)
        loopback_dist = "-kernel inet_dist_use_interface {127,0,0,1}"
        env.update(
            {
                "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": _procs.LOOPBACK,
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": self._path("mnesia"),
                "RABBITMQ_LOG_BASE": self._path("log"),
                "RABBITMQ_LOGS": self.log_file,
                "RABBITMQ_PID_FILE": self._pidfile,
                "RABBITMQ_CONFIG_FILE": self._path("rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": self._path("advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": self._path("enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": self._path("rabbitmq-env.conf"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback_dist,
                "RABBITMQ_CTL_ERL_ARGS": loopback_dist,
                # rabbitmqctl's own distribution port: any free one, not the fixed
                # 35672-35682 range every CLI call on the machine competes for
                "RABBITMQ_CTL_DIST_PORT_MIN": "0",
                "RABBITMQ_CTL_DIST_PORT_MAX": "0",
                "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": _procs.LOOPBACK,
            }
        )
        return env

    def _ensure_cookie(self) -> None:
        """Create ``$HOME/.erlang.cookie`` if it is missing, atomically.

        Otherwise the node and the ``rabbitmqctl wait`` started right after it
        can each create one on a fresh machine, and one of them is left with a
        cookie the other does not know.
        """
        path = os.path.join(self._env["HOME"], ".erlang.cookie")
        if os.path.exists(path):
            return
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write("".join(secrets.choice(string.ascii_uppercase) for _ in range(20)))
            if self._user is not None:
                os.chown(tmp, self._user.pw_uid, self._user.pw_gid)
            try:
                os.link(tmp, path)  # fails if somebody else made one meanwhile: keep theirs
            except FileExistsError:
                pass
        except OSError as exc:
            LOG.warning("could not create %s (%s): leaving it to Erlang", path, exc)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _start_node(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if os.path.exists(self._pidfile):
            os.unlink(self._pidfile)
        self._server_out = open(self._path("log", "startup.log"), "ab")
        self._server = _procs.popen(
            [os.path.join(self._bin, "rabbitmq-server")],
            user=self._user,
            env=self._env,
            cwd=self.directory,
            stdout=self._server_out,
        )
        self._wait_ready(self._server, deadline)
        self._check_amqp(deadline)

    def _wait_ready(self, server: subprocess.Popen[bytes], deadline: float) -> None:
        """Wait for ``rabbitmqctl wait``, which returns once the node has booted."""
        wait_s = max(1, int(deadline - time.monotonic()))
        waiter = _procs.popen(
            [os.path.join(self._bin, "rabbitmqctl"), "-n", self.node, "wait"]
            + ["--timeout", str(wait_s), self._pidfile],
            user=self._user,
            env=self._env,
            cwd=self.directory,
            stdout=subprocess.PIPE,
            new_session=False,
        )
        try:
            try:
                _procs.await_ready(server, lambda: waiter.poll() is not None, wait_s + 10)
            except RuntimeError as exc:
                raise self._failure(str(exc)) from None
            output = waiter.stdout.read().decode(errors="replace") if waiter.stdout else ""
            if waiter.returncode != 0:
                raise self._failure(
                    f"rabbitmqctl wait exited with {waiter.returncode}: {output.strip()}"
                )
        finally:
            if waiter.poll() is None:
                waiter.kill()
            waiter.wait()
            if waiter.stdout:
                waiter.stdout.close()

    def _check_amqp(self, deadline: float) -> None:
        import kombu  # a dependency of the package; imported late to keep imports cheap

        connection_class: Any = kombu.Connection  # type: ignore[attr-defined]  # untyped
        conn = connection_class(self.amqp_url, connect_timeout=5, ssl=self._client_ssl())
        try:
            conn.ensure_connection(
                max_retries=max(1, int(deadline - time.monotonic()) * 5),
                interval_start=0.1,
                interval_step=0.1,
                interval_max=0.5,
                timeout=max(1.0, deadline - time.monotonic()),
            )
        except Exception as exc:
            raise self._failure(f"no AMQP connection to {self.amqp_url}: {exc!r}") from exc
        finally:
            conn.release()

    def _client_ssl(self) -> dict[str, Any] | bool:
        """kombu's ``ssl`` for a client of this node that trusts its CA."""
        if self.tls is None:
            return False
        options: dict[str, Any] = {"ca_certs": self.tls.ca_file, "cert_reqs": ssl.CERT_REQUIRED}
        if self._require_client_cert:
            options.update(certfile=self.tls.client_cert_file, keyfile=self.tls.client_key_file)
        return options

    def _beam(self) -> int | None:
        """The process id of the node's Erlang VM, while it runs."""
        beam = _procs.read_pid(self._pidfile) if self._dir else None
        return beam if beam is not None and _procs.pid_alive(beam) else None

    def _stop_node(self) -> None:
        server, self._server = self._server, None
        out, self._server_out = self._server_out, None
        try:
            if server is None:
                return
            # SIGTERM to the VM stops the node gracefully, like `rabbitmqctl stop`,
            # without booting another Erlang VM for the CLI
            _procs.end_process(server, STOP_TIMEOUT, pid=self._beam(), name=self._label)
            self._kill_node(server)
        finally:
            if out is not None:
                out.close()

    def _kill_node(self, server: subprocess.Popen[bytes]) -> None:
        """SIGKILL the node and whatever is left of its process group, then wait
        until it is gone and its AMQP port is closed."""
        beam = self._beam()
        if beam is not None:
            # the beam first, so the rabbitmq-server script reaps it (an orphan
            # waits for init to reap it)
            _procs.signal_pid(beam, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(5)
        _procs.kill_group(server.pid, signal.SIGKILL)  # erl_child_setup, ...
        if server.poll() is None:
            server.wait(5)
        if beam is not None:
            _procs.wait_for(lambda: not _procs.pid_alive(beam), 5)
        if self._ports is not None:
            _procs.wait_for(lambda: not _procs.port_open(self.port, timeout=0.2), 5)


class RabbitMQCluster(_Management, _server.PrivateServer):
    """``size`` RabbitMQ nodes on 127.0.0.1, clustered, sharing one epmd.

    The nodes start at once, then each but the first joins the first with
    ``rabbitmqctl join_cluster``.  Each node is a :class:`RabbitMQBroker`
    in :attr:`nodes`, with its own name, ports and data directory inside the
    cluster's: ``cluster.nodes[1].kill()``, ``.stop_node()`` and
    ``.start_node()`` take one node down and bring it back, and it rejoins
    the cluster by itself.  :meth:`stop` stops every node and removes it all.

    :param size: how many nodes (at least 2).
    :param workdir: directory to create the cluster's temporary directory in.
    :param name: node name prefix (default: unique); node *i* is
        ``<name>-<i>@localhost``.
    """

    #: Three nodes boot at once, then two join one after the other: on a busy
    #: two-core machine that can take a minute.
    start_timeout = 180.0

    def __init__(self, size: int = 3, workdir: str | None = None, name: str | None = None) -> None:
        if size < 2:
            raise ValueError(f"a cluster has at least 2 nodes, not {size}")
        self.size = size
        self.name = _node_name(name)
        super().__init__(workdir, f"RabbitMQ cluster {self.name}", f"rabbitmq-cluster-{self.name}-")
        #: The nodes, the first one the cluster's seed; empty until started.
        self.nodes: list[RabbitMQBroker] = []
        self._user = _procs.service_user("rabbitmq")
        self._epmd: subprocess.Popen[bytes] | None = None
        self._epmd_port: int | None = None

    @property
    def url(self) -> str:
        """oslo.messaging transport URL naming every node, for the default
        vhost as ``guest``; oslo.messaging fails over to the next host."""
        return self.url_for()

    @property
    def amqp_url(self) -> str:
        """The nodes' ``amqp://`` URLs joined by ``;``: kombu's list of
        alternates to fail over between."""
        return self.url_for(scheme="amqp")

    @property
    def epmd_port(self) -> int:
        """The port of the epmd every node registers with."""
        if self._epmd_port is None:
            raise RuntimeError(f"{self._label} is not started")
        return self._epmd_port

    def url_for(
        self, vhost: str = "/", user: str = "guest", password: str = "guest", scheme: str = "rabbit"
    ) -> str:
        """A URL naming every node, for ``vhost`` as ``user``; ``scheme='amqp'`` for kombu."""
        ports = [node.port for node in self.nodes]
        if scheme == "rabbit":
            return _url(scheme, ports, vhost, user, password)
        return ";".join(_url(scheme, [port], vhost, user, password) for port in ports)

    def rabbitmqctl(self, *args: str, timeout: float = 60) -> str:
        """Run ``rabbitmqctl *args`` against the first node that runs; return stdout."""
        running = [node for node in self.nodes if node.running]
        if not running:
            raise RuntimeError(f"no node of {self._label} is running")
        return running[0].rabbitmqctl(*args, timeout=timeout)

    def cluster_status(self) -> dict[str, Any]:
        """``rabbitmqctl cluster_status``: ``running_nodes``, ``disk_nodes``, ..."""
        status: dict[str, Any] = json.loads(
            self.rabbitmqctl("cluster_status", "--formatter", "json")
        )
        return status

    def __repr__(self) -> str:
        ports = [node._ports[0] if node._ports else None for node in self.nodes]
        running = sum(node.running for node in self.nodes)
        return f"<RabbitMQCluster {self.name} ports={ports} running={running}/{len(self.nodes)}>"

    # -- life cycle (see PrivateServer) -------------------------------------------

    def _locate(self) -> None:
        _find_bin_dir()
        _find_epmd()

    def _logs(self) -> list[str]:
        return [self._epmd_log]

    def _launch(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        _procs.chown_tree(self.directory, self._user)
        _procs.check_reachable(self.directory, self._user, "RabbitMQ")
        self._epmd_port = _procs.free_ports(1)[0]
        try:
            self._epmd = _start_epmd(self._epmd_port, self.directory, self._epmd_log, self._user)
        except RuntimeError as exc:
            raise self._failure(str(exc)) from None
        self.nodes = [
            RabbitMQBroker(self.directory, f"{self.name}-{i}", epmd_port=self._epmd_port)
            for i in range(self.size)
        ]
        _each(lambda node: node.start(_remaining(deadline)), self.nodes)
        seed, joiners = self.nodes[0], self.nodes[1:]
        # one join at a time; stopping and starting the joiners' apps may overlap
        _each(lambda node: node.rabbitmqctl("stop_app", timeout=_remaining(deadline)), joiners)
        for node in joiners:
            node.rabbitmqctl("join_cluster", seed.node, timeout=_remaining(deadline))
        _each(lambda node: node.rabbitmqctl("start_app", timeout=_remaining(deadline)), joiners)

    def _halt(self) -> None:
        try:
            _each(RabbitMQBroker.stop, self.nodes)
        finally:
            _procs.end_process(self._epmd)
            self._epmd = None

    def _forget(self) -> None:
        self.nodes = []
        self._epmd_port = None

    @property
    def _epmd_log(self) -> str:
        return os.path.join(self.directory, "epmd.log")


def _remaining(deadline: float) -> float:
    """Seconds left until ``deadline``, but at least 30 for one more step."""
    return max(30.0, deadline - time.monotonic())


def _each(func: Callable[[RabbitMQBroker], object], nodes: Sequence[RabbitMQBroker]) -> None:
    """Run ``func`` on every node at once; raise the first failure when all are done."""
    if not nodes:
        return
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="rabbitmq") as pool:
        futures = [pool.submit(func, node) for node in nodes]
    for future in futures:
        future.result()
