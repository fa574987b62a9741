"""What the journal keeps of an operation's arguments is what a successor runs it with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from computed._journal import Journal, decode_arguments
from computed.objects import (
    Flavor,
    InstanceSpec,
    Migration,
    NetworkInterface,
    VolumeConnection,
)
from computed.registry import Registry

UUID = "7f1f4c8e-7a43-4b6e-9a39-2f3a0c1d9e01"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(f"sqlite:///{tmp_path}/registry.sqlite")
    registry.migrate()
    yield registry
    registry.close()


def _flavor() -> Flavor:
    return Flavor(vcpus=1, memory_mb=64, disk_gb=1)


@pytest.mark.parametrize(
    ("operation", "arguments"),
    [
        ("spawn", {"instance": InstanceSpec(uuid=UUID, name="a", vcpus=1, memory_mb=64)}),
        (
            "attach_interface",
            {
                "uuid": UUID,
                "vif": NetworkInterface(
                    port_id="p1", mac_address="fa:16:3e:00:00:01", network="private"
                ),
            },
        ),
        (
            "attach_volume",
            {
                "uuid": UUID,
                "connection_info": VolumeConnection(
                    volume_id="v1", driver_volume_type="iscsi", data={"target_lun": 1}
                ),
                "mountpoint": None,
            },
        ),
        (
            "live_migration",
            {
                "migration": Migration(
                    id="0b1c1c1e-35a3-4a9e-8b1f-6d2b8f1f0a11",
                    instance_uuid=UUID,
                    kind="live",
                    source_host="h1",
                    dest_host="h2",
                    power_state="running",
                    flavor=_flavor(),
                    old_flavor=_flavor(),
                    dest_data={"uri": "qemu+tcp://h2/system"},
                )
            },
        ),
    ],
)
def test_every_argument_object_is_journaled_and_read_back(
    registry: Registry, operation: str, arguments: dict[str, object]
) -> None:
    journal = Journal(registry, "w1", 1)

    ticket = journal.begin("h1", operation, UUID, {"request_id": "req-1"}, arguments)

    assert ticket.entry is not None, "the journal could not keep the arguments"
    (entry,) = registry.journal_entries("h1")
    assert decode_arguments(entry.arguments) == arguments
