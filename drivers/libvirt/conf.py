"""Options of the libvirt driver (group ``[libvirt]``).

One worker may serve several libvirt hosts: each compute host it serves
connects to ``host_uris[host]`` when present, else to ``connection_uri``.
"""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["GROUP", "list_opts", "register_opts", "uri_for"]

GROUP = "libvirt"


def _group() -> cfg.OptGroup:
    # A new object for every ConfigOpts: oslo.config copies a registered group
    # shallowly, so one shared OptGroup would share overrides between them.
    return cfg.OptGroup(
        GROUP,
        title="libvirt driver options",
        help="How the libvirt driver reaches its hypervisors and runs their domains.",
    )


_PORT_RANGE = r"^[0-9]{1,5}:[0-9]{1,5}$"

libvirt_opts = [
    cfg.StrOpt(
        "connection_uri",
        default="qemu:///system",
        help="libvirt URI of the hypervisor behind every compute host not named in "
        "host_uris, for example qemu:///system, qemu+ssh://root@kvm1/system or "
        "test:///default. See https://libvirt.org/uri.html.",
    ),
    cfg.DictOpt(
        "host_uris",
        default={},
        help="libvirt URI per compute host, as host:uri pairs separated by commas, "
        "for example 'kvm1:qemu+ssh://root@kvm1/system,kvm2:qemu+tls://kvm2/system'. "
        "Only the first ':' of a pair separates the host from the URI. A host "
        "missing here uses connection_uri.",
    ),
    cfg.FloatOpt(
        "shutdown_timeout",
        default=0.0,
        min=0.0,
        help="Seconds power_off waits for a running guest to shut down after an ACPI "
        "power-button press before it forces the domain off. 0 forces it off at "
        "once, like pulling the plug; a paused guest is always forced off.",
    ),
    cfg.FloatOpt(
        "shutdown_retry_interval",
        default=10.0,
        min=0.1,
        help="Seconds between presses of the power button while power_off waits "
        "(shutdown_timeout): a guest that was still booting, or busy, when the "
        "button was first pressed may miss it.",
    ),
    cfg.StrOpt(
        "virt_type",
        help="libvirt domain type of new instances (kvm, qemu, test, ...). Unset: kvm "
        "when the host offers it, else qemu, else the first type the host offers "
        "for hvm guests.",
    ),
    cfg.StrOpt(
        "storage_pool",
        help="Name of the libvirt storage pool holding images and instance disks. A "
        "root disk is a copy of the pool's volume named like the instance's image, "
        "grown to the root disk's size; an ephemeral disk is a new raw volume of the "
        "pool, and so is the root disk of an instance given disk_gb but no image. "
        "Snapshots are kept in the pool as volumes, and so are rescue disks. Each host "
        "reports the pool's capacity as its disk, in GiB. Unset: the host reports 0 GiB "
        "of disk, a root disk is only recorded (disk_gb and image are not acted on), a "
        "spawn with ephemeral disks is refused, and so are snapshots and rescues.",
    ),
    cfg.StrOpt(
        "nfs_mount_point_base",
        default="/var/lib/computed/mnt",
        help="Directory under which each NFS export a volume lives on is mounted, "
        "at <this>/<md5 hex digest of the export>/; the volume is the file named "
        "by its connection data under it. The driver does not mount: the host "
        "must have the export mounted there (as nova's layout has it).",
    ),
    cfg.DictOpt(
        "connector_ips",
        default={},
        help="IP address a storage service should export volumes to, per compute "
        "host, as host:ip pairs. A host missing here uses the address of the host "
        "name in its libvirt URI, or of the name libvirt reports for a local URI "
        "(none if that is a loopback address).",
    ),
    cfg.DictOpt(
        "iscsi_initiators",
        default={},
        help="iSCSI initiator name (iqn...) of each compute host, as host:iqn pairs "
        "(only the first ':' separates them). A host missing here uses the "
        "InitiatorName of /etc/iscsi/initiatorname.iscsi when its libvirt URI is "
        "local (no host name in it), else it reports no initiator.",
    ),
    cfg.StrOpt(
        "console_listen",
        default="127.0.0.1",
        help="Address on the hypervisor host that the display and the TCP serial "
        "console of a new instance listen on, and that a console proxy is told "
        "to connect to. A wildcard (0.0.0.0 or ::) listens everywhere; the proxy "
        "is then told the host name in the libvirt URI, or the one libvirt "
        "reports for a local URI.",
    ),
    cfg.StrOpt(
        "serial_port_range",
        default="",
        regex=f"({_PORT_RANGE})|^$",
        help="TCP ports for the serial consoles of new instances, as low:high "
        "(inclusive), for example 10000:20000. Each new instance takes the "
        "lowest port no domain of the host uses. Empty: the serial console is a "
        "pseudo-terminal on the hypervisor host, offered as protocol pty.",
    ),
    cfg.StrOpt(
        "graphics_port_range",
        default="",
        regex=f"({_PORT_RANGE})|^$",
        help="TCP ports for the displays of new instances, as low:high (inclusive), "
        "for example 5900:5999; each new instance takes the lowest port no domain of "
        "the host uses. Empty: libvirt picks a free port each time the domain starts "
        "(autoport), which a hypervisor running no guest (libvirt's test driver) "
        "never does.",
    ),
    cfg.StrOpt(
        "graphics_type",
        default="vnc",
        choices=[
            ("vnc", "a VNC display, port chosen by libvirt"),
            ("spice", "a SPICE display, port chosen by libvirt"),
            ("none", "no display: get_graphical_console is unsupported for new instances"),
        ],
        help="The display a new instance gets, listening on console_listen.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(libvirt_opts, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(_group(), libvirt_opts)]


def uri_for(conf: cfg.ConfigOpts, host: str) -> str:
    """The libvirt URI that serves compute host ``host``."""
    uri: str = conf.libvirt.host_uris.get(host) or conf.libvirt.connection_uri
    return uri
