"""The state of one simulated pool: objects, sessions, tasks, events, faults.

One :class:`PoolState` per pool, guarded by one re-entrant lock. Every
mutation goes through :meth:`PoolState.add`, :meth:`PoolState.update` or
:meth:`PoolState.remove`, which bump the pool's event generation and wake
``event.from`` waiters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import records
from .backends import Backends
from .errors import (
    SESSION_AUTHENTICATION_FAILED,
    SESSION_INVALID,
    XapiError,
    handle_invalid,
    uuid_invalid,
)
from .records import GiB
from .wire import NULL_REF, new_ref, new_uuid, now

DEFAULT_HOST_MEMORY = 16 * GiB
DEFAULT_DOM0_MEMORY = 1 * GiB
DEFAULT_COPY_TIME = 0.2
COPY_STEPS = 5
DEFAULT_DISKS = (
    '<provision><disk device="0" size="{size}" sr="" bootable="true" type="system"/></provision>'
)


@dataclass
class HostSpec:
    """One simulated host: name, physical memory, CPU count."""

    name: str
    memory_total: int = DEFAULT_HOST_MEMORY
    cpu_count: int = 4
    dom0_memory: int = DEFAULT_DOM0_MEMORY


@dataclass
class PoolSpec:
    """One pool: its name, the one account that may log in, its hosts."""

    name: str
    username: str = "root"
    password: str = "password"
    hosts: list[HostSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hosts = [h if isinstance(h, HostSpec) else HostSpec(str(h)) for h in self.hosts]
        if not self.hosts:
            self.hosts = [HostSpec(f"{self.name}-host1")]

    @classmethod
    def parse(cls, text: str) -> PoolSpec:
        """``NAME:user:password[:host1,host2,...]`` (the CLI form)."""
        parts = text.split(":", 3)
        if len(parts) < 3 or not parts[0]:
            raise ValueError(f"pool spec {text!r} is not NAME:user:password[:host,...]")
        hosts = [h for h in parts[3].split(",") if h] if len(parts) == 4 else []
        return cls(parts[0], parts[1], parts[2], [HostSpec(h) for h in hosts])

    @classmethod
    def coerce(cls, value: PoolSpec | str) -> PoolSpec:
        return value if isinstance(value, PoolSpec) else cls.parse(value)


@dataclass
class Session:
    ref: str
    uuid: str
    user: str
    originator: str
    created: float
    last_active: float


@dataclass
class Fault:
    """An injected failure and/or delay for calls of ``method``."""

    method: str
    description: list[str] | None = None
    delay: float = 0.0
    count: int | None = 1
    ref: str | None = None


@dataclass
class ProgressHold:
    """Stops tasks of ``method`` once they reach ``at`` (0 to 1) until released.

    ``reached`` is set when a task stops there; the task stays pending, its
    VM operation in progress, until :meth:`release`.
    """

    method: str
    at: float
    changed: threading.Condition
    reached: threading.Event = field(default_factory=threading.Event)
    released: bool = False

    def release(self) -> None:
        with self.changed:
            self.released = True
            self.changed.notify_all()


@dataclass
class Obj:
    cls: str
    ref: str
    rec: dict[str, Any]
    ctime: int
    mtime: int


class PoolState:
    """Objects, sessions and tasks of one pool, with one lock."""

    def __init__(
        self, spec: PoolSpec, session_ttl: float | None = None, failed_login_delay: float = 0.0
    ) -> None:
        self.spec = spec
        self.session_ttl = session_ttl
        self.failed_login_delay = failed_login_delay
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0
        self.objects: dict[str, dict[str, Obj]] = {c: {} for c in records.CLASSES}
        self.deleted: list[tuple[str, str, int, int, int]] = []
        self.sessions: dict[str, Session] = {}
        self.faults: list[Fault] = []
        self.views: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {}
        self.holds: list[ProgressHold] = []
        #: Seconds a disk copy (VM.snapshot) takes, its task advancing meanwhile.
        self.copy_time = DEFAULT_COPY_TIME
        self.domid_counter = 0
        self.pool_ref = NULL_REF
        self.master_ref = NULL_REF
        self.default_sr = NULL_REF
        self.backends = Backends()
        self._seed()

    # ------------------------------------------------------------ objects

    def _bump(self) -> int:
        self.generation += 1
        self.changed.notify_all()
        return self.generation

    def add(self, cls: str, fields: dict[str, Any], ref: str | None = None) -> str:
        with self.lock:
            rec = records.DEFAULTS[cls]()
            rec.update(fields)
            if not rec.get("uuid"):
                rec["uuid"] = new_uuid()
            ref = ref or new_ref()
            gen = self._bump()
            self.objects[cls][ref] = Obj(cls, ref, rec, gen, gen)
            return ref

    def exists(self, cls: str, ref: object) -> bool:
        return isinstance(ref, str) and ref in self.objects[cls]

    def get(self, cls: str, ref: object) -> dict[str, Any]:
        """The live record (callers hold the lock when they mutate it)."""
        obj = self.objects[cls].get(ref) if isinstance(ref, str) else None
        if obj is None:
            raise handle_invalid(cls, ref)
        return obj.rec

    def update(self, cls: str, ref: str, **changes: Any) -> dict[str, Any]:
        with self.lock:
            rec = self.get(cls, ref)
            rec.update(changes)
            self.touch(cls, ref)
            return rec

    def touch(self, cls: str, ref: str) -> None:
        with self.lock:
            self.objects[cls][ref].mtime = self._bump()

    def remove(self, cls: str, ref: str) -> None:
        with self.lock:
            obj = self.objects[cls].pop(ref, None)
            if obj is None:
                raise handle_invalid(cls, ref)
            self.deleted.append((cls, ref, obj.ctime, obj.mtime, self._bump()))

    def refs(self, cls: str) -> list[str]:
        with self.lock:
            return list(self.objects[cls])

    def items(self, cls: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.lock:
            return iter([(r, o.rec) for r, o in self.objects[cls].items()])

    def by_uuid(self, cls: str, uuid: str) -> str:
        with self.lock:
            for ref, obj in self.objects[cls].items():
                if obj.rec.get("uuid") == uuid:
                    return ref
        raise uuid_invalid(cls, uuid)

    def view(self, cls: str, ref: str) -> dict[str, Any]:
        """A copy of the record as the API shows it (computed fields filled in)."""
        with self.lock:
            rec = dict(self.get(cls, ref))
            hook = self.views.get(cls)
            return hook(ref, rec) if hook else rec

    def link(self, cls: str, ref: str, fld: str, other: str, add: bool = True) -> None:
        """Add/remove ``other`` to/from the set field ``fld`` of ``cls``/``ref``."""
        with self.lock:
            if not self.exists(cls, ref):
                return
            items = self.get(cls, ref)[fld]
            if add and other not in items:
                items.append(other)
            elif not add and other in items:
                items.remove(other)
            else:
                return
            self.touch(cls, ref)

    # ------------------------------------------------------------ sessions

    def login(self, user: str, password: str, originator: str = "") -> str:
        if user != self.spec.username or password != self.spec.password:
            if self.failed_login_delay:  # xapi waits 5 s before refusing a login
                time.sleep(self.failed_login_delay)
            raise XapiError(SESSION_AUTHENTICATION_FAILED, user, "Authentication failure")
        with self.lock:
            ref = new_ref()
            t = time.monotonic()
            self.sessions[ref] = Session(ref, new_uuid(), user, originator, t, t)
            return ref

    def check_session(self, ref: object) -> Session:
        with self.lock:
            sess = self.sessions.get(ref) if isinstance(ref, str) else None
            if sess is not None and self.session_ttl is not None:
                if time.monotonic() - sess.last_active > self.session_ttl:
                    del self.sessions[sess.ref]
                    self.changed.notify_all()
                    sess = None
            if sess is None:
                raise XapiError(SESSION_INVALID, ref if isinstance(ref, str) else repr(ref))
            sess.last_active = time.monotonic()
            return sess

    def session_valid(self, ref: str) -> bool:
        with self.lock:
            return ref in self.sessions

    def logout(self, ref: str) -> None:
        with self.lock:
            self.sessions.pop(ref, None)
            self.changed.notify_all()

    def expire_sessions(self) -> int:
        with self.lock:
            count = len(self.sessions)
            self.sessions.clear()
            self.changed.notify_all()
            return count

    # ------------------------------------------------------------ tasks

    def create_task(self, label: str, description: str = "") -> str:
        return self.add(
            "task",
            {
                "name_label": label,
                "name_description": description,
                "created": now(),
                "resident_on": self.master_ref,
                "allowed_operations": ["cancel"],
            },
        )

    def finish_task(
        self, ref: str, result_xml: str | None = None, error: list[str] | None = None
    ) -> None:
        with self.lock:
            if not self.exists("task", ref):
                return
            rec = self.get("task", ref)
            if rec["status"] not in ("pending", "cancelling"):
                return
            changes: dict[str, Any] = {"finished": now(), "progress": 1.0, "allowed_operations": []}
            if error is None:
                changes.update(status="success", result=result_xml or "")
            else:
                cancelled = rec["status"] == "cancelling" or error[:1] == ["TASK_CANCELLED"]
                changes.update(
                    status="cancelled" if cancelled else "failure", error_info=list(error)
                )
            self.update("task", ref, **changes)

    def copy_progress(self, call: Call) -> None:
        """Spend ``copy_time`` copying for ``call``, its task's ``progress`` rising in
        ``COPY_STEPS`` steps. Called with the lock held; waiting releases it.

        A hold on the message stops it where asked; a ``task.cancel`` meanwhile
        ends it with ``TASK_CANCELLED``.
        """
        if call.task is None:
            return
        for step in range(1, COPY_STEPS):
            deadline = time.monotonic() + self.copy_time / COPY_STEPS
            while (remaining := deadline - time.monotonic()) > 0:
                self.changed.wait(remaining)
            if self.get("task", call.task)["status"] == "cancelling":
                raise XapiError("TASK_CANCELLED", call.task)
            fraction = step / COPY_STEPS
            self.update("task", call.task, progress=fraction)
            for hold in self.holds:
                if hold.method == call.method and fraction >= hold.at and not hold.released:
                    hold.reached.set()
                    while not hold.released:
                        self.changed.wait()

    def hold(self, method: str, at: float) -> ProgressHold:
        with self.lock:
            hold = ProgressHold(method, at, self.changed)
            self.holds.append(hold)
            return hold

    # ------------------------------------------------------------ faults

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, method: str, args: list[Any]) -> Fault | None:
        """The first injected fault matching this call, consumed once."""
        with self.lock:
            for fault in self.faults:
                if fault.method != method:
                    continue
                if fault.ref is not None and fault.ref not in args:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
            return None

    # ------------------------------------------------------------ memory

    def vm_memory_need(self, vm: dict[str, Any]) -> int:
        return int(vm["memory_static_max"]) + int(vm["memory_overhead"])

    def host_free_memory(self, host_ref: str) -> int:
        """Host memory less every domain that is resident on it (dom0 included)."""
        with self.lock:
            metrics = self.get("host_metrics", self.get("host", host_ref)["metrics"])
            used = sum(
                self.vm_memory_need(vm)
                for _, vm in self.items("VM")
                if vm["resident_on"] == host_ref and vm["power_state"] in ("Running", "Paused")
            )
            return int(metrics["memory_total"]) - used

    def refresh_host_metrics(self) -> None:
        with self.lock:
            for host_ref, host in self.items("host"):
                free = self.host_free_memory(host_ref)
                metrics = self.get("host_metrics", host["metrics"])
                if metrics["memory_free"] != free:
                    self.update(
                        "host_metrics", host["metrics"], memory_free=free, last_updated=now()
                    )

    # ------------------------------------------------------------ seeding

    def _seed(self) -> None:
        spec = self.spec
        self.pool_ref = self.add("pool", {"name_label": spec.name})
        self.default_sr = self.add(
            "SR",
            {
                "name_label": "Local storage",
                "type": "lvm",
                "content_type": "user",
                "physical_size": 1024 * GiB,
                "name_description": f"Local storage of {spec.name}",
            },
        )
        self.add(
            "network", {"name_label": "Pool-wide network associated with eth0", "bridge": "xenbr0"}
        )
        for index, hspec in enumerate(spec.hosts):
            host_ref = self._seed_host(hspec, index)
            if index == 0:
                self.master_ref = host_ref
        # One host: its local storage. Several: the pool's shared storage, which
        # every host has plugged (what lets a VM move between them).
        shared = len(spec.hosts) > 1
        hosts = self.refs("host") if shared else [self.master_ref]
        pbds = []
        for host_ref in hosts:
            pbd = self.add(
                "PBD", {"host": host_ref, "SR": self.default_sr, "currently_attached": True}
            )
            self.update("host", host_ref, PBDs=[pbd])
            pbds.append(pbd)
        self.update("SR", self.default_sr, PBDs=pbds)
        if shared:
            self.update(
                "SR",
                self.default_sr,
                name_label="Shared storage",
                shared=True,
                name_description=f"Shared storage of {spec.name}",
            )
        self.update(
            "pool",
            self.pool_ref,
            master=self.master_ref,
            default_SR=self.default_sr,
            suspend_image_SR=self.default_sr,
            crash_dump_SR=self.default_sr,
        )
        self._seed_template(
            "Other install media",
            8 * GiB,
            {"install-methods": "cdrom"},
            "Template which allows VM installation from install media",
        )
        self._seed_template(
            "Debian Bookworm 12",
            10 * GiB,
            {"install-methods": "cdrom,nfs,http,ftp", "linux_template": "true"},
            "Template for Debian Bookworm 12",
        )
        self.refresh_host_metrics()

    def _seed_host(self, hspec: HostSpec, index: int) -> str:
        address = f"192.0.2.{index + 10}"
        # xapi keeps the initiator name in both places (host.set_iscsi_iqn).
        iqn = f"iqn.2024-01.org.example:{hspec.name.lower()}"
        metrics = self.add(
            "host_metrics",
            {
                "memory_total": hspec.memory_total,
                "memory_free": hspec.memory_total,
                "last_updated": now(),
            },
        )
        host_ref = self.add(
            "host",
            {
                "name_label": hspec.name,
                "hostname": hspec.name,
                "address": address,
                "iscsi_iqn": iqn,
                "other_config": {"iscsi_iqn": iqn},
                "metrics": metrics,
                "suspend_image_sr": self.default_sr,
                "crash_dump_sr": self.default_sr,
                "cpu_info": {
                    "cpu_count": str(hspec.cpu_count),
                    "socket_count": "1",
                    "vendor": "GenuineIntel",
                    "speed": "2400.000",
                    "modelname": "Intel(R) Xeon(R) CPU E5-2630 v3 @ 2.40GHz",
                    "family": "6",
                    "model": "63",
                    "stepping": "2",
                    "flags": "fpu de tsc msr pae",
                    "features": "",
                },
            },
        )
        software = dict(self.get("host", host_ref)["software_version"], hostname=hspec.name)
        cpus = [
            self.add("host_cpu", {"host": host_ref, "number": n}) for n in range(hspec.cpu_count)
        ]
        dom0_metrics = self.add(
            "VM_metrics",
            {
                "memory_actual": hspec.dom0_memory,
                "VCPUs_number": hspec.cpu_count,
                "start_time": now(),
                "last_updated": now(),
                "state": ["running"],
            },
        )
        dom0 = self.add(
            "VM",
            {
                "name_label": f"Control domain on host: {hspec.name}",
                "name_description": "The domain which manages physical devices and manages"
                " other domains",
                "power_state": "Running",
                "is_control_domain": True,
                "resident_on": host_ref,
                "domid": 0,
                "metrics": dom0_metrics,
                "memory_static_max": hspec.dom0_memory,
                "memory_dynamic_max": hspec.dom0_memory,
                "memory_dynamic_min": hspec.dom0_memory,
                "memory_static_min": hspec.dom0_memory,
                "memory_target": hspec.dom0_memory,
                "VCPUs_max": hspec.cpu_count,
                "VCPUs_at_startup": hspec.cpu_count,
                "domain_type": "pv",
            },
        )
        self.update(
            "host",
            host_ref,
            software_version=software,
            host_CPUs=cpus,
            control_domain=dom0,
            resident_VMs=[dom0],
        )
        return host_ref

    def _seed_template(
        self, name: str, disk_size: int, extra: dict[str, str], description: str
    ) -> str:
        other = {"default_template": "true", "disks": DEFAULT_DISKS.format(size=disk_size), **extra}
        metrics = self.add("VM_metrics", {"last_updated": now()})
        return self.add(
            "VM",
            {
                "metrics": metrics,
                "name_label": name,
                "name_description": description,
                "is_a_template": True,
                "is_default_template": True,
                "other_config": other,
                "memory_static_max": 2 * GiB,
                "memory_dynamic_max": 2 * GiB,
                "memory_dynamic_min": 2 * GiB,
                "memory_static_min": 512 * 1024 * 1024,
                "VCPUs_max": 1,
                "VCPUs_at_startup": 1,
                "HVM_boot_policy": "BIOS order",
                "HVM_boot_params": {"order": "dc"},
                "platform": {
                    "nx": "true",
                    "acpi": "1",
                    "apic": "true",
                    "pae": "true",
                    "viridian": "true",
                    "device-model": "qemu-upstream-compat",
                },
                "recommendations": '<restrictions><restriction field="memory-static-max" '
                'max="137438953472"/></restrictions>',
            },
        )


@dataclass
class Call:
    """One API call being served: its pool, session, task (if Async), fault."""

    pool: PoolState
    method: str
    session: str = NULL_REF
    task: str | None = None
    fault: Fault | None = None
    fault_applied: bool = False

    def apply_fault(self) -> None:
        """Sleep for an injected delay, honour a task.cancel, raise an injected error.

        Called without the pool lock held. Handlers of VM operations call it
        after marking the VM's current_operations, other handlers get it
        applied before they run.
        """
        if self.fault_applied:
            return
        self.fault_applied = True
        fault = self.fault
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if self.task is not None:
            with self.pool.lock:
                if (
                    self.pool.exists("task", self.task)
                    and self.pool.get("task", self.task)["status"] == "cancelling"
                ):
                    raise XapiError("TASK_CANCELLED", self.task)
        if fault is not None and fault.description:
            raise XapiError(*fault.description)
