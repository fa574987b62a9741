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
    cfg.StrOpt(
        "virt_type",
        help="libvirt domain type of new instances (kvm, qemu, test, ...). Unset: kvm "
        "when the host offers it, else qemu, else the first type the host offers "
        "for hvm guests.",
    ),
    cfg.StrOpt(
        "storage_pool",
        help="Name of a libvirt storage pool whose capacity and allocation each host "
        "reports as its disk, in GiB. Unset: the host reports 0 GiB of disk (the "
        "driver creates no disks; disk_gb of an instance is only recorded).",
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
