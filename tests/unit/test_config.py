"""The sample config documents every option the project registers."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from computed.conf import opts
from drivers.fake import conf as fake_conf

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "computed.conf.sample"


def _sample_options() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    group = "DEFAULT"
    for line in SAMPLE.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif match := re.match(r"^#(\w+) =", line):
            found.setdefault(group, set()).add(match.group(1))
    return found


def test_sample_is_current() -> None:
    in_sample = _sample_options()
    missing = []
    for group, options in opts.list_opts() + fake_conf.list_opts():
        name = "DEFAULT" if group is None else getattr(group, "name", group)
        missing += [
            f"[{name}] {o.dest}" for o in options if o.dest not in in_sample.get(name, set())
        ]
    assert not missing, (
        "etc/computed.conf.sample is stale; regenerate it with "
        "'oslo-config-generator --config-file etc/computed-config-generator.conf'. "
        f"Missing: {missing}"
    )


def test_sample_parses_as_ini() -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(SAMPLE.read_text())
    assert {"registry", "client", "notifications", "fake", "oslo_messaging_rabbit"} <= set(
        parser.sections()
    )
