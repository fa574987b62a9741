"""Options deciding which drivers may serve hosts (group ``[conformance]``)."""

from __future__ import annotations

from oslo_config import cfg

from computed.conf import _group

__all__ = ["register_opts", "list_opts", "TIERS"]

#: Support tiers, weakest first.
TIERS = ("untested", "partial", "conformant")

conformance_group = cfg.OptGroup("conformance", title="Conformance and support tiers")

conformance_opts: list[cfg.Opt] = [
    cfg.StrOpt(
        "required_tier",
        default="partial",
        choices=[
            ("untested", "any driver may serve hosts, even one never run through the suite"),
            ("partial", "the driver version must have a recorded conformance run"),
            ("conformant", "the driver version's newest recorded run must have passed every check"),
        ],
        help="The weakest support tier a driver version may have for the client to send "
        "work to its workers. Tiers come from conformance runs recorded in the registry "
        "(computed-conformance --record); 'computedctl tiers' shows them.",
    ),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    _group.register(conf, conformance_group, conformance_opts)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(conformance_group, conformance_opts)]
