"""Options of the fake driver (group ``[fake]``)."""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["GROUP", "register_opts", "list_opts"]

GROUP = "fake"


def _group() -> cfg.OptGroup:
    # A new object for every ConfigOpts: oslo.config copies a registered group
    # shallowly, so one shared OptGroup would share overrides between them.
    return cfg.OptGroup(GROUP, title="Fake driver options")


fake_opts = [
    cfg.FloatOpt(
        "spawn_delay",
        default=0.0,
        min=0.0,
        help="Seconds each spawn takes, to exercise slow operations. 0 means immediate.",
    ),
    cfg.FloatOpt(
        "action_delay",
        default=0.0,
        min=0.0,
        help="Seconds every other lifecycle operation (reboot, power_on, ...) takes. "
        "0 means immediate.",
    ),
    cfg.FloatOpt(
        "snapshot_delay",
        default=0.0,
        min=0.0,
        help="Seconds each snapshot takes, reported as progress in quarters, to exercise "
        "long operations. 0 means immediate.",
    ),
    cfg.FloatOpt(
        "live_migration_delay",
        default=0.0,
        min=0.0,
        help="Seconds each live migration takes, reported as progress in quarters and "
        "abortable between them. 0 means immediate.",
    ),
    cfg.StrOpt(
        "hold_path",
        default="",
        help="A path that, while it exists, holds every spawn and every other lifecycle "
        "operation before it completes (after its delay), as a hypervisor stuck in a task "
        "would; removing it lets them finish. Tests use it to keep operations in flight "
        "for as long as a step takes, without guessing a duration. Empty (the default): "
        "nothing is held.",
    ),
    cfg.HostAddressOpt(
        "console_host",
        default="127.0.0.1",
        help="The address the fake hypervisor names in the consoles it reports (nothing "
        "listens there: a fake instance has no display).",
    ),
    cfg.StrOpt(
        "state_dir",
        default="",
        help="Directory (a path) in which the fake hypervisor keeps its instances, one "
        "JSON file per compute host, changed under a flock(2) lock, so that they outlive "
        "the worker: the worker that serves a host next (after a restart, an upgrade or "
        "a takeover) finds them, as it would on a real hypervisor. Every worker that may "
        "serve the same hosts must name the same directory, on a local file system. "
        "Empty (the default) keeps the instances in the worker's memory, gone when it "
        "exits.",
    ),
    cfg.IntOpt("vcpus", default=64, min=1, help="Virtual CPUs each fake host offers."),
    cfg.IntOpt("memory_mb", default=262144, min=1, help="Memory each fake host offers, in MiB."),
    cfg.IntOpt("disk_gb", default=4096, min=0, help="Disk each fake host offers, in GiB."),
    cfg.ListOpt(
        "networks",
        default=["br-int", "public", "private"],
        help="The networks (bridges) each fake host offers, by name, comma-separated. An "
        "interface whose network is not one of them is refused with InvalidRequest, as a "
        "real host refuses a bridge or virtual switch it does not have.",
    ),
    cfg.StrOpt(
        "iscsi_initiator",
        default="iqn.2004-10.org.computed.fake:{host}",
        help="The iSCSI initiator name each fake host reports in its volume connector. "
        "'{host}' stands for the compute host's name, lower-cased, with every character "
        "other than a letter, digit, '.' or '-' made a '-', so that each host has its own.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(_group())
    conf.register_opts(fake_opts, group=GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(_group(), fake_opts)]
