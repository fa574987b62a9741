"""A private libvirtd for tests: session mode, unprivileged, in a temporary directory.

::

    with Libvirtd() as daemon:
        uri = daemon.uri_for()                 # test+unix:///default?socket=...
        node = daemon.write_node_xml(text)     # a node fixture the daemon can read
        uri = daemon.uri_for(node)             # test+unix:///<node>?socket=...
        text = node_xml(pools={"images": {"cirros": 16 << 20}}, networks=["default"])
        uri = daemon.uri_for(driver="qemu")    # qemu+unix:///session?socket=...

The daemon runs in session mode (no ``/etc/libvirt``, no system bus, no
``libvirt-qemu`` user) with ``XDG_RUNTIME_DIR``, ``XDG_CONFIG_HOME``,
``XDG_CACHE_HOME``, ``XDG_DATA_HOME`` and ``HOME`` all inside one temporary
directory that :meth:`Libvirtd.stop` removes, so several can run side by side
and the machine's own libvirt is never touched.  Clients reach it through
its socket, ``<dir>/run/libvirt/libvirt-sock``, which is what the
``?socket=`` of :meth:`Libvirtd.uri_for` names: the test driver is then
reached over libvirt's real remote protocol, and every process opening the
same ``test+unix:///default`` URI sees the same domains.

Who runs the daemon: as an ordinary user, that user. As root, the system
user :data:`DAEMON_USER` (created by :meth:`Libvirtd.start` with ``useradd
--system`` if missing, without a home or a login shell); root still reaches
the socket. A session-mode libvirtd as root would be a system daemon in
disguise, and qemu:///session guests should not run as root.

Run as a program, it changes a domain behind its worker's back, as a guest
or an administrator would (the conformance suite's ``[conformance]
hypervisor_command`` for the libvirt driver)::

    python -m computed.testing.libvirtd --uri URI stop HOST UUID    # the guest shuts down
    python -m computed.testing.libvirtd --uri URI delete HOST UUID  # removed out of band
    python -m computed.testing.libvirtd --uri H1=URI1 --uri H2=URI2 stop H2 UUID  # one of several

Two things about the test driver that tests must allow for:

* ``test+unix:///default`` keeps its domains in the daemon only while at
  least one connection to it is open; when the last one closes they are
  reset to the single built-in ``test`` domain.
* every connection to ``test+unix:///<node.xml>`` loads the file afresh and
  has domains of its own, not shared with other connections.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote

from computed.testing import _procs, _server

__all__ = ["DAEMON_USER", "Libvirtd", "find_libvirtd", "node_xml"]

LOG = logging.getLogger(__name__)

#: The user the daemon runs as when the tests run as root.
DAEMON_USER = "computed-test"

#: How long a graceful stop may take before the daemon is killed.
STOP_TIMEOUT = _server.STOP_TIMEOUT


def find_libvirtd() -> str:
    """The ``libvirtd`` binary.

    :raises RuntimeError: if it is not installed.
    """
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which("libvirtd", path=path)
    if found:
        return found
    raise RuntimeError(
        "libvirtd is not installed: install the libvirt-daemon and "
        "libvirt-daemon-driver-qemu packages (tools/bootstrap.sh does so on Debian)"
    )


def node_xml(
    pools: Mapping[str, Mapping[str, int]] | None = None, networks: Iterable[str] = ()
) -> str:
    """A test-driver node with storage pools and networks, for :meth:`Libvirtd.write_node_xml`.

    A node file is the only way to give such a node its pools' volumes: every
    connection loads the file afresh, so what one connection makes, no other sees.

    :param pools: pool name -> volume name -> capacity in bytes; each pool is a
        ``dir`` pool at ``/<name>``, so a volume's path is ``/<pool>/<volume>``.
    :param networks: names of NAT networks, each on a bridge of its own.
    """
    node = ET.Element("node")
    for index, name in enumerate(networks):
        network = ET.SubElement(node, "network")
        ET.SubElement(network, "name").text = name
        ET.SubElement(network, "bridge", name=f"virbr{index}")
        ET.SubElement(network, "forward", mode="nat")
        ET.SubElement(network, "ip", address=f"192.168.{122 + index}.1", netmask="255.255.255.0")
    for name, volumes in (pools or {}).items():
        pool = ET.SubElement(node, "pool", type="dir")
        ET.SubElement(pool, "name").text = name
        ET.SubElement(ET.SubElement(pool, "target"), "path").text = f"/{name}"
        for volume_name, capacity in volumes.items():
            volume = ET.SubElement(pool, "volume")
            ET.SubElement(volume, "name").text = volume_name
            ET.SubElement(volume, "capacity", unit="bytes").text = str(capacity)
    return ET.tostring(node, encoding="unicode")


def daemon_user(create: bool = True) -> pwd.struct_passwd | None:
    """The account to run libvirtd as: None for an ordinary user (run as we are);
    as root :data:`DAEMON_USER`, created if missing and ``create`` is true."""
    if not _procs.is_root():
        return None
    try:
        return pwd.getpwnam(DAEMON_USER)
    except KeyError:
        if not create:
            raise
    LOG.warning("creating system user %r to run libvirtd for the tests", DAEMON_USER)
    _procs.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            DAEMON_USER,
        ]
    )
    return pwd.getpwnam(DAEMON_USER)


class Libvirtd(_server.PrivateServer):
    """A session-mode libvirtd with its own socket and state in a temporary directory.

    :param workdir: directory to create the daemon's temporary directory in
        (default: the system temporary directory). As root it must be
        traversable by :data:`DAEMON_USER`.
    """

    start_timeout = 30.0

    def __init__(self, workdir: str | None = None, host_uuid: str | None = None) -> None:
        super().__init__(workdir, "libvirtd", "libvirtd-")
        self.host_uuid = host_uuid
        self._user: pwd.struct_passwd | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._binary = ""

    # -- where things are ----------------------------------------------------------

    @property
    def socket(self) -> str:
        """Path of the daemon's read-write socket."""
        return os.path.join(self.directory, "run", "libvirt", "libvirt-sock")

    @property
    def log_file(self) -> str:
        return os.path.join(self.directory, "libvirtd.log")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def user(self) -> str:
        """The name of the user the daemon runs as."""
        return self._user.pw_name if self._user else pwd.getpwuid(os.geteuid()).pw_name

    def uri_for(self, node_xml_path: str | None = None, driver: str = "test") -> str:
        """A libvirt URI reaching this daemon.

        :param node_xml_path: with the test driver, an absolute path to a node
            XML file the daemon can read (see :meth:`write_node_xml`) instead of
            the built-in ``/default`` node.
        :param driver: ``test`` or ``qemu`` (``qemu+unix:///session``, guests
            running as the daemon's user).
        """
        if driver == "test":
            path = "/default"
            if node_xml_path is not None:
                if not os.path.isabs(node_xml_path):
                    raise ValueError(f"node XML path must be absolute: {node_xml_path!r}")
                path = node_xml_path
        elif driver == "qemu":
            if node_xml_path is not None:
                raise ValueError("a node XML file is for the test driver only")
            path = "/session"
        else:
            raise ValueError(f"unknown libvirt driver {driver!r}: use 'test' or 'qemu'")
        return f"{driver}+unix://{quote(path)}?socket={quote(self.socket)}"

    def write_node_xml(self, text: str, name: str = "node.xml") -> str:
        """Write a test-driver node description where the daemon can read it.

        :returns: its absolute path, for :meth:`uri_for`.
        """
        if os.sep in name or name.startswith("."):
            raise ValueError(f"invalid file name {name!r}")
        path = os.path.join(self.directory, "nodes", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        _procs.chown_tree(os.path.dirname(path), self._user)
        return path

    # -- life cycle ------------------------------------------------------------------

    def restart(self, timeout: float = 30) -> None:
        """Stop the daemon and start it again on the same socket and directory.

        Clients' connections drop. The test driver's domains are in memory
        only: after the restart ``/default`` is back to its built-in domain.
        """
        self.stop_daemon()
        self.start_daemon(timeout)

    def stop_daemon(self) -> None:
        """Stop the daemon only, keeping its directory for :meth:`start_daemon`.

        Until then clients fail to connect, as to a crashed libvirtd.
        """
        if self._dir is None:
            raise RuntimeError("libvirtd is not started")
        self._stop_daemon()

    def start_daemon(self, timeout: float = 30) -> None:
        """Start the daemon again after :meth:`stop_daemon`, on the same socket.

        :raises RuntimeError: as :meth:`start` does; everything is then removed.
        """
        if self._dir is None:
            raise RuntimeError("libvirtd is not started")
        if self.running:
            return
        try:
            self._start_daemon(timeout)
        except BaseException:
            self.stop()
            raise

    def __repr__(self) -> str:
        where = self.socket if self._dir else None
        return f"<Libvirtd socket={where} running={self.running}>"

    # -- life cycle (see PrivateServer) -----------------------------------------------

    def _locate(self) -> None:
        self._binary = find_libvirtd()
        self._user = daemon_user()

    def _logs(self) -> list[str]:
        return [self.log_file]

    def _launch(self, timeout: float) -> None:
        for sub in ("home", "run", "config", "cache", "data"):
            os.mkdir(os.path.join(self.directory, sub), 0o700)
        if self.host_uuid is not None:
            # Two daemons of one machine otherwise share its UUID (from SMBIOS
            # or /etc/machine-id), and libvirt refuses to migrate between them.
            conf_dir = os.path.join(self.directory, "config", "libvirt")
            os.mkdir(conf_dir, 0o700)
            with open(os.path.join(conf_dir, "libvirtd.conf"), "w", encoding="utf-8") as fh:
                fh.write(f'host_uuid = "{self.host_uuid}"\n')
        os.chmod(self.directory, 0o755)
        _procs.chown_tree(self.directory, self._user)
        _procs.check_reachable(self.directory, self._user, "libvirtd")
        self._start_daemon(timeout)

    def _halt(self) -> None:
        self._stop_daemon()

    # -- internals ---------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        d = self.directory
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": os.path.join(d, "home"),
            "XDG_RUNTIME_DIR": os.path.join(d, "run"),
            "XDG_CONFIG_HOME": os.path.join(d, "config"),
            "XDG_CACHE_HOME": os.path.join(d, "cache"),
            "XDG_DATA_HOME": os.path.join(d, "data"),
        }
        if self._user is not None:
            env.update(USER=self._user.pw_name, LOGNAME=self._user.pw_name)
        return env

    def _start_daemon(self, timeout: float) -> None:
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # left by a daemon that was killed
        with open(self.log_file, "ab") as log:
            self._proc = _procs.popen(
                [self._binary], user=self._user, env=self._env(), cwd=self.directory, stdout=log
            )
        try:
            _procs.await_ready(self._proc, self._accepts, timeout)
        except RuntimeError as exc:
            raise self._failure(str(exc)) from None

    def _accepts(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(self.socket)
            except OSError:
                return False
        return True

    def _stop_daemon(self) -> None:
        proc, self._proc = self._proc, None
        # SIGTERM to libvirtd alone, which stops its guests; then its group goes
        pid = proc.pid if proc is not None else None
        _procs.end_process(proc, STOP_TIMEOUT, pid=pid, name="libvirtd")
        self._stop_spawned()

    def _stop_spawned(self) -> None:
        """Stop the daemons libvirtd spawned in the background (virtlogd, ...),
        and the qemu guests it left running (a stopped libvirtd leaves them be).

        They left our process group; their pid files in our runtime directory
        say who they are.
        """
        if self._dir is None:
            return
        run = os.path.join(self._dir, "run", "libvirt")
        guests = glob.glob(os.path.join(run, "qemu", "run", "*.pid"))
        for pid_file in [*guests, *glob.glob(os.path.join(run, "*.pid"))]:
            pid = _procs.read_pid(pid_file)
            if pid is None or not _procs.pid_alive(pid) or not self._ours(pid):
                continue
            _procs.signal_pid(pid, signal.SIGTERM)
            if not _procs.wait_for(_gone(pid), 5):
                _procs.signal_pid(pid, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        """True if process ``pid`` runs with our runtime directory in its environment,
        or names our directory in its command line (a guest, whose environment
        libvirt makes anew)."""
        marker = f"XDG_RUNTIME_DIR={os.path.join(self.directory, 'run')}".encode()
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    return True
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                return f"{self.directory}/".encode() in fh.read()
        except OSError:
            return False


def _gone(pid: int) -> Callable[[], bool]:
    return lambda: not _procs.pid_alive(pid)


def main(argv: list[str] | None = None) -> int:
    """Stop or remove a domain through its own libvirt connection (see the module's doc)."""
    import libvirt

    parser = argparse.ArgumentParser(
        prog="python -m computed.testing.libvirtd",
        description="Change a domain behind its worker's back, as a guest or an administrator would.",
    )
    parser.add_argument(
        "--uri",
        required=True,
        action="append",
        help="the libvirt URI the host's worker uses, or HOST=URI, once per host",
    )
    parser.add_argument("action", choices=["stop", "delete"])
    parser.add_argument("host", help="the compute host (which URI, if several are given)")
    parser.add_argument("uuid")
    args = parser.parse_args(argv)
    uris = dict(
        item.split("=", 1) if "=" in item.split(":", 1)[0] else ("", item) for item in args.uri
    )
    uri = uris.get(args.host) or uris.get("")
    if uri is None:
        parser.error(f"no --uri for host {args.host}")
    libvirt.registerErrorHandler(lambda _ctx, _error: None, None)
    try:
        conn = libvirt.open(uri)
        try:
            dom = conn.lookupByUUIDString(args.uuid)
            if args.action == "stop":
                dom.shutdown()  # the guest powers off (the test driver's does at once)
            else:
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        finally:
            conn.close()
    except libvirt.libvirtError as exc:
        print(f"{args.action} {args.uuid} on {args.host}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
