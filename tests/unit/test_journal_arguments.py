"""What the journal keeps of an operation's arguments is what a successor runs it
with; and when it writes that an operation finished."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from computed import _sealing, exception
from computed._journal import Journal, Receipt, decode_arguments, hand_receipt
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


# Finishing ---------------------------------------------------------------------


def _journal(registry: Registry) -> Journal:
    # Batches an hour apart: only another entry's state change finishes one.
    return Journal(registry, "w1", 100, finish_every=3600.0)


def _received(journal: Journal, *message_ids: str) -> list[int]:
    receipts = [Receipt("h1", "reboot", UUID, {}, {"uuid": UUID}, m) for m in message_ids]
    ids = journal.receive(receipts)
    assert ids is not None and None not in ids
    return [i for i in ids if i is not None]


def _begin(journal: Journal, entry: int, message_id: str) -> None:
    hand_receipt(entry, message_id)
    journal.begin("h1", "reboot", UUID, {}, {"uuid": UUID}, repeatable=False)


def test_a_finished_entry_is_written_with_the_next_state_change(registry: Registry) -> None:
    journal = _journal(registry)
    first, second = _received(journal, "m1", "m2")
    _begin(journal, first, "m1")
    journal.done(first, {"phase": "end", "power_state": "running"})
    journal.finish(first)
    assert registry.journal_message_states(["m1", "m2"]) == {"m1": "done", "m2": "received"}

    _begin(journal, second, "m2")

    assert registry.journal_message_states(["m1", "m2"]) == {"m1": "finished", "m2": "running"}
    assert [e.message_id for e in registry.journal_entries("h1")] == ["m2"]


def test_finished_entries_wait_for_the_next_commit_when_one_fails(registry: Registry) -> None:
    journal = _journal(registry)
    first, second, third = _received(journal, "m1", "m2", "m3")
    _begin(journal, first, "m1")
    journal.done(first, {"phase": "end"})
    journal.finish(first)
    _begin(journal, second, "m2")  # finishes m1
    journal.done(second, {"phase": "end"})
    _begin(journal, third, "m3")
    journal.finish(second)

    journal.done(third, {"phase": "end", "unencodable": object()})  # fails: logged, not raised

    states = registry.journal_message_states(["m2", "m3"])
    assert states == {"m2": "done", "m3": "running"}  # m2 not finished by the failed commit
    journal.done(third, {"phase": "end"})
    assert registry.journal_message_states(["m2", "m3"]) == {"m2": "finished", "m3": "done"}


# Secrets at rest ----------------------------------------------------------------

CHAP = {
    "target_iqn": "iqn.2010-10.org.example:v1",
    "target_portal": "192.0.2.10:3260",
    "target_lun": 1,
    "auth_method": "CHAP",
    "auth_username": "initiator-user",
    "auth_password": "chap-secret-1",
    "discovery_auth_password": "chap-secret-2",
}


def _attach(registry: Registry, sealer: _sealing.Sealer | None) -> tuple[dict[str, object], str]:
    """Journal an attach of a CHAP volume; the arguments and the row as stored."""
    arguments = {
        "uuid": UUID,
        "connection_info": VolumeConnection(
            volume_id="v1", driver_volume_type="iscsi", data=dict(CHAP)
        ),
        "mountpoint": None,
    }
    journal = Journal(registry, "w1", 1, sealer=sealer)
    journal.begin("h1", "attach_volume", UUID, {"request_id": "req-1"}, arguments)
    with registry.engine.connect() as connection:
        (stored,) = connection.execute(sa.text("SELECT arguments FROM operation_journal")).one()
    return arguments, str(stored)


def _sealer(tmp_path: Path, name: str = "journal.key") -> _sealing.Sealer:
    path = tmp_path / name
    path.write_bytes(Fernet.generate_key())
    sealer = _sealing.load(str(path))
    assert sealer is not None
    return sealer


def test_secrets_are_sealed_in_the_journal_and_opened_for_a_replay(
    registry: Registry, tmp_path: Path
) -> None:
    sealer = _sealer(tmp_path)

    arguments, stored = _attach(registry, sealer)

    assert "chap-secret-1" not in stored and "chap-secret-2" not in stored
    assert "initiator-user" in stored and "192.0.2.10:3260" in stored  # only secrets are sealed
    (entry,) = registry.journal_entries("h1")
    assert decode_arguments(entry.arguments, sealer) == arguments


def test_without_a_key_secrets_are_journaled_as_they_came(registry: Registry) -> None:
    arguments, stored = _attach(registry, None)

    assert "chap-secret-1" in stored
    (entry,) = registry.journal_entries("h1")
    assert decode_arguments(entry.arguments) == arguments


def test_a_sealed_secret_needs_the_same_key(registry: Registry, tmp_path: Path) -> None:
    _attach(registry, _sealer(tmp_path))
    (entry,) = registry.journal_entries("h1")

    with pytest.raises(exception.ConfigError, match="no \\[registry\\] journal_key_file"):
        decode_arguments(entry.arguments)
    with pytest.raises(exception.ConfigError, match="sealed with another key"):
        decode_arguments(entry.arguments, _sealer(tmp_path, "other.key"))


def test_a_key_file_that_is_missing_or_holds_no_key_is_named(tmp_path: Path) -> None:
    assert _sealing.load("") is None
    with pytest.raises(exception.ConfigError, match="journal_key_file .*missing.key"):
        _sealing.load(str(tmp_path / "missing.key"))
    garbled = tmp_path / "garbled.key"
    garbled.write_text("not a key\n")
    with pytest.raises(exception.ConfigError, match="is not a Fernet key"):
        _sealing.load(str(garbled))
