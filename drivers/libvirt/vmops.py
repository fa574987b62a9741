"""Domain lifecycle: the contract's instance operations on libvirt domains.

Every transition reads the domain's state, asks :func:`drivers.base.plan_transition`
whether to act (so a refusal is worded exactly as every other driver words
it), then makes the libvirt calls below:

============  =========================================================
operation     libvirt
============  =========================================================
spawn         ``defineXML`` + ``create`` (an existing UUID is returned as is)
destroy       ``destroy`` if active, then ``undefineFlags`` (managed save,
              snapshot, checkpoint metadata, NVRAM)
power_on      ``create`` (a domain still shutting down is destroyed first)
power_off     ``destroy``; with ``[libvirt] shutdown_timeout`` an ACPI
              ``shutdown`` first, pressed again every ``shutdown_retry_interval``;
              a suspended domain loses its save image
pause         ``suspend``
unpause       ``resume``
suspend       ``managedSave`` (a shut-off domain with a managed save image
              is what the contract calls suspended)
resume        ``create``, which restores the image (``pMWakeup`` for a
              guest that suspended itself to RAM)
reboot soft   ``reboot``
reboot hard   ``reset`` (``destroy`` + ``create`` where unsupported), then
              ``resume`` if the domain was paused
============  =========================================================

The devices of contract 1.2 are :mod:`~drivers.libvirt.deviceops`'
business; here each device operation finds the domain and checks that its
devices may change (:func:`drivers.base.check_device_state`).

Contract 1.3:

=====================  ====================================================
operation              libvirt
=====================  ====================================================
snapshot               ``suspend`` of a running domain, ``storageVolCreateXMLFrom``
                       of its root disk into the pool, ``resume``
                       (:mod:`~drivers.libvirt.imageops`)
delete_image           ``storageVolDelete``
rescue                 ``createXMLFrom`` of the rescue image, ``destroy`` if
                       active, ``defineXML`` of the rescue definition
                       (:mod:`~drivers.libvirt.rescue`), ``create``
unrescue               ``destroy``, ``defineXML`` of the definition kept in
                       the metadata, ``create``; the rescue disk is deleted
get_serial_console,    the running domain's XML (:mod:`~drivers.libvirt.consoles`)
get_graphical_console
=====================  ====================================================

libvirt errors other than those handled here propagate as libvirtError; the
driver maps them at its boundary.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import libvirt
from oslo_config import cfg

from computed import exception
from computed.objects import (
    ConsoleConnection,
    DeviceKind,
    ImageRef,
    InstanceInfo,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
    VolumeConnector,
)
from drivers import base
from drivers.libvirt import config, consoles, constants, errors, hostops, rescue
from drivers.libvirt.deviceops import DeviceOps, stored_metadata
from drivers.libvirt.imageops import ImageOps

__all__ = ["Observed", "VMOps", "find_domain", "force_off", "lookup_domain", "observe", "undefine"]

LOG = logging.getLogger(__name__)

#: Seconds between two looks at a guest shutting down.
_SHUTDOWN_POLL = 0.2

_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
)
_UNDEFINE_MORE = libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
_REFUSED = frozenset(
    {libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, libvirt.VIR_ERR_NO_SUPPORT}
)
_DEFINITION = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE

Action = Callable[[libvirt.virDomain, "Observed"], None]


@dataclass(frozen=True)
class Observed:
    """A domain's state as libvirt reports it, and in the contract's terms."""

    state: int
    active: bool
    power_state: str


class VMOps:
    """The instance operations, given an open connection to the host's libvirtd."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf
        self._devices = DeviceOps(conf)
        self._images = ImageOps(conf)
        # Held from choosing a serial console port to defining the domain that takes it.
        self._define_lock = threading.Lock()
        self._actions: dict[str, Action] = {
            "power_on": self._power_on,
            "power_off": self._power_off,
            "pause": lambda dom, _seen: dom.suspend(),
            "unpause": lambda dom, _seen: dom.resume(),
            "suspend": lambda dom, _seen: dom.managedSave(0),
            "resume": self._resume,
            "reboot.soft": lambda dom, _seen: dom.reboot(0),
            "reboot.hard": self._hard_reboot,
        }

    # Instances ------------------------------------------------------------

    def spawn(self, conn: libvirt.virConnect, host: str, spec: InstanceSpec) -> InstanceInfo:
        dom = find_domain(conn, spec.uuid)
        if dom is not None:
            return self.info(dom, host)
        domain_type = hostops.domain_type(conn, self._conf.libvirt.virt_type)
        made = self._devices.for_spawn(conn, host, spec)
        try:
            with self._define_lock:
                devices = self._consoles(conn, host)
                dom = conn.defineXML(
                    config.domain_xml(spec, domain_type, made.elements, made.records, devices)
                )
        except BaseException:
            made.undo()
            raise
        try:
            dom.create()
        except libvirt.libvirtError:
            # Leave nothing behind, so that spawning again starts afresh.
            try:
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as undefine_error:
                LOG.warning(
                    "Could not undefine %s after a failed start: %s", spec.uuid, undefine_error
                )
            made.undo()
            raise
        LOG.info("Host %s: spawned %s as %s domain %s", host, spec.uuid, domain_type, dom.name())
        return self.info(dom, host)

    def destroy(self, conn: libvirt.virConnect, host: str, uuid: str) -> None:
        dom = find_domain(conn, uuid)
        if dom is not None:
            try:
                if dom.isActive():
                    force_off(dom)
                if dom.isPersistent():
                    undefine(dom)
            except libvirt.libvirtError as exc:
                if errors.code_of(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                # A transient domain vanishes once stopped; either way it is gone.
        # Also after a destroy that failed half-way: its disks and secrets may remain.
        self._devices.remove(conn, uuid)
        if dom is None:
            return
        LOG.info("Host %s: destroyed %s", host, uuid)

    def get_info(self, conn: libvirt.virConnect, host: str, uuid: str) -> InstanceInfo:
        return self.info(lookup_domain(conn, host, uuid), host)

    def list_instances(self, conn: libvirt.virConnect, host: str) -> list[InstanceInfo]:
        found = []
        for dom in conn.listAllDomains(0):
            try:
                if stored_metadata(dom).held is not None:
                    continue  # kept for the revert of a move: not an instance
                found.append(self.info(dom, host))
            except libvirt.libvirtError as exc:
                if errors.code_of(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                    raise  # else it went away while we looked: not on the host any more
        return found

    def transition(
        self, conn: libvirt.virConnect, host: str, uuid: str, operation: str
    ) -> InstanceInfo:
        """Apply the lifecycle ``operation`` (a key of :data:`drivers.base.TRANSITIONS`)."""
        dom = lookup_domain(conn, host, uuid)
        seen = observe(dom)
        if base.plan_transition(operation, uuid, seen.power_state):
            try:
                self._actions[operation](dom, seen)
            except libvirt.libvirtError as exc:
                if errors.code_of(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise
                self._recheck(dom, host, uuid, operation, exc)
        elif operation == "power_off" and seen.active:
            force_off(dom)  # stopped as the contract sees it, but still shutting down
        return self.info(dom, host)

    def info(self, dom: libvirt.virDomain, host: str) -> InstanceInfo:
        """The contract's view of ``dom``."""
        state, max_memory_kib, _memory, vcpus, _cpu_time = dom.info()
        stored = stored_metadata(dom)
        disks, interfaces = self._devices.describe(dom, stored)
        return InstanceInfo(
            uuid=dom.UUIDString(),
            name=stored.name if stored.name else dom.name(),
            host=host,
            power_state=observe(dom, state, stored).power_state,
            vcpus=vcpus,
            memory_mb=max_memory_kib // 1024,
            disk_gb=stored.disk_gb,
            block_devices=disks,
            network_interfaces=interfaces,
        )

    # Devices --------------------------------------------------------------

    def attach_volume(
        self,
        conn: libvirt.virConnect,
        host: str,
        uuid: str,
        connection: VolumeConnection,
        mountpoint: str | None,
    ) -> InstanceInfo:
        dom = self._changing(conn, host, uuid, "attach_volume")
        self._devices.attach_volume(host, dom, connection, mountpoint)
        LOG.info("Host %s: volume %s attached to %s", host, connection.volume_id, uuid)
        return self.info(dom, host)

    def detach_volume(
        self, conn: libvirt.virConnect, host: str, uuid: str, volume_id: str
    ) -> InstanceInfo:
        dom = self._changing(conn, host, uuid, "detach_volume")
        self._devices.detach_volume(dom, volume_id)
        return self.info(dom, host)

    def extend_volume(
        self, conn: libvirt.virConnect, host: str, uuid: str, volume_id: str, new_size: int
    ) -> InstanceInfo:
        dom = self._changing(conn, host, uuid, "extend_volume")
        self._devices.extend_volume(host, dom, volume_id, new_size)
        return self.info(dom, host)

    def attach_interface(
        self, conn: libvirt.virConnect, host: str, uuid: str, vif: NetworkInterface
    ) -> InstanceInfo:
        dom = self._changing(conn, host, uuid, "attach_interface")
        self._devices.attach_interface(host, dom, vif)
        LOG.info("Host %s: port %s plugged into %s", host, vif.port_id, uuid)
        return self.info(dom, host)

    def detach_interface(
        self, conn: libvirt.virConnect, host: str, uuid: str, port_id: str
    ) -> InstanceInfo:
        dom = self._changing(conn, host, uuid, "detach_interface")
        self._devices.detach_interface(dom, port_id)
        return self.info(dom, host)

    def check_network(self, conn: libvirt.virConnect, host: str, network: str) -> None:
        """:raises computed.exception.InvalidRequest: if ``host`` has no such network."""
        self._devices.check_network(conn, host, network)

    def get_volume_connector(
        self, conn: libvirt.virConnect, host: str, uri: str
    ) -> VolumeConnector:
        return self._devices.connector(conn, host, uri)

    def _changing(
        self, conn: libvirt.virConnect, host: str, uuid: str, operation: str
    ) -> libvirt.virDomain:
        """The domain of ``uuid``, if its devices may change now."""
        dom = lookup_domain(conn, host, uuid)
        base.check_device_state(operation, uuid, observe(dom).power_state)
        return dom

    # Images, rescue and consoles (1.3) -------------------------------------

    def snapshot(
        self,
        conn: libvirt.virConnect,
        host: str,
        uuid: str,
        image_name: str,
        progress: base.Progress,
    ) -> ImageRef:
        """Copy the root disk into an image, pausing a running domain meanwhile.

        The copy of a paused guest's disk is crash-consistent, as if it lost
        power; qemu has flushed what the guest wrote when it pauses.
        """
        found = self._images.find(conn, host, uuid, image_name)
        if found is not None:
            return found  # whatever became of the instance since
        dom = lookup_domain(conn, host, uuid)
        seen = observe(dom)
        base.check_state("snapshot", uuid, seen.power_state, base.SNAPSHOT_STATES)
        root = rescue.root_disk(_definition(dom))
        path = rescue.source_path(root) if root is not None else None
        if path is None:
            raise exception.UnsupportedOperation(
                operation="snapshot",
                driver=errors.DRIVER,
                host=host,
                detail=f"instance {uuid} has no local root disk to copy",
            )
        pause = seen.power_state == PowerState.RUNNING
        if pause:
            dom.suspend()
        try:
            return self._images.take(conn, host, uuid, image_name, path, progress)
        finally:
            if pause:
                dom.resume()

    def delete_image(self, conn: libvirt.virConnect, host: str, image_id: str) -> None:
        self._images.delete(conn, host, image_id)

    def rescue(
        self, conn: libvirt.virConnect, host: str, uuid: str, rescue_image: str | None
    ) -> InstanceInfo:
        dom = lookup_domain(conn, host, uuid)
        stored = stored_metadata(dom)
        seen = observe(dom, stored=stored)
        if not base.plan_transition("rescue", uuid, seen.power_state):
            if not seen.active:
                dom.create()  # a rescue stopped half-way, or the rescue system shut down
            return self.info(dom, host)
        image = rescue_image or stored.image or _root_image(stored)
        if image is None:
            raise exception.InvalidRequest(
                operation="rescue",
                reason=f"instance {uuid} was built from no image (booted from a volume): "
                "name a rescue image",
            )
        text = dom.XMLDesc(_DEFINITION)
        path = self._images.rescue_disk(conn, host, uuid, image)
        try:
            if seen.active:
                force_off(dom)
            dom = conn.defineXML(rescue.definition(ET.fromstring(text), text, path, stored))
            dom.create()
        except BaseException:
            self._restore(conn, host, uuid, text, seen.active)
            raise
        LOG.info("Host %s: %s rescued from image %r", host, uuid, image)
        return self.info(dom, host)

    def unrescue(self, conn: libvirt.virConnect, host: str, uuid: str) -> InstanceInfo:
        dom = lookup_domain(conn, host, uuid)
        stored = stored_metadata(dom)
        if not base.plan_transition("unrescue", uuid, observe(dom, stored=stored).power_state):
            return self.info(dom, host)
        assert stored.rescue is not None  # what makes it rescued
        if dom.isActive():
            force_off(dom)
        dom = conn.defineXML(stored.rescue)
        self._images.remove_rescue_disk(conn, host, uuid)
        dom.create()
        LOG.info("Host %s: %s unrescued", host, uuid)
        return self.info(dom, host)

    def get_serial_console(
        self, conn: libvirt.virConnect, host: str, uuid: str
    ) -> ConsoleConnection:
        dom = self._with_console(conn, host, uuid, "get_serial_console")
        live = ET.fromstring(dom.XMLDesc(0))
        return consoles.serial_console(uuid, host, live, lambda: _hypervisor_address(conn))

    def get_graphical_console(
        self, conn: libvirt.virConnect, host: str, uuid: str
    ) -> ConsoleConnection:
        dom = self._with_console(conn, host, uuid, "get_graphical_console")
        live = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))  # with the password
        return consoles.graphical_console(uuid, host, live, lambda: _hypervisor_address(conn))

    def _with_console(
        self, conn: libvirt.virConnect, host: str, uuid: str, operation: str
    ) -> libvirt.virDomain:
        dom = lookup_domain(conn, host, uuid)
        base.check_state(operation, uuid, observe(dom).power_state, base.CONSOLE_STATES)
        return dom

    def define_with_consoles(
        self,
        conn: libvirt.virConnect,
        host: str,
        build: Callable[[list[ET.Element]], str],
    ) -> libvirt.virDomain:
        """Define the domain ``build(console devices)`` makes, its consoles on free ports
        of the host (a domain brought from another host cannot keep that host's)."""
        with self._define_lock:
            return conn.defineXML(build(self._consoles(conn, host)))

    def _consoles(self, conn: libvirt.virConnect, host: str) -> list[ET.Element]:
        """The console devices of a new domain, with free ports of the configured ranges."""
        opts = self._conf.libvirt
        used: set[int] = set()
        if opts.serial_port_range or opts.graphics_port_range:
            used = consoles.used_ports(
                ET.fromstring(dom.XMLDesc(0)) for dom in conn.listAllDomains(0)
            )

        def take(option: str) -> int | None:
            limits = consoles.port_range(opts[option])
            if limits is None:
                return None
            port = consoles.free_port(*limits, used)
            if port is None:
                raise exception.DriverError(
                    driver=errors.DRIVER,
                    host=host,
                    reason=f"every port of {option} {opts[option]} is taken",
                )
            used.add(port)
            return port

        serial_port = take("serial_port_range")
        graphics_port = None
        if opts.graphics_type in consoles.GRAPHICS_PROTOCOLS:
            graphics_port = take("graphics_port_range")
        return consoles.elements(
            opts.console_listen, serial_port, opts.graphics_type, graphics_port
        )

    def _restore(
        self, conn: libvirt.virConnect, host: str, uuid: str, text: str, start: bool
    ) -> None:
        """Put back the instance a rescue failed on, as it was (best effort)."""
        try:
            dom = conn.lookupByUUIDString(uuid)
            if dom.isActive():
                force_off(dom)
            dom = conn.defineXML(text)
            self._images.remove_rescue_disk(conn, host, uuid)
            if start:
                dom.create()
        except libvirt.libvirtError as exc:
            LOG.warning("Host %s: could not restore %s after a failed rescue: %s", host, uuid, exc)

    # Actions --------------------------------------------------------------

    def _power_on(self, dom: libvirt.virDomain, seen: Observed) -> None:
        if seen.active:
            force_off(dom)  # crashed but kept, or still on its way down
        dom.create()

    def _power_off(self, dom: libvirt.virDomain, seen: Observed) -> None:
        if not seen.active:
            dom.managedSaveRemove(0)  # suspended: forget the saved memory
            return
        timeout = self._conf.libvirt.shutdown_timeout
        if (
            seen.power_state == PowerState.RUNNING
            and timeout > 0
            and _shut_down(dom, timeout, self._conf.libvirt.shutdown_retry_interval)
        ):
            return
        force_off(dom)

    def _resume(self, dom: libvirt.virDomain, seen: Observed) -> None:
        if seen.active:
            dom.pMWakeup(0)  # the guest suspended itself to RAM
        else:
            dom.create()  # restores the managed save image

    def _hard_reboot(self, dom: libvirt.virDomain, seen: Observed) -> None:
        try:
            dom.reset(0)
        except libvirt.libvirtError as exc:
            if errors.code_of(exc) not in _REFUSED:
                raise
            dom.destroy()
            dom.create()
            return
        if observe(dom).state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()  # a reset keeps the vCPUs stopped

    def _recheck(
        self,
        dom: libvirt.virDomain,
        host: str,
        uuid: str,
        operation: str,
        exc: libvirt.libvirtError,
    ) -> None:
        """libvirt refused ``operation`` for the domain's state: did the state just change?"""
        now = observe(dom)
        try:
            must_act = base.plan_transition(operation, uuid, now.power_state)
        except exception.InvalidPowerState as refused:
            raise refused from exc
        if must_act:
            raise errors.translate(
                exc, host=host, operation=operation, uuid=uuid, state=now.power_state
            ) from exc
        # Otherwise the domain reached the target on its own meanwhile.


def lookup_domain(conn: libvirt.virConnect, host: str, uuid: str) -> libvirt.virDomain:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        raise errors.translate(exc, host=host, operation="lookup", uuid=uuid) from exc


def find_domain(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def observe(
    dom: libvirt.virDomain, state: int | None = None, stored: config.StoredMetadata | None = None
) -> Observed:
    if state is None:
        state = dom.state(0)[0]
    active = bool(dom.isActive())
    if (stored or stored_metadata(dom)).rescue is not None:
        # Whatever the rescue system does, the instance is rescued until unrescued.
        return Observed(state, active, PowerState.RESCUED)
    managed_save = state == libvirt.VIR_DOMAIN_SHUTOFF and bool(dom.hasManagedSaveImage(0))
    return Observed(state, active, constants.power_state(state, active, managed_save))


def _definition(dom: libvirt.virDomain) -> ET.Element:
    return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _root_image(stored: config.StoredMetadata) -> str | None:
    """The image the instance's root disk was made from, if any."""
    return next(
        (r.image for r in stored.disks.values() if r.kind == DeviceKind.IMAGE and r.image), None
    )


def _hypervisor_address(conn: libvirt.virConnect) -> str:
    """The hypervisor host's name: from a remote URI, else as libvirt reports it."""
    remote: str | None = urlsplit(conn.getURI()).hostname
    return remote or str(conn.getHostname())


def force_off(dom: libvirt.virDomain) -> None:
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) != libvirt.VIR_ERR_OPERATION_INVALID:
            raise  # else it stopped by itself meanwhile


def _shut_down(dom: libvirt.virDomain, timeout: float, retry_interval: float) -> bool:
    """Press the power button until the guest goes off, for up to ``timeout`` s.

    A guest still booting, or too busy to read its input, misses a press, so
    the button is pressed again every ``retry_interval`` s (as a person would).

    :returns: True if the guest went off.
    """
    deadline = time.monotonic() + timeout
    presses = 0
    while True:
        try:
            dom.shutdown()
        except libvirt.libvirtError as exc:
            if presses and not dom.isActive():
                return True  # went off just as the button was pressed again
            LOG.info("Graceful shutdown of %s refused (%s); forcing it off", dom.name(), exc)
            return False
        presses += 1
        press_again = min(deadline, time.monotonic() + retry_interval)
        while dom.isActive() and time.monotonic() < press_again:
            time.sleep(_SHUTDOWN_POLL)
        if not dom.isActive():
            return True
        if time.monotonic() >= deadline:
            LOG.info(
                "%s still running %.0f s after the power button (pressed %d times); forcing it off",
                dom.name(),
                timeout,
                presses,
            )
            return False
        LOG.debug("%s still running after %d presses; pressing again", dom.name(), presses)


def undefine(dom: libvirt.virDomain) -> None:
    flags = _UNDEFINE_FLAGS | _UNDEFINE_MORE
    if ET.fromstring(dom.XMLDesc(0)).find("os/nvram") is not None:
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if errors.code_of(exc) not in _REFUSED:
            raise
        # Hypervisors without checkpoints or NVRAM (the test driver) refuse those flags.
        dom.undefineFlags(_UNDEFINE_FLAGS)
