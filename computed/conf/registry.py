"""Options of the service registry (group ``[registry]``)."""

from __future__ import annotations

from oslo_config import cfg

from computed.conf import _group

__all__ = ["register_opts", "list_opts"]

registry_group = cfg.OptGroup("registry", title="Service registry options")

registry_opts = [
    cfg.StrOpt(
        "connection",
        default="sqlite:////var/lib/computed/registry.sqlite",
        secret=True,
        help="SQLAlchemy URL of the registry database. An SQLite file serves "
        "workers and clients on one machine; use PostgreSQL "
        "(postgresql+psycopg2://user:password@host/db) across machines.",
    ),
    cfg.FloatOpt(
        "down_time",
        default=30.0,
        min=0.1,
        help="Seconds without a heartbeat after which a worker counts as down "
        "and another worker takes its hosts over. Keep it several heartbeat "
        "intervals long, and '[client] call_timeout' longer than it plus 10 s "
        "(docs/ownership.md).",
    ),
    cfg.StrOpt(
        "journal_key_file",
        default="",
        help="A file holding a Fernet key (32 url-safe base64-encoded bytes; "
        "'computedctl registry key PATH' writes one) with which workers seal the secrets "
        "in the arguments they journal, such as a volume's CHAP password, until the "
        "operation is done. Every worker of a driver needs the same key, since any of "
        "them may replay another's journal. Empty: secrets are journaled as they came "
        "('computedctl upgrade check' warns).",
    ),
    cfg.BoolOpt(
        "auto_migrate",
        default=True,
        help="Bring the registry schema up to date when a worker starts. Turn off "
        "to run 'computedctl db sync' as a separate upgrade step.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, registry_group, registry_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(registry_group, registry_opts)]
