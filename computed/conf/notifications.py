"""Options of the outcome notifications (group ``[notifications]``)."""

from __future__ import annotations

from oslo_config import cfg, types

from computed.conf import _group

__all__ = ["register_opts", "list_opts"]

notifications_group = cfg.OptGroup("notifications", title="Outcome notification options")

notifications_opts = [
    cfg.StrOpt(
        "topic",
        default="versioned_notifications",
        help="Topic the worker publishes instance.<operation>.start/end/error "
        "notifications on. Consumers read the '<topic>.info' and '<topic>.error' queues.",
    ),
    cfg.ListOpt(
        "phases",
        default=["start", "progress", "end", "error"],
        item_type=types.String(choices=["start", "progress", "end", "error"]),
        help="Which notifications a lifecycle operation publishes. Dropping 'start' "
        "saves one broker round trip per operation (about a quarter of a cast's cost "
        "on the worker); 'progress' is published by long operations (a snapshot) as "
        "they advance; 'end' and 'error' are how a cast reports its outcome.",
    ),
    cfg.FloatOpt(
        "instance_sync_interval",
        default=60.0,
        min=0.0,
        help="Seconds between the worker's looks at every instance of its hosts, to "
        "publish changes no operation made (instance.power_state.update, "
        "instance.delete). Drivers that receive their hypervisor's events (libvirt, "
        "xenapi) publish those at once; this catches the rest. 0 turns the look off.",
    ),
    cfg.BoolOpt(
        "enabled",
        default=True,
        help="Publish outcome notifications. Casts report their outcome only "
        "through them, so turn this off only when nothing consumes them.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, notifications_group, notifications_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(notifications_group, notifications_opts)]
