"""Options of rolling upgrades: the RPC version pin (group ``[upgrade_levels]``).

See ``docs/upgrade.md`` for the procedure these options serve.
"""

from __future__ import annotations

from oslo_config import cfg

from computed import version
from computed.conf import _group

__all__ = ["register_opts", "list_opts", "AUTO", "AUTO_MIN", "resolve_version"]

AUTO = "auto"
AUTO_MIN = "auto-min"

upgrade_group = cfg.OptGroup(
    "upgrade_levels", title="RPC version pins for rolling upgrades of the workers"
)

upgrade_opts = [
    cfg.StrOpt(
        "compute",
        default=AUTO,
        help="The newest compute RPC version the client sends. Possible values: "
        "'auto' (each host gets the oldest version among the workers consuming its "
        "queue, as they report it in the registry, so one old host does not hold "
        "back the others); 'auto-min' (every host gets the oldest version any live "
        "worker of the deployment reports, the deployment-wide minimum); a version "
        "such as '1.0'; or a release alias such as 'alpha' (see "
        "computed.version.VERSION_ALIASES). A version or alias is a ceiling: a host "
        "whose workers speak less still gets what they speak. The registry is "
        "re-read every '[client] cache_ttl' seconds, so the pin follows workers as "
        "they are upgraded without restarting anything.",
    ),
    cfg.StrOpt(
        "minimum_worker_version",
        help="The oldest RPC version this deployment supports, as a version or a "
        "release alias. A worker that speaks less refuses to start, saying what to "
        "upgrade. Unset: the highest 'oldest version served' (rpc_min_version) among "
        "the live workers in the registry, i.e. the newest code in the deployment "
        "decides what it still serves.",
    ),
    cfg.FloatOpt(
        "counters_interval",
        default=10.0,
        min=0.0,
        help="Seconds between two writes of the client's call counters (calls sent, "
        "backported and refused per host and version) to the registry, where "
        "'computedctl upgrade-status' shows them. 0 writes after every call.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, upgrade_group, upgrade_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(upgrade_group, upgrade_opts)]


def resolve_version(value: str, option: str) -> str:
    """A version for ``value``, a ``major.minor`` version or a release alias.

    :raises ValueError: naming the option and the values it takes.
    """
    value = value.strip()
    if value in version.VERSION_ALIASES:
        return version.VERSION_ALIASES[value]
    try:
        version.parse(value)
    except ValueError:
        aliases = ", ".join(version.VERSION_ALIASES)  # oldest first
        raise ValueError(
            f"[upgrade_levels] {option} = {value!r} is neither a major.minor version "
            f"nor a release alias ({aliases})"
        ) from None
    return value
