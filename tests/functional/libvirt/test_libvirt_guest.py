"""A real guest under ``qemu:///session`` (TCG): the driver with a real hypervisor.

The guest is a Debian kernel booting a busybox initramfs built here from
Debian's packages (``apt-get download``, cached in :data:`CACHE`). Its
``/init`` loads the ACPI button, evdev and virtio modules, powers off when
the power button is pressed, and says ``computed-guest: ready`` on the
serial console every second, followed by what it sees of its devices
(``computed-guest: devices vda:<serial>:<sectors> eth0:<mac> .``) and the
first letters and digits of each disk's first 8 bytes (``computed-guest:
labels vda:ROOTDISK .``), which the tests read through libvirt's console
stream. A line holding ``poweroff`` typed on the serial console makes it
power itself off.

Needs qemu-system-x86 and apt access to a Debian mirror (or a filled
cache); skipped otherwise. About 100 s: each boot takes some 10 s under TCG.
"""

from __future__ import annotations

import filecmp
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from computed import exception
from computed.objects import (
    BlockDevice,
    InstanceSpec,
    NetworkInterface,
    PowerState,
    VolumeConnection,
)
from computed.testing.libvirtd import Libvirtd

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import config, connection, devices  # noqa: E402
from drivers.libvirt.driver import LibvirtDriver  # noqa: E402

from .conftest import Events, StateEvents  # noqa: E402

pytestmark = [pytest.mark.libvirt, pytest.mark.libvirt_guest]

HOST = "kvm1"
READY = b"computed-guest: ready"
BOOT_TIMEOUT = 120.0
MIB = 1024 * 1024
#: Built guests are kept here, one directory per kernel package, readable by
#: the unprivileged user the daemon (and so qemu) runs as.
CACHE = Path(os.environ.get("COMPUTED_GUEST_CACHE", "/var/tmp/computed-tests"))

INIT = b"""#!/bin/busybox sh
B=/bin/busybox
$B mkdir -p /proc /sys /dev
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
$B insmod /lib/evdev.ko
$B insmod /lib/button.ko
for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         virtio_blk failover net_failover virtio_net; do
  $B insmod /lib/$m.ko
done
for dev in /sys/class/input/event*; do
  if $B grep -q "Power Button" "$dev/device/name"; then
    ($B dd if="/dev/input/${dev##*/}" of=/dev/null bs=24 count=1 2>/dev/null
     $B poweroff -f) &
  fi
done
devices() {
  line="computed-guest: devices"
  for d in /sys/block/vd*; do
    [ -e "$d" ] && line="$line ${d##*/}:$($B cat $d/serial):$($B cat $d/size)"
  done
  for n in /sys/class/net/*; do
    [ "${n##*/}" = lo ] || line="$line ${n##*/}:$($B cat $n/address)"
  done
  echo "$line ."
}
labels() {
  line="computed-guest: labels"
  for d in /sys/block/vd*; do
    [ -e "$d" ] && line="$line ${d##*/}:$($B head -c 8 /dev/${d##*/} | $B tr -dc A-Za-z0-9)"
  done
  echo "$line ."
}
while true; do
  echo "computed-guest: ready"; devices; labels
  if read -t 1 command; then
    case "$command" in *poweroff*) $B poweroff -f ;; esac
  fi
done
"""

#: The kernel modules /init loads, by their path under the kernel's drivers.
MODULES = {
    "evdev": "drivers/input/evdev.ko",
    "button": "drivers/acpi/button.ko",
    "virtio": "drivers/virtio/virtio.ko",
    "virtio_ring": "drivers/virtio/virtio_ring.ko",
    "virtio_pci_modern_dev": "drivers/virtio/virtio_pci_modern_dev.ko",
    "virtio_pci_legacy_dev": "drivers/virtio/virtio_pci_legacy_dev.ko",
    "virtio_pci": "drivers/virtio/virtio_pci.ko",
    "virtio_blk": "drivers/block/virtio_blk.ko",
    "failover": "net/core/failover.ko",
    "net_failover": "drivers/net/net_failover.ko",
    "virtio_net": "drivers/net/virtio_net.ko",
}
#: Bumped whenever INIT or MODULES change, so that a cached guest is rebuilt.
GUEST_VERSION = 3


# Building the guest ---------------------------------------------------------------------


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed cpio archive in the "newc" format the kernel unpacks."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out.write(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + encoded)
        out.write(b"\0" * (-(110 + len(encoded)) % 4))
        out.write(data + b"\0" * (-len(data) % 4))
    return out.getvalue()


def _run(*cmd: str, cwd: str | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot prepare the guest: {' '.join(cmd)}: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot prepare the guest: {' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def _kernel_package() -> str:
    for line in _run("apt-cache", "depends", "linux-image-amd64").splitlines():
        if line.strip().startswith("Depends: linux-image-"):
            return line.split(":", 1)[1].strip()
    pytest.skip("apt knows no linux-image-amd64 kernel")


def _build(target: Path, package: str) -> None:
    version = package.removeprefix("linux-image-")
    with tempfile.TemporaryDirectory() as work:
        _run("apt-get", "download", package, "busybox-static", cwd=work)
        root = Path(work, "root")
        for deb in Path(work).glob("*.deb"):
            _run("dpkg-deb", "-x", str(deb), str(root))
        modules = root / "lib" / "modules" / version / "kernel"
        initrd = _newc(
            [
                ("bin", 0o40755, b""),
                ("lib", 0o40755, b""),
                ("dev", 0o40755, b""),
                ("init", 0o100755, INIT),
                ("bin/busybox", 0o100755, (root / "bin" / "busybox").read_bytes()),
                *[
                    (f"lib/{name}.ko", 0o100644, (modules / path).read_bytes())
                    for name, path in MODULES.items()
                ],
            ]
        )
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
        shutil.copyfile(root / "boot" / f"vmlinuz-{version}", staging / "vmlinuz")
        (staging / "initrd.img").write_bytes(initrd)
        for path in (staging / "vmlinuz", staging / "initrd.img"):
            path.chmod(0o644)
        staging.chmod(0o755)
        staging.rename(target)  # whole or not at all, for the next run


@pytest.fixture(scope="module")
def guest_boot() -> dict[str, str]:
    """Boot hints for :class:`InstanceSpec` metadata: the cached kernel and initramfs."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    if not CACHE.exists():
        CACHE.mkdir(parents=True)
        CACHE.chmod(0o755)  # whatever the umask: qemu runs as another user when we are root
    package = _kernel_package()
    target = CACHE / f"guest{GUEST_VERSION}-{package}"
    if not (target / "initrd.img").exists():
        if not os.access(CACHE, os.W_OK):
            pytest.skip(f"no guest in {CACHE}, which this user cannot write to")
        _build(target, package)
    return {
        config.BOOT_KERNEL: str(target / "vmlinuz"),
        config.BOOT_INITRD: str(target / "initrd.img"),
        config.BOOT_CMDLINE: "console=ttyS0 quiet panic=-1",
    }


# The test --------------------------------------------------------------------------------


def wait_ready(conn: Any, uuid: str, timeout: float = BOOT_TIMEOUT) -> None:
    """Read the guest's serial console through libvirt until its init says it is ready."""
    dom = conn.lookupByUUIDString(uuid)
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while READY not in seen:
            assert time.monotonic() < deadline, f"guest not ready in {timeout} s: {seen[-500:]!r}"
            data = stream.recv(4096)
            if data == -2:  # nothing yet
                time.sleep(0.2)
                continue
            seen = (seen + data)[-4096:]
    finally:
        stream.abort()


def guest_devices(
    conn: Any,
    uuid: str,
    wanted: Callable[[dict[str, str]], bool],
    timeout: float = 60,
    line_kind: str = "devices",
) -> dict[str, str]:
    """Read the guest's console until its ``line_kind`` line satisfies ``wanted``.

    :returns: what the guest sees: for ``devices``, ``{"vdb": "<serial>:<512-byte
        sectors>", "eth0": "<mac>"}``; for ``labels``, ``{"vda": "<label>"}``.
    """
    dom = conn.lookupByUUIDString(uuid)
    stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    pending, last = b"", None
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, f"the guest never showed it; it saw {last}"
            data = stream.recv(4096)
            if data == -2:  # nothing yet
                time.sleep(0.2)
                continue
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                words = line.decode(errors="replace").split()
                if words[:2] != ["computed-guest:", line_kind] or words[-1:] != ["."]:
                    continue
                last = dict(word.split(":", 1) for word in words[2:-1])
                if wanted(last):
                    return last
    finally:
        stream.abort()


def test_a_real_guest_through_its_lifecycle(
    own_daemon: Libvirtd, make_driver: Callable[..., LibvirtDriver], guest_boot: dict[str, str]
) -> None:
    uri = own_daemon.uri_for(driver="qemu")
    driver = make_driver(
        uri,
        host=HOST,
        virt_type="qemu",
        shutdown_timeout=BOOT_TIMEOUT,
        shutdown_retry_interval=5.0,
    )
    events = Events()
    driver.add_event_listener(events)
    observer = libvirt.open(uri)
    try:
        spec = InstanceSpec(
            uuid=str(uuidlib.uuid4()), name="tiny", vcpus=1, memory_mb=256, metadata=guest_boot
        )
        spec.validate()
        uuid = spec.uuid

        assert driver.spawn(HOST, spec).power_state == PowerState.RUNNING
        wait_ready(observer, uuid)

        assert driver.pause(HOST, uuid).power_state == PowerState.PAUSED
        assert driver.unpause(HOST, uuid).power_state == PowerState.RUNNING
        assert driver.suspend(HOST, uuid).power_state == PowerState.SUSPENDED
        assert observer.lookupByUUIDString(uuid).hasManagedSaveImage(0)
        assert driver.resume(HOST, uuid).power_state == PowerState.RUNNING
        wait_ready(observer, uuid, timeout=30)  # the same boot, carrying on

        # The power button, pressed while the guest is still booting: it misses
        # the presses made before its init listens for the button (and a busy
        # machine may delay that listener past the first "ready"), so the driver
        # presses again until the guest shuts itself down.
        assert driver.reboot(HOST, uuid, "hard").power_state == PowerState.RUNNING
        events.seen.clear()
        assert driver.power_off(HOST, uuid).power_state == PowerState.STOPPED
        shutdown = events.wait(uuid, "shutdown")
        stopped = events.wait(uuid, "stopped")
        assert stopped.detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN  # not destroyed
        assert events.seen.index(shutdown) < events.seen.index(stopped)

        assert driver.power_on(HOST, uuid).power_state == PowerState.RUNNING
        wait_ready(observer, uuid)
        driver.destroy(HOST, uuid)
        with pytest.raises(libvirt.libvirtError):
            observer.lookupByUUIDString(uuid)
    finally:
        observer.close()


def test_a_start_that_fails_leaves_nothing_behind(
    own_daemon: Libvirtd, make_driver: Callable[..., LibvirtDriver], tmp_path: Path
) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    uri = own_daemon.uri_for(driver="qemu")
    driver = make_driver(uri, host=HOST, virt_type="qemu")
    missing = str(tmp_path / "no-such-kernel")
    spec = InstanceSpec(
        uuid=str(uuidlib.uuid4()),
        name="doomed",
        vcpus=1,
        memory_mb=64,
        metadata={config.BOOT_KERNEL: missing},
    )
    spec.validate()
    for _attempt in range(2):  # and spawning again fails again, rather than "succeeding"
        # qemu reports the missing kernel, or, on a loaded machine, dies before
        # libvirt reaches its monitor; either way the spawn must fail cleanly.
        with pytest.raises(exception.DriverError, match="no-such-kernel|monitor") as caught:
            driver.spawn(HOST, spec)
        assert isinstance(caught.value.__cause__, libvirt.libvirtError)
        assert driver.list_instances(HOST) == []


def test_a_real_guest_sees_its_devices_come_and_go(
    own_daemon: Libvirtd, make_driver: Callable[..., LibvirtDriver], guest_boot: dict[str, str]
) -> None:
    """Volumes in the spec and hot-plugged, seen from inside the guest by their serials."""
    uri = own_daemon.uri_for(driver="qemu")
    driver = make_driver(uri, host=HOST, virt_type="qemu", shutdown_timeout=60.0)
    observer = libvirt.open(uri)
    volumes = Path(own_daemon.directory, "volumes")
    volumes.mkdir()
    owner = pwd.getpwnam(own_daemon.user)
    for name in ("vol-spawned", "vol-hot"):
        (volumes / name).write_bytes(b"\0" * MIB)  # 2048 sectors
    for path in (volumes, *volumes.iterdir()):
        os.chown(path, owner.pw_uid, owner.pw_gid)  # qemu runs as the daemon's user

    def file_volume(volume_id: str) -> VolumeConnection:
        return VolumeConnection(
            volume_id=volume_id,
            driver_volume_type="file",
            data={"device_path": str(volumes / volume_id)},
        )

    try:
        spec = InstanceSpec(
            uuid=str(uuidlib.uuid4()),
            name="plugged",
            vcpus=1,
            memory_mb=256,
            metadata=guest_boot,
            block_devices=[BlockDevice(kind="volume", connection_info=file_volume("vol-spawned"))],
        )
        spec.validate()
        uuid = spec.uuid
        info = driver.spawn(HOST, spec)
        assert [(d.device_name, d.volume_id) for d in info.block_devices] == [
            ("vda", "vol-spawned")
        ]
        seen = guest_devices(observer, uuid, lambda d: "vda" in d, timeout=BOOT_TIMEOUT)
        assert seen["vda"] == "vol-spawned:2048"

        # Hot-plugged: the guest finds a new virtio disk with the volume id as serial.
        info = driver.attach_volume(HOST, uuid, file_volume("vol-hot"), None)
        assert info.volume("vol-hot").device_name == "vdb"
        seen = guest_devices(observer, uuid, lambda d: "vdb" in d)
        assert seen["vdb"] == "vol-hot:2048"
        assert driver.attach_volume(HOST, uuid, file_volume("vol-hot"), "vdc") == info

        # Grown while in use: the guest sees the new capacity.
        info = driver.extend_volume(HOST, uuid, "vol-hot", 1)
        assert info.volume("vol-hot").size_gb == 1
        seen = guest_devices(observer, uuid, lambda d: d.get("vdb", "").endswith(":2097152"))
        assert os.path.getsize(volumes / "vol-hot") == 1024 * MIB

        # Unplugged: the guest lets it go.
        info = driver.detach_volume(HOST, uuid, "vol-hot")
        assert info.volume("vol-hot") is None
        seen = guest_devices(observer, uuid, lambda d: "vdb" not in d)
        assert seen["vda"] == "vol-spawned:2048"

        # Stopped: qemu's attachDeviceFlags on the persistent definition only.
        assert driver.power_off(HOST, uuid).power_state == PowerState.STOPPED
        chap = VolumeConnection(
            volume_id="vol-chap",
            driver_volume_type="iscsi",
            data={
                "target_iqn": "iqn.2010-10.org.example:vol-chap",
                "target_portal": "192.0.2.1:3260",
                "target_lun": 0,
                "auth_method": "CHAP",
                "auth_username": "user",
                "auth_password": "password",
            },
        )
        info = driver.attach_volume(HOST, uuid, chap, "vdc")
        assert info.volume("vol-chap").device_name == "vdc"
        usage = devices.secret_usage(uuid, "vol-chap")
        assert observer.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, usage)
        xml = ET.fromstring(observer.lookupByUUIDString(uuid).XMLDesc(0))
        auth = xml.find("devices/disk/target[@dev='vdc']/../auth")
        assert auth.find("secret").attrib == {"type": "iscsi", "usage": usage}
        vif = NetworkInterface(
            port_id="port-1", mac_address="52:54:00:12:34:56", network="lo", mtu=1400
        )
        info = driver.attach_interface(HOST, uuid, vif)
        assert info.interface("port-1").device_name == "tapport-1"
        assert driver.detach_interface(HOST, uuid, "port-1").network_interfaces == []
        assert driver.detach_volume(HOST, uuid, "vol-chap").volume("vol-chap") is None
        assert observer.listAllSecrets(0) == []  # undefined with its volume

        driver.destroy(HOST, uuid)
    finally:
        observer.close()


def test_a_real_guest_sees_a_hot_plugged_interface(
    own_daemon: Libvirtd, make_driver: Callable[..., LibvirtDriver], guest_boot: dict[str, str]
) -> None:
    """A port plugged into the running guest shows up as its eth0, with the port's MAC.

    Under qemu:///session libvirt plugs a bridge port through
    qemu-bridge-helper, which must be setuid root and allowed the bridge in
    /etc/qemu/bridge.conf; and a session libvirtd cannot create a libvirt
    network's bridge. So this runs only given such a bridge, by name, in
    ``COMPUTED_TEST_BRIDGE``.
    """
    bridge = os.environ.get("COMPUTED_TEST_BRIDGE")
    if not bridge:
        pytest.skip(
            "needs COMPUTED_TEST_BRIDGE: a bridge qemu-bridge-helper (setuid) may use, "
            "allowed in /etc/qemu/bridge.conf"
        )
    uri = own_daemon.uri_for(driver="qemu")
    driver = make_driver(uri, host=HOST, virt_type="qemu")
    observer = libvirt.open(uri)
    try:
        spec = InstanceSpec(
            uuid=str(uuidlib.uuid4()), name="nic", vcpus=1, memory_mb=256, metadata=guest_boot
        )
        spec.validate()
        driver.spawn(HOST, spec)
        guest_devices(observer, spec.uuid, lambda d: True, timeout=BOOT_TIMEOUT)
        vif = NetworkInterface(port_id="port-1", mac_address="52:54:00:12:34:56", network=bridge)
        vif.validate("attach_interface")  # as the worker does before the driver sees it
        info = driver.attach_interface(HOST, spec.uuid, vif)
        assert [i.port_id for i in info.network_interfaces] == ["port-1"]
        seen = guest_devices(observer, spec.uuid, lambda d: "eth0" in d)
        assert seen["eth0"] == "52:54:00:12:34:56"
        driver.detach_interface(HOST, spec.uuid, "port-1")
        guest_devices(observer, spec.uuid, lambda d: "eth0" not in d)
        driver.destroy(HOST, spec.uuid)
    finally:
        observer.close()


# Contract 1.3 ------------------------------------------------------------------------------

GIB = 1024 * MIB
POOL = "guest-images"


def observe(uri: str) -> Any:
    """An observer's connection, opened once libvirt's event loop runs: a console
    stream of a connection opened before it never flows."""
    connection.start_event_loop()
    return libvirt.open(uri)


def guest_pool(conn: Any, daemon: Libvirtd, images: dict[str, tuple[int, bytes]]) -> Any:
    """A directory pool of the daemon's, holding ``images``: name -> (size, first bytes)."""
    directory = Path(daemon.directory, "pool")
    directory.mkdir()
    owner = pwd.getpwnam(daemon.user)
    os.chown(directory, owner.pw_uid, owner.pw_gid)  # qemu runs as the daemon's user
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{POOL}</name><target><path>{directory}</path></target></pool>",
        0,
    )
    pool.create(0)
    for name, (size, label) in images.items():
        vol = pool.createXML(
            f"<volume><name>{name}</name><capacity unit='bytes'>{size}</capacity>"
            "<target><format type='raw'/></target></volume>",
            0,
        )
        with open(vol.path(), "r+b") as disk:
            disk.write(label)
    pool.refresh(0)
    return pool


class Terminal:
    """A pty serial console opened as a person's terminal would: what is typed goes
    to the guest, and what the guest writes is read (else its console stalls)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.output = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def type(self, text: bytes) -> None:
        os.write(self._fd, text)

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 4096)
            except OSError:  # EIO: the hypervisor closed its side
                return
            if not data:
                return
            self.output += data

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._reader.join(30)  # until the guest's side closes
        os.close(self._fd)


def test_a_real_guest_powering_itself_off_is_an_event(
    deployment: Any, own_daemon: Libvirtd, guest_boot: dict[str, str], state_events: StateEvents
) -> None:
    """``poweroff`` typed on the serial console the worker reports: the guest stops,
    and libvirt's event makes the worker publish it (its periodic look is off)."""
    uri = own_daemon.uri_for(driver="qemu")
    deployment.start_worker(
        [HOST],
        "guest-events",
        DEFAULT={"driver": "libvirt"},
        libvirt={"host_uris": {HOST: uri}, "virt_type": "qemu"},
        notifications={"instance_sync_interval": 0},
    )
    api = deployment.api()
    spec = InstanceSpec(
        uuid=str(uuidlib.uuid4()), name="quitter", vcpus=1, memory_mb=256, metadata=guest_boot
    )
    observer = observe(uri)
    try:
        assert api.spawn(None, HOST, spec).power_state == PowerState.RUNNING
        wait_ready(observer, spec.uuid)
        console = api.get_serial_console(None, HOST, spec.uuid)
        assert console.protocol == "pty"
        stopped = threading.Event()

        def on_lifecycle(_conn: Any, _dom: Any, event: int, _detail: int, _opaque: Any) -> None:
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                stopped.set()

        observer.domainEventRegisterAny(
            observer.lookupByUUIDString(spec.uuid),
            libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            on_lifecycle,
            None,
        )
        with Terminal(console.path) as terminal:
            # The guest's own pace first (an emulated CPU on a busy machine is
            # slow), as libvirt reports it; then the worker's word of it. On a
            # busy machine a line typed just after the terminal opened has gone
            # unread by the guest (not even echoed), so it is typed again, as a
            # person would, until the guest stops.
            deadline = time.monotonic() + BOOT_TIMEOUT
            while time.monotonic() < deadline:
                terminal.type(b"poweroff\n")
                if stopped.wait(5):
                    break
            assert stopped.is_set(), (
                f"the guest did not power off within {BOOT_TIMEOUT} s: {terminal.output[-500:]!r}"
            )
            assert state_events.wait(spec.uuid, 1, timeout=60) == [
                ("instance.power_state.update", "running", "stopped", "hypervisor")
            ]
        assert b"Power down" in terminal.output
        assert api.get_info(None, HOST, spec.uuid).power_state == PowerState.STOPPED
        api.destroy(None, HOST, spec.uuid)
    finally:
        observer.close()


def test_a_real_guest_snapshotted_rescued_and_reached(
    own_daemon: Libvirtd, make_driver: Callable[..., LibvirtDriver], guest_boot: dict[str, str]
) -> None:
    """Its display speaks VNC; a snapshot copies its disk; a rescue boots the rescue
    image with the guest's own disk second, as the guest itself sees it."""
    uri = own_daemon.uri_for(driver="qemu")
    observer = observe(uri)
    try:
        guest_pool(
            observer,
            own_daemon,
            {"base": (64 * MIB, b"ROOTDISK"), "fixer": (32 * MIB, b"RESCUEME")},
        )
        driver = make_driver(uri, host=HOST, virt_type="qemu", storage_pool=POOL)
        spec = InstanceSpec(
            uuid=str(uuidlib.uuid4()),
            name="patient",
            vcpus=1,
            memory_mb=256,
            metadata=guest_boot,
            block_devices=[BlockDevice(kind="image", image="base", size_gb=1, boot_index=0)],
        )
        spec.validate()
        uuid = spec.uuid
        info = driver.spawn(HOST, spec)
        labels = guest_devices(observer, uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")
        assert labels == {"vda": "ROOTDISK"}

        # Its consoles: a VNC server answers at the display's address; the serial
        # console is the pty the guest writes to.
        display = driver.get_graphical_console(HOST, uuid)
        assert (display.protocol, display.host) == ("vnc", "127.0.0.1")
        with socket.create_connection((display.host, display.port), timeout=30) as vnc:
            assert vnc.recv(12).startswith(b"RFB ")
        serial = driver.get_serial_console(HOST, uuid)
        assert serial.protocol == "pty" and os.path.exists(serial.path)

        # A snapshot of the running guest: paused for the copy, running after it.
        progress: list[int] = []
        running = driver.snapshot(HOST, uuid, "while running", progress.append)
        assert progress[0] == 0 and progress[-1] == 100 and progress == sorted(progress)
        assert driver.get_info(HOST, uuid).power_state == PowerState.RUNNING
        assert os.path.getsize(running.location) == GIB
        with open(running.location, "rb") as image:
            assert image.read(8) == b"ROOTDISK"

        # Rescued: the rescue image is vda and boots, the guest's disk is vdb.
        rescued = driver.rescue(HOST, uuid, "fixer")
        assert rescued.power_state == PowerState.RESCUED
        assert rescued.block_devices == info.block_devices  # its own, as ever
        seen = guest_devices(observer, uuid, lambda d: "vdb" in d, BOOT_TIMEOUT, "labels")
        assert seen == {"vda": "RESCUEME", "vdb": "ROOTDISK"}
        sizes = guest_devices(observer, uuid, lambda d: "vdb" in d)
        assert sizes == {"vda": f":{32 * MIB // 512}", "vdb": f":{GIB // 512}"}
        assert driver.get_serial_console(HOST, uuid).protocol == "pty"

        # Unrescued: its own disk again, alone.
        assert driver.unrescue(HOST, uuid) == info
        seen = guest_devices(observer, uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")
        assert seen == {"vda": "ROOTDISK"}

        # A snapshot of the stopped guest is its disk, byte for byte.
        assert driver.power_off(HOST, uuid).power_state == PowerState.STOPPED
        stopped = driver.snapshot(HOST, uuid, "while stopped", progress.append)
        root = observer.lookupByUUIDString(uuid).XMLDesc(0)
        root_path = ET.fromstring(root).find("devices/disk/source").get("file")
        assert filecmp.cmp(root_path, stopped.location, shallow=False)
        if shutil.which("qemu-img"):
            described = json.loads(
                subprocess.run(
                    ["qemu-img", "info", "--output=json", stopped.location],
                    capture_output=True,
                    check=True,
                    text=True,
                ).stdout
            )
            assert (described["format"], described["virtual-size"]) == ("raw", GIB)

        # The images outlive the instance, until deleted.
        driver.destroy(HOST, uuid)
        assert os.path.exists(running.location) and os.path.exists(stopped.location)
        for image_ref in (running, stopped):
            driver.delete_image(HOST, image_ref.image_id)
            assert not os.path.exists(image_ref.location)
    finally:
        observer.close()
