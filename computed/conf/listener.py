"""Options of the worker's message listener (group ``[listener]``)."""

from __future__ import annotations

from oslo_config import cfg

__all__ = ["GROUP", "register_opts", "list_opts", "listener_opts"]

GROUP = "listener"

listener_opts = [
    cfg.IntOpt(
        "hosts_per_connection",
        default=250,
        min=1,
        help="How many host queues one broker connection of a worker consumes. A "
        "worker opens one connection per this many hosts it owns (at least one), "
        "each with one consumer per host queue and one thread reading it.",
    ),
    cfg.IntOpt(
        "prefetch_per_host",
        default=8,
        min=1,
        help="Messages the broker may hand a worker from one host's queue before "
        "the worker acknowledges them. Bounds what a flood on one host can queue "
        "inside the worker; a connection holds at most this many times "
        "'hosts_per_connection' unacknowledged messages.",
    ),
    cfg.IntOpt(
        "executor_threads",
        default=64,
        min=1,
        help="Threads that run operations, shared by all the hosts of a worker. "
        "Operations on one instance run one at a time whatever this is.",
    ),
    cfg.IntOpt(
        "max_message_bytes",
        default=1024 * 1024,
        min=1024,
        help="Largest message body, in bytes, a worker reads. A larger one is "
        "acknowledged and dropped before it is decoded, with one log line. Set the "
        "broker's 'max_message_size' to refuse such messages at publication too.",
    ),
    cfg.IntOpt(
        "max_depth",
        default=32,
        min=4,
        help="Deepest nesting of lists and objects a message may have; a deeper "
        "one is refused with InvalidRequest before it reaches an operation.",
    ),
    cfg.FloatOpt(
        "reply_retry_timeout",
        default=20.0,
        min=0.0,
        help="Seconds a worker keeps trying to deliver a reply whose reply queue "
        "does not exist (a client that is reconnecting after a broker restart, or "
        "one that is gone). Replies waiting to be retried hold no thread.",
    ),
    cfg.IntOpt(
        "max_pending_replies",
        default=10000,
        min=1,
        help="Replies a worker keeps for a retry at most; beyond this the oldest "
        "are dropped (their callers time out).",
    ),
    cfg.FloatOpt(
        "duplicate_window",
        default=86400.0,
        min=0.0,
        help="Seconds the registry remembers the id of a lifecycle message that has "
        "run, so a second delivery of it (after a broker restart, with quorum "
        "queues) is recognised and not run again. Older entries are purged.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(listener_opts, group=GROUP)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(GROUP, listener_opts)]
