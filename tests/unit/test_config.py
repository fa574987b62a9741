"""The sample config documents every option the project registers."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path

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
    listed = [
        entry.load()()
        for entry in metadata.entry_points(group="oslo.config.opts")
        if entry.name.split(".")[0] == "computed"
    ]
    assert listed, "no oslo.config.opts entry point of the project is installed"
    for group, options in [pair for pairs in listed for pair in pairs]:
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
