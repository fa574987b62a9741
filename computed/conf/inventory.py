"""Options of a worker's host inventory and claims (group ``[DEFAULT]``, named as nova names them)."""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["register_opts", "list_opts", "inventory_opts"]

inventory_opts: list[cfg.Opt] = [
    cfg.FloatOpt(
        "cpu_allocation_ratio",
        default=4.0,
        min=0.0,
        help="Virtual CPUs a host may give its instances per physical CPU it reports. "
        "A spawn that would take the vCPUs claimed on a host past its vCPUs times this "
        "ratio is refused with InsufficientResources. Nova's initial ratio.",
    ),
    cfg.FloatOpt(
        "ram_allocation_ratio",
        default=1.0,
        min=0.0,
        help="Memory (MiB) a host may give its instances per MiB it reports. 1.0 never "
        "over-commits memory.",
    ),
    cfg.FloatOpt(
        "disk_allocation_ratio",
        default=1.0,
        min=0.0,
        help="Disk (GiB) a host may give its instances per GiB its storage reports. A "
        "host whose driver reports 0 GiB of disk (one that does not measure it) is not "
        "limited by disk.",
    ),
    cfg.FloatOpt(
        "inventory_interval",
        default=60.0,
        min=1.0,
        help="Seconds between two measures of every host a worker serves (the driver's "
        "get_host_resources), recorded in the registry's host inventory. A host whose "
        "figures are unchanged costs one batched update of its measure time per worker, "
        "no more; an operation that changes a host's resources (spawn, destroy) has its "
        "host measured and recorded at once, independently of this interval.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(inventory_opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(None, inventory_opts)]
