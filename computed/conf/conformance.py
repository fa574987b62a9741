"""Options on which drivers may serve hosts, and what the suite needs of one (``[conformance]``)."""

from __future__ import annotations

from oslo_config import cfg

from computed.conf import _group

__all__ = [
    "register_opts",
    "list_opts",
    "TIERS",
    "DEFAULT_IMAGE",
    "DEFAULT_NETWORK",
    "DEFAULT_VOLUME_PATH",
]

#: Support tiers, weakest first.
TIERS = ("untested", "partial", "conformant")

#: A network every fake host offers (``[fake] networks``).
DEFAULT_NETWORK = "public"
#: The fake driver opens no file; a real host needs one it can attach.
DEFAULT_VOLUME_PATH = "/var/lib/computed/conformance-volume.img"
#: The image the device checks build root disks from.
DEFAULT_IMAGE = "cirros"

conformance_group = cfg.OptGroup("conformance", title="Conformance and support tiers")

conformance_opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "required_tier",
        default="partial",
        choices=[
            ("untested", "any driver may serve hosts, even one never run through the suite"),
            ("partial", "the driver version must have a recorded conformance run"),
            ("conformant", "the driver version's newest recorded run must have passed every check"),
        ],
        help="The weakest support tier a driver version may have for the client to send "
        "work to its workers. Tiers come from conformance runs recorded in the registry "
        "(computed-conformance --record); 'computedctl tiers' shows them.",
    ),
    cfg.StrOpt(
        "network",
        default=DEFAULT_NETWORK,
        help="For computed-conformance: the name of a network (bridge, XenAPI network, "
        "Hyper-V virtual switch) that exists on the hosts under test, into which the "
        "interface checks plug their interfaces. The default is one of the fake driver's "
        "networks ([fake] networks).",
    ),
    cfg.StrOpt(
        "volume_path",
        default=DEFAULT_VOLUME_PATH,
        help="For computed-conformance: the path, on the hosts under test, of a file or block "
        "device that the checks attach as a volume of type 'file' (connection data "
        "'device_path'). It is attached, never written. The fake driver does not open it.",
    ),
    cfg.StrOpt(
        "image",
        default=DEFAULT_IMAGE,
        help="For computed-conformance: the image the device checks make root disks from; "
        "the hosts under test must have it (a libvirt pool volume, a XenAPI VDI, a "
        "Hyper-V base VHDX of that name).",
    ),
    cfg.StrOpt(
        "volume_command",
        help="For computed-conformance: a command that makes a new volume the hosts under "
        "test can attach, as a storage service would, and prints its connection info as "
        'JSON ({"driver_volume_type": ..., "data": {...}}). It is run with two '
        "arguments, the volume id and its size in GiB, once per volume. Unset, the "
        "checks use iSCSI connection info of targets that need not exist (what the fake "
        "driver and libvirt's test driver take) and 'file' volumes at volume_path.",
    ),
    cfg.StrOpt(
        "hypervisor_command",
        help="For computed-conformance: a command that changes an instance on the hypervisor "
        "itself, behind its worker's back, as a guest or an administrator would, for the "
        "event checks (events.*). It is run with three arguments: the action ('stop': the "
        "guest shuts itself down; 'delete': the instance is removed out of band), the "
        "compute host and the instance's UUID, and must exit 0 once the change is made. "
        "Unset, the event checks are skipped.",
    ),
    cfg.StrOpt(
        "volume_extend_command",
        help="For computed-conformance: a command that grows a volume made by "
        "volume_command, as a storage service does before the compute host is told "
        "(extend_volume). It is run with two arguments, the volume id and its new size "
        "in GiB, and must exit 0. Unset, the extend checks tell the host of a new size "
        "that no storage gave the volume, which suits drivers that resize it themselves "
        "(the fake, libvirt and hyperv drivers) but not one that reads the size back "
        "from its storage (xenapi).",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, conformance_group, conformance_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(conformance_group, conformance_opts)]
