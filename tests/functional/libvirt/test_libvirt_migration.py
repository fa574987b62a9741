"""Moving instances (contract 1.4) between two private libvirtds of this machine.

Each daemon has a host UUID of its own (``host_uuid`` in its libvirtd.conf),
else libvirt refuses to migrate between them as "the same host". With the
qemu driver (``qemu:///session``, TCG) a real guest is migrated live, its
disk mirrored over NBD, then cold back (its disk streamed from one daemon to
the other), then resized; with the test driver, every cross-host move is
refused at the destination's check, naming what libvirt refused.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oslo_utils import uuidutils

from computed import exception
from computed.objects import (
    BlockDevice,
    Flavor,
    InstanceSpec,
    Migration,
    MigrationStatus,
    PowerState,
)
from computed.testing.libvirtd import Libvirtd

from .conftest import need_libvirtd

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt.driver import TEST_DRIVER_OPERATIONS, LibvirtDriver  # noqa: E402

from .test_libvirt_guest import (  # noqa: E402
    BOOT_TIMEOUT,
    MIB,
    POOL,
    guest_boot,
    guest_devices,
    guest_pool,
    observe,
)

__all__ = ["guest_boot"]  # a fixture, used by name

pytestmark = [pytest.mark.libvirt]

SOURCE, DEST = "kvm-1", "kvm-2"


@pytest.fixture
def two_daemons() -> Iterator[tuple[Libvirtd, Libvirtd]]:
    need_libvirtd()
    with (
        Libvirtd(host_uuid=str(uuidlib.uuid4())) as one,
        Libvirtd(host_uuid=str(uuidlib.uuid4())) as two,
    ):
        yield one, two


def _move(
    driver: LibvirtDriver, host: str, info: Any, kind: str, dest: str, **fields: Any
) -> Migration:
    flavor = Flavor(vcpus=info.vcpus, memory_mb=info.memory_mb, disk_gb=info.disk_gb)
    migration = Migration(
        id=uuidutils.generate_uuid(),
        instance_uuid=info.uuid,
        kind=kind,
        source_host=host,
        dest_host=dest,
        power_state=info.power_state,
        flavor=flavor,
        old_flavor=flavor,
        instance=info,
    )
    migration.assign(**fields)
    migration.validate("test")
    return migration


def _listed(driver: LibvirtDriver, host: str) -> list[tuple[str, str]]:
    return [(i.uuid, str(i.power_state)) for i in driver.list_instances(host)]


#: The libvirt options of both qemu hosts.
QEMU_OPTIONS = {"virt_type": "qemu", "storage_pool": POOL, "graphics_type": "none"}


@pytest.fixture
def qemu_hosts(two_daemons: tuple[Libvirtd, Libvirtd]) -> Iterator[tuple[dict[str, str], Any]]:
    """Both daemons as qemu hosts, each with the image ``base`` in its pool:
    ``({host: uri}, {host: an observer's connection})``."""
    one, two = two_daemons
    uris = {SOURCE: one.uri_for(driver="qemu"), DEST: two.uri_for(driver="qemu")}
    watch = {host: observe(uri) for host, uri in uris.items()}
    try:
        for host, daemon in ((SOURCE, one), (DEST, two)):
            guest_pool(watch[host], daemon, {"base": (64 * MIB, b"ROOTDISK")})
        yield uris, watch
    finally:
        for conn in watch.values():
            conn.close()


def _guest(name: str, guest_boot: dict[str, str]) -> InstanceSpec:
    """A guest booting from a copy of ``base``, which it reads its label from."""
    spec = InstanceSpec(
        uuid=str(uuidlib.uuid4()),
        name=name,
        vcpus=1,
        memory_mb=128,
        metadata=guest_boot,
        block_devices=[BlockDevice(kind="image", image="base", size_gb=1, boot_index=0)],
    )
    spec.validate()
    return spec


@pytest.mark.libvirt_guest
def test_a_real_guest_moves_live_then_cold_then_is_resized(
    qemu_hosts: tuple[dict[str, str], Any],
    make_driver: Callable[..., LibvirtDriver],
    guest_boot: dict[str, str],
) -> None:
    """Live there (the guest keeps running: it reads its own disk on the other
    daemon), cold back (its disk streamed), then a resize reverted and one confirmed."""
    uris, watch = qemu_hosts
    source = make_driver(uris[SOURCE], host=SOURCE, **QEMU_OPTIONS)
    dest = make_driver(uris[DEST], host=DEST, **QEMU_OPTIONS)
    assert "live_migration" in source.operations
    spec = _guest("traveller", guest_boot)
    uuid = spec.uuid
    info = source.spawn(SOURCE, spec)
    guest_devices(watch[SOURCE], uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")

    # Live, to the other daemon.
    live = _move(source, SOURCE, info, "live", DEST)
    live.assign(dest_data=dest.check_migration_destination(DEST, live))
    assert live.dest_data["hypervisor"] == "QEMU"
    live.assign(dest_data={**live.dest_data, **dest.pre_live_migration(DEST, live)})
    progress: list[int] = []
    source.live_migration(SOURCE, uuid, live, progress.append)
    assert progress and progress[-1] == 100 and progress == sorted(progress)
    arrived = dest.post_live_migration_at_destination(DEST, live)
    assert arrived.power_state == PowerState.RUNNING
    assert _listed(source, SOURCE) == []
    assert _listed(dest, DEST) == [(uuid, "running")]
    # The same guest, never rebooted, reads its mirrored disk over there.
    labels = guest_devices(watch[DEST], uuid, lambda d: "vda" in d, 60, "labels")
    assert labels == {"vda": "ROOTDISK"}
    source.live_migration(SOURCE, uuid, live, progress.append)  # run again: it has left

    # Cold, back: stopped, its disk streamed, started again on the first daemon.
    cold = _move(dest, DEST, arrived, "cold", SOURCE)
    cold.assign(dest_data=source.check_migration_destination(SOURCE, cold))
    handed = dest.migrate_disk_and_power_off(DEST, uuid, cold)
    assert dest.migrate_disk_and_power_off(DEST, uuid, cold) == handed
    assert _listed(dest, DEST) == [(uuid, "stopped")]
    cold.assign(source_data=handed)
    back = source.finish_migration(SOURCE, cold)
    assert source.finish_migration(SOURCE, cold) == back
    assert _listed(dest, DEST) == [] and _listed(source, SOURCE) == [(uuid, "running")]
    labels = guest_devices(watch[SOURCE], uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")
    assert labels == {"vda": "ROOTDISK"}
    dest.confirm_migration(DEST, cold)
    dest.confirm_migration(DEST, cold)
    assert [d.name() for d in watch[DEST].listAllDomains(0)] == []

    # A resize reverted, then one confirmed: a bigger root disk is a copy.
    bigger = Flavor(vcpus=2, memory_mb=192, disk_gb=2)
    for confirm in (False, True):
        resize = _move(source, SOURCE, back, "resize", SOURCE)
        resize.assign(flavor=bigger)
        resize.assign(dest_data=source.check_migration_destination(SOURCE, resize))
        resize.assign(source_data=source.migrate_disk_and_power_off(SOURCE, uuid, resize))
        grown = source.finish_migration(SOURCE, resize)
        assert (grown.vcpus, grown.memory_mb, grown.disk_gb) == (2, 192, 2)
        assert grown.power_state == PowerState.RUNNING
        if confirm:
            source.confirm_migration(SOURCE, resize)
        else:
            reverted = source.finish_revert_migration(SOURCE, resize)
            assert (reverted.vcpus, reverted.memory_mb) == (1, 128)
    assert _listed(source, SOURCE) == [(uuid, "running")]
    labels = guest_devices(watch[SOURCE], uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")
    assert labels == {"vda": "ROOTDISK"}
    volumes = sorted(
        v.name() for v in watch[SOURCE].storagePoolLookupByName(POOL).listAllVolumes(0)
    )
    assert volumes == sorted(["base", f"{uuid}-vda-{resize.id[:8]}"])
    source.destroy(SOURCE, uuid)


@pytest.mark.libvirt_guest
@pytest.mark.functional
def test_a_real_guest_moves_live_and_back_between_two_workers_over_the_bus(
    deployment: Any,
    qemu_hosts: tuple[dict[str, str], Any],
    guest_boot: dict[str, str],
) -> None:
    """The client's orchestrator, two worker processes, one per daemon: the guest goes
    there live (still reading its own disk), and comes back cold, confirmed."""
    uris, watch = qemu_hosts
    for n, host in enumerate((SOURCE, DEST), 1):
        deployment.start_worker(
            [host],
            f"guest-mover-{n}",
            DEFAULT={"driver": "libvirt"},
            libvirt={"host_uris": {host: uris[host]}, **QEMU_OPTIONS},
        )
    api = deployment.api()
    spec = _guest("commuter", guest_boot)
    uuid = spec.uuid
    api.spawn(None, SOURCE, spec)
    guest_devices(watch[SOURCE], uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")

    live = api.migrations.live_migrate(None, SOURCE, DEST, uuid)

    assert live.status == MigrationStatus.COMPLETED
    assert [i.uuid for i in api.list_instances(None, SOURCE)] == []
    assert api.get_info(None, DEST, uuid).power_state == PowerState.RUNNING
    labels = guest_devices(watch[DEST], uuid, lambda d: "vda" in d, 60, "labels")
    assert labels == {"vda": "ROOTDISK"}

    cold = api.migrations.migrate(None, DEST, SOURCE, uuid)
    api.migrations.confirm(None, cold.id)

    assert [i.uuid for i in api.list_instances(None, DEST)] == []
    assert api.get_info(None, SOURCE, uuid).power_state == PowerState.RUNNING
    labels = guest_devices(watch[SOURCE], uuid, lambda d: "vda" in d, BOOT_TIMEOUT, "labels")
    assert labels == {"vda": "ROOTDISK"}
    assert [d.name() for d in watch[DEST].listAllDomains(0)] == []
    api.destroy(None, SOURCE, uuid)


def test_the_test_driver_refuses_moves_between_daemons(
    two_daemons: tuple[Libvirtd, Libvirtd], make_driver: Callable[..., LibvirtDriver]
) -> None:
    """It claims only evacuation; the destination's check names what libvirt refused."""
    one, two = two_daemons
    keep = [libvirt.open(d.uri_for()) for d in two_daemons]  # the nodes live while we do
    try:
        for conn in keep:
            conn.storagePoolLookupByName("default-pool").createXML(
                "<volume><name>cirros</name><capacity unit='bytes'>1048576</capacity></volume>", 0
            )
        options = {"storage_pool": "default-pool"}
        source = make_driver(one.uri_for(), host=SOURCE, **options)
        dest = make_driver(two.uri_for(), host=DEST, **options)
        assert source.operations == TEST_DRIVER_OPERATIONS
        assert "evacuate" in source.operations and "live_migration" not in source.operations
        spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name="stay", vcpus=1, memory_mb=64)
        spec.image = "cirros"
        spec.validate()
        info = source.spawn(SOURCE, spec)
        with pytest.raises(exception.MigrationPreCheckFailed, match="virStorageVolUpload"):
            dest.check_migration_destination(DEST, _move(source, SOURCE, info, "cold", DEST))
        with pytest.raises(exception.MigrationPreCheckFailed, match="virConnectCompareCPU"):
            dest.check_migration_destination(DEST, _move(source, SOURCE, info, "live", DEST))
        assert (spec.uuid, "running") in _listed(source, SOURCE)
        assert [
            v.name() for v in keep[1].storagePoolLookupByName("default-pool").listAllVolumes(0)
        ] == ["cirros"]

        # An evacuation rebuilds it from its image on the other daemon.
        evacuation = _move(source, SOURCE, info, "evacuation", DEST, spec=spec, instance=None)
        evacuation.assign(dest_data=dest.check_migration_destination(DEST, evacuation))
        rebuilt = dest.evacuate(DEST, evacuation)
        assert dest.evacuate(DEST, evacuation) == rebuilt
        assert (spec.uuid, "running") in _listed(dest, DEST)
        dest.destroy(DEST, spec.uuid)
        source.destroy(SOURCE, spec.uuid)
    finally:
        for conn in keep:
            conn.close()
