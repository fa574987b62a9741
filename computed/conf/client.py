"""Options of the client library, rpcapi (group ``[client]``)."""

from __future__ import annotations

from oslo_config import cfg

from computed import exception
from computed.conf import _group

__all__ = ["register_opts", "list_opts", "driver_transport_urls"]

client_group = cfg.OptGroup("client", title="Options of the rpcapi client library")

client_opts = [
    cfg.FloatOpt(
        "cache_ttl",
        default=2.0,
        min=0.0,
        help="Seconds the client trusts its copy of the registry before reading "
        "it again. A host missing from the copy triggers an immediate re-read.",
    ),
    cfg.FloatOpt(
        "handover_timeout",
        default=60.0,
        min=0.0,
        help="Seconds a message for a host whose worker is draining or has just "
        "stopped (a restart, an upgrade) waits in the client for a worker to serve "
        "the host again, before HostUnavailable. Nothing is sent to the stopping "
        "worker meanwhile. 0 raises HostUnavailable at once.",
    ),
    cfg.MultiStrOpt(
        "driver_transport_url",
        default=[],
        secret=True,
        help="DRIVER=URL: the transport URL for hosts whose workers run driver type "
        "DRIVER, when each driver type has its own broker vhost and credentials "
        "(etc/broker-isolation.sh). Repeat it for each such driver type; the client "
        "holds one transport per URL and routes each host by its worker's driver. "
        "Driver types not listed use [DEFAULT] transport_url.",
    ),
    cfg.IntOpt(
        "call_timeout",
        default=60,
        min=1,
        help="Seconds to wait for the answer to a quick call (get_info, ping, "
        "list_instances, host resources and capabilities); the call raises "
        "HostTimeout after it, or BrokerUnavailable if the broker failed it "
        "(docs/delivery.md). Keep it longer than a takeover, '[registry] down_time' + "
        "10 s (docs/ownership.md), so that a call to a host "
        "whose worker just died is answered by the worker that takes it over.",
    ),
    cfg.IntOpt(
        "long_call_timeout",
        default=1800,
        min=1,
        help="Seconds to wait for a lifecycle call (spawn, reboot, ...). The worker "
        "sends a heartbeat every half 'call_timeout' meanwhile, so a dead worker is "
        "still noticed within 'call_timeout'.",
    ),
    cfg.FloatOpt(
        "cast_timeout",
        default=10.0,
        min=0.1,
        help="Seconds a cast (cast=True) may take to be handed to the broker and "
        "confirmed by it; past them it raises BrokerUnavailable. After a broker "
        "failure the client fails every message at once with BrokerUnavailable until "
        "the broker answers again (checked every second).",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, client_group, client_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(client_group, client_opts)]


def driver_transport_urls(conf: cfg.ConfigOpts) -> dict[str, str]:
    """``{driver type: transport URL}`` from ``[client] driver_transport_url``.

    :raises computed.exception.ConfigError: naming an entry that is not DRIVER=URL.
    """
    urls: dict[str, str] = {}
    for entry in conf.client.driver_transport_url:
        driver, sep, url = entry.partition("=")
        driver, url = driver.strip(), url.strip()
        if not sep or not driver or "://" not in url:
            shown = entry.split(":", 1)[0]  # never the credentials
            raise exception.ConfigError(
                reason="[client] driver_transport_url must be DRIVER=URL (a URL like "
                f"[DEFAULT] transport_url), got an entry starting {shown!r}"
            )
        urls[driver] = url
    return urls
