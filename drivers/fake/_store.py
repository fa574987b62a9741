"""Where the fake hypervisor keeps its instances: the worker's memory, or files.

A real hypervisor outlives the worker that drives it: after a restart, an
upgrade or a takeover, the next worker finds the instances the previous one
made. :class:`FileStore` gives the fake driver that property: each host's
instances live in one JSON file of a directory that every worker of a
deployment names, read and written whole under a lock on the host, so two
processes serving a host one after the other, or briefly both at once
during a handover, see one hypervisor. :class:`MemoryStore` keeps them in
the process, gone with it, which is the default and the fastest.

Both stores offer the same two transactions on a host's table of instances:
:meth:`Store.reading` to look, :meth:`Store.changing` to change. The driver
changes instances only inside :meth:`Store.changing`, so it behaves the same
over either store. A move between two hosts changes both at once, in
:meth:`Store.changing_hosts`; it needs both hosts in one store (one
directory, or one worker's memory), which :attr:`Store.backend` names.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from computed.objects import InstanceSpec

__all__ = [
    "Disk",
    "Port",
    "Instance",
    "Image",
    "Held",
    "Store",
    "MemoryStore",
    "FileStore",
    "StoreError",
]


class StoreError(Exception):
    """A host's state file cannot be read or written."""


@dataclasses.dataclass
class Disk:
    """A block device of a fake instance, as the hypervisor sees it.

    ``kind`` is a :class:`~computed.objects.DeviceKind` value; a volume
    keeps its id and transport, never its connection info (it may carry
    credentials, and the fake needs none of it once attached).
    """

    device_name: str
    kind: str
    boot_index: int | None = None
    size_gb: int | None = None
    image: str | None = None
    volume_id: str | None = None
    volume_type: str | None = None


@dataclasses.dataclass
class Port:
    """A network interface of a fake instance, plugged into ``network``."""

    port_id: str
    mac_address: str
    network: str
    device_name: str
    mtu: int | None = None


@dataclasses.dataclass
class Instance:
    """What the fake hypervisor knows of an instance: plain values, cheap to save."""

    uuid: str
    name: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    description: str | None
    power_state: str
    console: list[str] = dataclasses.field(default_factory=list)
    #: The image the instance was built from (None: booted from a volume).
    image: str | None = None
    block_devices: list[Disk] = dataclasses.field(default_factory=list)
    network_interfaces: list[Port] = dataclasses.field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: InstanceSpec, power_state: str) -> Instance:
        """The instance without its devices (see :mod:`drivers.fake._devices`).

        :param spec: a validated spec (every field set).
        """
        return cls(
            uuid=spec.uuid,
            name=spec.name,
            vcpus=spec.vcpus,
            memory_mb=spec.memory_mb,
            disk_gb=spec.disk_gb,
            description=spec.description,
            power_state=power_state,
            image=spec.image,
        )

    @classmethod
    def load(cls, saved: dict[str, Any]) -> Instance:
        """The instance of a state file's entry; one saved before devices has none.

        Fields a newer release added are left out, so a worker of this
        release still reads a host a newer one has written (a rollback).
        """
        disks = [Disk(**each) for each in saved.pop("block_devices", [])]
        ports = [Port(**each) for each in saved.pop("network_interfaces", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        kept = {key: value for key, value in saved.items() if key in known}
        return cls(**kept, block_devices=disks, network_interfaces=ports)

    @property
    def local_gb(self) -> int:
        """Host disk in use: the root disk (unless it is a volume) and the blank disks."""
        root = next((d for d in self.block_devices if d.boot_index == 0), None)
        root_gb = 0 if root is not None and root.volume_id is not None else self.disk_gb
        blank = (d.size_gb or 0 for d in self.block_devices if d.kind == "blank")
        return root_gb + sum(blank)

    def disk(self, device_name: str) -> Disk | None:
        """The block device named ``device_name`` (``vdb``), if any."""
        return next((d for d in self.block_devices if d.device_name == device_name), None)

    def volume(self, volume_id: str) -> Disk | None:
        """The attached volume ``volume_id``, if any."""
        return next((d for d in self.block_devices if d.volume_id == volume_id), None)

    def port(self, port_id: str) -> Port | None:
        """The interface of port ``port_id``, if any."""
        return next((p for p in self.network_interfaces if p.port_id == port_id), None)

    def log(self, text: str) -> None:
        """Append a console line; the clock is the line number, so logs are deterministic."""
        self.console.append(f"[{len(self.console) * 0.25:10.6f}] {text}")


@dataclasses.dataclass
class Image:
    """An image a snapshot made on a fake host; it outlives its instance."""

    image_id: str
    name: str
    instance_uuid: str
    disk_format: str
    size_bytes: int


@dataclasses.dataclass
class Held:
    """What a host keeps for a move in progress, by migration id (not listed as an instance).

    ``source``: the instance as it was before a resize or cold migration,
    for a revert (``finished`` once the destination built its copy);
    ``incoming``: a destination's preparation for a live migration.
    """

    migration_id: str
    role: str
    instance: Instance | None = None
    finished: bool = False

    @classmethod
    def load(cls, saved: dict[str, Any]) -> Held:
        instance = saved.get("instance")
        return cls(
            migration_id=saved["migration_id"],
            role=saved["role"],
            instance=Instance.load(dict(instance)) if instance is not None else None,
            finished=bool(saved.get("finished", False)),
        )


#: The tables a host's state holds: its instances by UUID, its images by id,
#: what it holds for moves in progress by migration id.
INSTANCES = "instances"
IMAGES = "images"
MOVES = "moves"


def _load_image(saved: dict[str, Any]) -> Image:
    return Image(**saved)


#: How each table's rows are read back from a state file.
_TABLES: dict[str, Callable[[dict[str, Any]], Any]] = {
    INSTANCES: Instance.load,
    IMAGES: _load_image,
    MOVES: Held.load,
}

#: Every table of each host of a transaction: ``{host: {table: rows}}``.
Tables = dict[str, dict[str, dict[str, Any]]]


class Store(abc.ABC):
    """Each served host's instances, by UUID, and images, by id (``table``)."""

    @abc.abstractmethod
    def attach(self, host: str) -> None:
        """Make ready to keep ``host``'s instances; keep what is already there.

        :raises StoreError: if the host's state cannot be kept.
        """

    @abc.abstractmethod
    def reading(
        self, host: str, table: str = INSTANCES
    ) -> contextlib.AbstractContextManager[Mapping[str, Any]]:
        """The host's instances (or images), to look at (not to change) inside the ``with`` block."""

    @abc.abstractmethod
    def changing(
        self, host: str, table: str = INSTANCES
    ) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """The host's instances (or images), to change inside the ``with`` block; kept when it ends.

        No other transaction on the host runs meanwhile. An exception in the
        block still keeps what it changed before raising.
        """

    @abc.abstractmethod
    def changing_hosts(self, hosts: list[str]) -> contextlib.AbstractContextManager[Tables]:
        """Every table of several hosts, changed in one transaction, like :meth:`changing`.

        :raises StoreError: if a host is not in this store (see :attr:`backend`).
        """

    @property
    @abc.abstractmethod
    def backend(self) -> str:
        """Which store this is: two hosts of one backend can move instances between them."""


class MemoryStore(Store):
    """Instances in the worker's memory, one table per host."""

    def __init__(self) -> None:
        self._hosts: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def attach(self, host: str) -> None:
        with self._lock:
            self._hosts.setdefault(host, {table: {} for table in _TABLES})

    @contextlib.contextmanager
    def reading(self, host: str, table: str = INSTANCES) -> Iterator[Mapping[str, Any]]:
        with self._lock:
            yield self._hosts[host][table]

    @contextlib.contextmanager
    def changing(self, host: str, table: str = INSTANCES) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield self._hosts[host][table]

    @contextlib.contextmanager
    def changing_hosts(self, hosts: list[str]) -> Iterator[Tables]:
        with self._lock:
            missing = [host for host in hosts if host not in self._hosts]
            if missing:
                raise StoreError(f"host {missing[0]} is not kept in this worker's memory")
            yield {host: self._hosts[host] for host in hosts}

    @property
    def backend(self) -> str:
        return f"memory of process {os.getpid()} ({id(self):#x})"


class FileStore(Store):
    """Instances in ``<directory>/<host>.json``, shared by every process naming the directory.

    A transaction that changes a host holds an exclusive ``flock`` on the
    host's lock file (``<host>.lock``; every transaction opens it anew, so
    threads of one process exclude each other too), reads the state file,
    and replaces it whole (a temporary file, then ``os.replace``). A reader
    needs no lock: it opens one complete version of the file or the next.
    A process killed mid-write leaves the previous version in place; no
    ``fsync``, since the state has to outlive processes, not the machine.
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def attach(self, host: str) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with self._locked(host):
                self._load(host)
        except OSError as exc:
            raise StoreError(f"cannot keep state in {self.directory}: {exc}") from exc

    @contextlib.contextmanager
    def reading(self, host: str, table: str = INSTANCES) -> Iterator[Mapping[str, Any]]:
        yield self._load(host)[table]

    @contextlib.contextmanager
    def changing(self, host: str, table: str = INSTANCES) -> Iterator[dict[str, Any]]:
        with self._locked(host):
            tables = self._load(host)
            try:
                yield tables[table]
            finally:
                self._save(host, tables)

    @contextlib.contextmanager
    def changing_hosts(self, hosts: list[str]) -> Iterator[Tables]:
        with contextlib.ExitStack() as locks:
            for host in sorted(set(hosts)):  # one order everywhere: no deadlock
                locks.enter_context(self._locked(host))
            tables = {host: self._load(host) for host in hosts}
            try:
                yield tables
            finally:
                for host, each in tables.items():
                    self._save(host, each)

    @property
    def backend(self) -> str:
        return f"directory {self.directory.resolve()}"

    def _path(self, host: str, suffix: str) -> Path:
        # Quoted, so that any host name is one file name inside the directory.
        return self.directory / f"{quote(host, safe='')}{suffix}"

    @contextlib.contextmanager
    def _locked(self, host: str) -> Iterator[None]:
        fd = os.open(self._path(host, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _load(self, host: str) -> dict[str, dict[str, Any]]:
        path = self._path(host, ".json")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {table: {} for table in _TABLES}
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        try:
            state = json.loads(text)
            if "instances" not in state:  # one older than images has no images
                raise KeyError("instances")
            return {
                table: {key: load(each) for key, each in state.get(table, {}).items()}
                for table, load in _TABLES.items()
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path} is not a fake hypervisor's state: {exc!r}") from exc

    def _save(self, host: str, tables: dict[str, dict[str, Any]]) -> None:
        path = self._path(host, ".json")
        # One writer per host at a time (the lock), so one temporary name per host will do.
        temporary = self._path(host, ".json.tmp")
        state: dict[str, Any] = {"host": host}
        for table, rows in tables.items():
            state[table] = {key: dataclasses.asdict(each) for key, each in rows.items()}
        try:
            temporary.write_text(json.dumps(state), encoding="utf-8")
            os.replace(temporary, path)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc
