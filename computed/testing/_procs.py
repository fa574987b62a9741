"""Small process helpers shared by the private servers of :mod:`computed.testing`.

Private: the names here may change without notice.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

LOG = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def is_root() -> bool:
    """True when this process runs with uid 0."""
    return os.geteuid() == 0


def service_user(name: str) -> pwd.struct_passwd | None:
    """The account to run a server's tools as, or None to run them as we are.

    Only root switches users: ``initdb``/``pg_ctl`` refuse to run as root, and
    the Debian RabbitMQ tools keep their Erlang cookie in the ``rabbitmq``
    user's home.  An ordinary user runs everything directly.
    """
    if not is_root():
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        LOG.warning("running as root but there is no %r user: running its tools as root", name)
        return None


def user_env(user: pwd.struct_passwd | None, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with HOME, USER and LOGNAME of ``user`` (as plain ``su`` sets them)."""
    env = dict(base)
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


def _ids(user: pwd.struct_passwd | None) -> tuple[int | None, int | None, list[int] | None]:
    """Popen's ``user``, ``group`` and ``extra_groups`` to run as ``user``."""
    if user is None:
        return None, None, None
    return user.pw_uid, user.pw_gid, []


def popen(
    cmd: Sequence[str],
    *,
    user: pwd.struct_passwd | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the background, as ``user`` if given, in its own session.

    Its own session means its own process group, so :func:`kill_group` ends it
    and every child it forked, and a Ctrl-C in the terminal does not reach it
    before our own clean-up does.
    """
    LOG.debug("starting %s", " ".join(cmd))
    uid, gid, groups = _ids(user)
    return subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=new_session,
        user=uid,
        group=gid,
        extra_groups=groups,
    )


def run(
    cmd: Sequence[str],
    *,
    user: pwd.struct_passwd | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 60,
    check: bool = True,
    new_session: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion and capture its output as text.

    ``new_session`` puts it, and any daemon it leaves behind, in a session of
    its own, out of reach of a Ctrl-C in the terminal.

    :raises RuntimeError: if ``check`` and it exits non-zero or times out; the
        message holds the command, its exit code and its output.
    """
    LOG.debug("running %s", " ".join(cmd))
    uid, gid, groups = _ids(user)
    try:
        proc = subprocess.run(
            list(cmd),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            timeout=timeout,
            start_new_session=new_session,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{' '.join(cmd)} did not finish in {timeout:g} s; output:\n"
            f"{_text(exc.stdout)}{_text(exc.stderr)}"
        ) from None
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr.strip()}\n{proc.stdout.strip()}".rstrip()
        )
    return proc


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now.

    The sockets are held open together so the ports differ, then closed; a
    port can still be taken by somebody else before the caller binds it.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


#: The kernel's codes of TCP socket states in /proc/<pid>/net/tcp.
TCP_ESTABLISHED = "01"
TCP_LISTEN = "0A"


def tcp_sockets(pid: int) -> list[tuple[str, int, int]]:
    """The TCP sockets process ``pid`` holds: (state, local port, remote port), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    sockets = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                if fields[9] in inodes:
                    local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                    sockets.append((fields[3], local, remote))
    return sockets


def port_bindable(port: int, host: str = LOOPBACK) -> bool:
    """True if a listening socket could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it holds.

    :raises AssertionError: saying ``what`` did not happen within ``timeout`` seconds.
    """
    if not wait_for(predicate, timeout, interval):
        raise AssertionError(f"{what} did not happen within {timeout:g} s")


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_pid(path: str) -> int | None:
    """The process id in a pid file, or None if it is missing or empty."""
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def signal_pid(pid: int | None, sig: int) -> None:
    """Send ``sig`` to ``pid``, ignoring a process that is already gone."""
    if pid is None or pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def kill_group(pgid: int | None, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to a whole process group, ignoring one that is gone."""
    if pgid is None or pgid <= 0:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def await_ready(proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float) -> None:
    """Wait until ``ready()`` is true, as long as ``proc`` runs.

    :raises RuntimeError: saying ``proc`` exited (with its exit code) or was
        not ready within ``timeout`` seconds.
    """
    name = os.path.basename(str(proc.args[0]))  # type: ignore[index]  # a Sequence here
    if not wait_for(lambda: proc.poll() is not None or ready(), timeout):
        raise RuntimeError(f"{name} not ready within {timeout:g} s")
    if proc.poll() is not None:
        raise RuntimeError(f"{name} exited with {proc.returncode}")


def end_process(
    proc: subprocess.Popen[bytes] | None,
    timeout: float = 3,
    *,
    pid: int | None = None,
    name: str | None = None,
) -> None:
    """Stop ``proc`` and everything left in its process group.

    SIGTERM goes to ``pid`` if given (the process that shuts the others down),
    else to the whole group; whatever still runs ``timeout`` seconds later is
    killed with its group.  ``name``, if given, is logged when that happens.
    """
    if proc is None:
        return
    if proc.poll() is None:
        if pid is not None:
            signal_pid(pid, signal.SIGTERM)
        else:
            kill_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            if name:
                LOG.warning("%s did not stop within %.0f s: killing it", name, timeout)
    kill_group(proc.pid, signal.SIGKILL)  # what lingers, and children left in the group
    if proc.poll() is None:
        proc.wait(5)


def tail(path: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it is missing."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    return "\n".join(data.splitlines()[-lines:])


def chown_tree(path: str, user: pwd.struct_passwd | None) -> None:
    """Give ``path`` and everything below it to ``user`` (no-op for None)."""
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def check_reachable(path: str, user: pwd.struct_passwd | None, server: str = "the server") -> None:
    """Make sure ``user`` can write in directory ``path`` (no-op for None).

    :param server: what ``user`` runs, for the message.
    :raises RuntimeError: if a parent directory is not searchable by that
        user, as pytest's ``tmp_path`` is not for anybody but its owner.
    """
    if user is None:
        return
    proc = run(
        ["/bin/sh", "-c", 'test -d "$0" && test -w "$0" && test -x "$0"', path],
        user=user,
        timeout=10,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{path} is not reachable by the {user.pw_name!r} user that runs {server}: "
            "every parent directory must be searchable by that user (choose a workdir "
            "under /tmp, or chmod o+x its parents)"
        )


def remove_tree(path: str | None) -> None:
    """Remove a directory tree, retrying once if files appear while it goes."""
    if not path:
        return
    for _ in range(3):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EBUSY):
                LOG.warning("could not remove %s: %s", path, exc)
                return
            time.sleep(0.1)
    LOG.warning("could not remove %s", path)
