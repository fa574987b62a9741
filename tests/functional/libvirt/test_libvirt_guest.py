"""A real guest under ``qemu:///session`` (TCG): the driver with a real hypervisor.

The guest is a Debian kernel booting a busybox initramfs built here from
Debian's packages (``apt-get download``, cached in :data:`CACHE`). Its
``/init`` loads the ACPI button and evdev modules, powers off when the power
button is pressed, and says ``computed-guest: ready`` on the serial console
every second, which the test reads through libvirt's console stream.

Needs qemu-system-x86 and apt access to a Debian mirror (or a filled
cache); skipped otherwise. About 40 s: each boot takes some 10 s under TCG.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from computed import exception
from computed.objects import InstanceSpec, PowerState
from computed.testing.libvirtd import Libvirtd

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import config  # noqa: E402
from drivers.libvirt.driver import LibvirtDriver  # noqa: E402

from .conftest import Events  # noqa: E402

pytestmark = [pytest.mark.libvirt, pytest.mark.libvirt_guest]

HOST = "kvm1"
READY = b"computed-guest: ready"
BOOT_TIMEOUT = 120.0
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
for dev in /sys/class/input/event*; do
  if $B grep -q "Power Button" "$dev/device/name"; then
    ($B dd if="/dev/input/${dev##*/}" of=/dev/null bs=24 count=1 2>/dev/null
     $B poweroff -f) &
  fi
done
while true; do echo "computed-guest: ready"; $B sleep 1; done
"""


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
        modules = root / "lib" / "modules" / version / "kernel" / "drivers"
        initrd = _newc(
            [
                ("bin", 0o40755, b""),
                ("lib", 0o40755, b""),
                ("dev", 0o40755, b""),
                ("init", 0o100755, INIT),
                ("bin/busybox", 0o100755, (root / "bin" / "busybox").read_bytes()),
                ("lib/evdev.ko", 0o100644, (modules / "input" / "evdev.ko").read_bytes()),
                ("lib/button.ko", 0o100644, (modules / "acpi" / "button.ko").read_bytes()),
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
    target = CACHE / f"guest-{_kernel_package()}"
    if not (target / "initrd.img").exists():
        if not os.access(CACHE, os.W_OK):
            pytest.skip(f"no guest in {CACHE}, which this user cannot write to")
        _build(target, target.name.removeprefix("guest-"))
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


def test_a_real_guest_through_its_lifecycle(
    own_daemon: Libvirtd, make_driver: Callable[..., LibvirtDriver], guest_boot: dict[str, str]
) -> None:
    uri = own_daemon.uri_for(driver="qemu")
    driver = make_driver(uri, host=HOST, virt_type="qemu", shutdown_timeout=60.0)
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

        assert driver.reboot(HOST, uuid, "hard").power_state == PowerState.RUNNING
        wait_ready(observer, uuid)

        # The power button, heard by the guest: it shuts itself down.
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
