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

import atexit
import glob
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from types import TracebackType
from urllib.parse import quote

from computed.testing import _procs

__all__ = ["PostgreSQLServer", "find_bin_dir"]

LOG = logging.getLogger(__name__)

#: How long a fast shutdown may take before the postmaster is killed.
STOP_TIMEOUT = 10.0

SUPERUSER = "postgres"

_LIVE: set[PostgreSQLServer] = set()  # started and not stopped; stopped at exit


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


class PostgreSQLServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1.

    :param workdir: directory to create the cluster's temporary directory in
        (default: the system temporary directory).
    """

    def __init__(self, workdir: str | None = None) -> None:
        self._parent = workdir
        self._user = _procs.service_user("postgres")
        self._dir: str | None = None
        self._port: int | None = None
        self._bin = ""
        self._env: dict[str, str] = {}

    # -- public properties ------------------------------------------------

    @property
    def directory(self) -> str:
        """The cluster's temporary directory (data, log, socket)."""
        if self._dir is None:
            raise RuntimeError("the PostgreSQL server is not started")
        return self._dir

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

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout: float = 60) -> PostgreSQLServer:
        """``initdb`` a new cluster, start it and wait until it accepts connections.

        :raises RuntimeError: with the tail of the server log if it fails;
            everything made so far is removed.
        """
        if self._dir is not None:
            raise RuntimeError("the PostgreSQL server is already started")
        self._bin = find_bin_dir()
        begin = time.monotonic()
        try:
            self._dir = tempfile.mkdtemp(prefix="postgres-", dir=self._parent)
            _procs.chown_tree(self._dir, self._user)
            _procs.check_reachable(self._dir, self._user)
            self._port = _procs.free_ports(1)[0]
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env.setdefault("LC_ALL", "C")
            self._env = _procs.user_env(self._user, env)
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
            options = " ".join(
                [
                    f"-p {self._port}",
                    f"-k {self._dir}",
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
        except BaseException as exc:
            log = _procs.tail(self.log_file) if self._dir else ""
            self.stop()
            if isinstance(exc, RuntimeError):
                raise RuntimeError(
                    f"PostgreSQL failed to start: {exc}\n--- last lines of the server log ---\n{log}"
                ) from exc
            raise
        _LIVE.add(self)
        LOG.info("PostgreSQL ready on port %d in %.1f s", self._port, time.monotonic() - begin)
        return self

    def stop(self) -> None:
        """Fast shutdown (killing the postmaster if that takes too long), then
        remove the directory.  Idempotent."""
        if self._dir is None:
            return
        try:
            pid = self._postmaster_pid()
            if pid is not None and _procs.pid_alive(pid):
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
        finally:
            _procs.remove_tree(self._dir)
            self._dir = None
            self._port = None
            _LIVE.discard(self)

    def __enter__(self) -> PostgreSQLServer:
        if self._dir is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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

    # -- internals ----------------------------------------------------------------

    @property
    def _data(self) -> str:
        return os.path.join(self.directory, "data")

    def _client_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("PG")}

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


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        LOG.warning("stopping PostgreSQL on port %s left running at exit", server._port)
        server.stop()
