"""A private PostgreSQL cluster for tests: loopback only, in a temporary directory.

::

    with PostgreSQLServer() as pg:
        url = pg.create_database("registry")
        # postgresql+psycopg2://postgres@127.0.0.1:<port>/registry

The cluster is made with ``initdb -A trust -U postgres`` in a temporary
directory, listens on 127.0.0.1 on a free port with its socket in that
directory, and is stopped and removed by :meth:`PostgreSQLServer.stop`.  As root
``initdb`` and ``pg_ctl`` run as the ``postgres`` user (they refuse root); as
any other user they run directly.  The system's own clusters are not touched.

Durability is traded for speed (``fsync=off``, ``synchronous_commit=off``,
``full_page_writes=off``): a crash of the machine loses the cluster, which is
thrown away anyway.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import signal
import subprocess
from urllib.parse import quote

from computed.testing import _procs, _server

__all__ = ["PostgreSQLServer", "find_bin_dir"]

LOG = logging.getLogger(__name__)

#: How long a fast shutdown may take before the postmaster is killed.
STOP_TIMEOUT = _server.STOP_TIMEOUT

SUPERUSER = "postgres"


def _version_key(path: str) -> tuple[int, ...]:
    version = os.path.basename(os.path.dirname(path))
    return tuple(int(x) for x in re.findall(r"\d+", version)) or (0,)


def find_bin_dir() -> str:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and
    ``pg_ctl``, else the directory of ``initdb`` on PATH.

    :raises RuntimeError: if PostgreSQL's server binaries are not installed.
    """
    candidates = [
        d
        for d in glob.glob("/usr/lib/postgresql/*/bin")
        if os.path.isfile(os.path.join(d, "initdb")) and os.path.isfile(os.path.join(d, "pg_ctl"))
    ]
    if candidates:
        return max(candidates, key=_version_key)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=os.path.dirname(found)):
        return os.path.dirname(found)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install the postgresql "
        "package (tools/bootstrap.sh does so on Debian when run as root)"
    )


class PostgreSQLServer(_server.PrivateServer):
    """A throw-away PostgreSQL cluster on 127.0.0.1.

    :param workdir: directory to create the cluster's temporary directory in
        (default: the system temporary directory).
    """

    def __init__(self, workdir: str | None = None) -> None:
        super().__init__(workdir, "PostgreSQL", "postgres-")
        self._user = _procs.service_user("postgres")
        self._port: int | None = None
        self._bin = ""
        self._env: dict[str, str] = {}

    # -- public properties ------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1."""
        if self._port is None:
            raise RuntimeError("the PostgreSQL server is not started")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.url_for("postgres")

    @property
    def log_file(self) -> str:
        return os.path.join(self.directory, "postgres.log")

    @property
    def running(self) -> bool:
        pid = self._postmaster_pid()
        return pid is not None and _procs.pid_alive(pid)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` as the superuser (trust authentication)."""
        return (
            f"postgresql+psycopg2://{SUPERUSER}@{_procs.LOOPBACK}:{self.port}/"
            f"{quote(database, safe='')}"
        )

    def __repr__(self) -> str:
        return (
            f"<PostgreSQLServer port={self._port} running={self._dir is not None and self.running}>"
        )

    # -- helpers ------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        _procs.run(
            [
                os.path.join(self._bin, "createdb"),
                "-h",
                _procs.LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                name,
            ],
            env=self._client_env(),
            timeout=30,
        )
        return self.url_for(name)

    # -- life cycle (see PrivateServer) ------------------------------------------------

    def _locate(self) -> None:
        self._bin = find_bin_dir()

    def _logs(self) -> list[str]:
        return [self.log_file]

    def _launch(self, timeout: float) -> None:
        """``initdb`` a new cluster, start it and wait until it accepts connections."""
        _procs.chown_tree(self.directory, self._user)
        _procs.check_reachable(self.directory, self._user, "PostgreSQL")
        self._port = _procs.free_ports(1)[0]
        self._env = _procs.user_env(self._user, self._client_env(LC_ALL="C"))
        try:
            self._initdb(timeout)
            self._pg_ctl_start(timeout)
        except RuntimeError as exc:
            raise self._failure(str(exc)) from exc

    def _initdb(self, timeout: float) -> None:
        self._tool(
            "initdb",
            "-D",
            self._data,
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            timeout=timeout,
        )

    def _pg_ctl_start(self, timeout: float) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.directory}",
                f"-c listen_addresses={_procs.LOOPBACK}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        # new session: a Ctrl-C in the terminal must not reach the postmaster
        # before our own clean-up does
        self._tool(
            "pg_ctl",
            "-D",
            self._data,
            "-l",
            self.log_file,
            "-o",
            options,
            "-w",
            "-t",
            str(max(1, int(timeout))),
            "start",
            timeout=timeout + 10,
            new_session=True,
        )

    def _halt(self) -> None:
        """Fast shutdown, killing the postmaster if that takes too long."""
        pid = self._postmaster_pid()
        if pid is None or not _procs.pid_alive(pid):
            return
        try:
            self._tool(
                "pg_ctl",
                "-D",
                self._data,
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(STOP_TIMEOUT)),
                "stop",
                timeout=STOP_TIMEOUT + 5,
            )
        except RuntimeError as exc:
            LOG.warning("pg_ctl stop failed, killing the postmaster: %s", exc)
        if _procs.pid_alive(pid):
            _procs.signal_pid(pid, signal.SIGKILL)
            _procs.wait_for(lambda: not _procs.pid_alive(pid), 5)

    def _forget(self) -> None:
        self._port = None

    # -- internals ----------------------------------------------------------------

    @property
    def _data(self) -> str:
        return os.path.join(self.directory, "data")

    def _client_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        for name, value in extra.items():
            env.setdefault(name, value)
        return env

    def _postmaster_pid(self) -> int | None:
        if self._dir is None:
            return None
        try:
            with open(os.path.join(self._data, "postmaster.pid"), encoding="ascii") as fh:
                first = fh.readline().strip()
        except OSError:
            return None
        return int(first) if first.isdigit() else None

    def _tool(
        self, tool: str, *args: str, timeout: float, new_session: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return _procs.run(
            [os.path.join(self._bin, tool), *args],
            user=self._user,
            env=self._env,
            cwd=self.directory,
            timeout=timeout,
            new_session=new_session,
        )
