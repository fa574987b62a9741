"""Options of the fake driver (group ``[fake]``)."""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["register_opts", "list_opts"]

fake_group = cfg.OptGroup("fake", title="Fake driver options")

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
    cfg.IntOpt("vcpus", default=64, min=1, help="Virtual CPUs each fake host offers."),
    cfg.IntOpt("memory_mb", default=262144, min=1, help="Memory each fake host offers, in MiB."),
    cfg.IntOpt("disk_gb", default=4096, min=0, help="Disk each fake host offers, in GiB."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(fake_group)
    conf.register_opts(fake_opts, group=fake_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(fake_group, fake_opts)]
