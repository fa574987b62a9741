"""How libvirt's states, events, versions and capabilities read in the contract's terms."""

from __future__ import annotations

import pytest

libvirt = pytest.importorskip("libvirt")

from drivers.libvirt import constants, hostops  # noqa: E402
from drivers.libvirt.connection import redact  # noqa: E402


@pytest.mark.parametrize(
    "state, active, managed_save, expected",
    [
        (libvirt.VIR_DOMAIN_RUNNING, True, False, "running"),
        (libvirt.VIR_DOMAIN_BLOCKED, True, False, "running"),
        (libvirt.VIR_DOMAIN_PAUSED, True, False, "paused"),
        (libvirt.VIR_DOMAIN_SHUTDOWN, True, False, "stopped"),
        (libvirt.VIR_DOMAIN_SHUTOFF, False, False, "stopped"),
        (libvirt.VIR_DOMAIN_SHUTOFF, False, True, "suspended"),
        (libvirt.VIR_DOMAIN_CRASHED, False, False, "stopped"),
        (libvirt.VIR_DOMAIN_CRASHED, True, False, "stopped"),
        (libvirt.VIR_DOMAIN_PMSUSPENDED, True, False, "suspended"),
        (libvirt.VIR_DOMAIN_NOSTATE, True, False, "running"),
        (libvirt.VIR_DOMAIN_NOSTATE, False, False, "stopped"),
        (99, False, False, "stopped"),
    ],
)
def test_power_state(state: int, active: bool, managed_save: bool, expected: str) -> None:
    assert constants.power_state(state, active, managed_save) == expected


@pytest.mark.parametrize(
    "event, detail, expected",
    [
        (libvirt.VIR_DOMAIN_EVENT_STARTED, 0, "running"),
        (libvirt.VIR_DOMAIN_EVENT_RESUMED, 0, "running"),
        (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 0, "paused"),
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, "stopped"),
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED, "suspended"),
        (libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED, 0, "suspended"),
        (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, 0, None),
        (libvirt.VIR_DOMAIN_EVENT_DEFINED, 0, None),
    ],
)
def test_event_power_state(event: int, detail: int, expected: str | None) -> None:
    assert constants.event_power_state(event, detail) == expected


def test_event_names() -> None:
    assert constants.event_name(libvirt.VIR_DOMAIN_EVENT_STOPPED) == "stopped"
    assert constants.event_name(1000) == "event-1000"


def test_version_numbers() -> None:
    assert hostops.format_version(9_000_000) == "9.0.0"
    assert hostops.format_version(8_002_013) == "8.2.13"
    assert hostops.format_version(2) == "0.0.2"


def _caps(*guests: tuple[str, list[str]]) -> str:
    body = "".join(
        f"<guest><os_type>{os_type}</os_type><arch name='x86_64'>"
        + "".join(f"<domain type='{t}'/>" for t in types)
        + "</arch></guest>"
        for os_type, types in guests
    )
    return f"<capabilities><host/>{body}</capabilities>"


@pytest.mark.parametrize(
    "guests, expected",
    [
        ([("hvm", ["qemu", "kvm"])], "kvm"),
        ([("hvm", ["qemu"])], "qemu"),
        ([("xen", ["xen"]), ("hvm", ["test"])], "test"),
        ([("xen", ["xen"])], "kvm"),
    ],
)
def test_domain_type_from_capabilities(guests: list[tuple[str, list[str]]], expected: str) -> None:
    assert hostops.pick_domain_type(_caps(*guests)) == expected


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("qemu:///system", "qemu:///system"),
        ("qemu+ssh://root@kvm1/system", "qemu+ssh://root@kvm1/system"),
        ("esx://admin:s3cret@esx1:443/?no_verify=1", "esx://admin:***@esx1:443/?no_verify=1"),
    ],
)
def test_uris_are_logged_without_passwords(uri: str, shown: str) -> None:
    assert redact(uri) == shown
