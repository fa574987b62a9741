"""Options of the client library, rpcapi (group ``[client]``)."""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["register_opts", "list_opts"]

client_group = cfg.OptGroup("client", title="Options of the rpcapi client library")

client_opts = [
    cfg.FloatOpt(
        "cache_ttl",
        default=2.0,
        min=0.0,
        help="Seconds the client trusts its copy of the registry before reading "
        "it again. A host missing from the copy triggers an immediate re-read.",
    ),
    cfg.IntOpt(
        "call_timeout",
        default=60,
        min=1,
        help="Seconds to wait for the answer to a quick call (get_info, ping, "
        "list_instances, host resources and capabilities).",
    ),
    cfg.IntOpt(
        "long_call_timeout",
        default=1800,
        min=1,
        help="Seconds to wait for a lifecycle call (spawn, reboot, ...). The worker "
        "sends a heartbeat every half 'call_timeout' meanwhile, so a dead worker is "
        "still noticed within 'call_timeout'.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(client_group)
    conf.register_opts(client_opts, group=client_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(client_group, client_opts)]
