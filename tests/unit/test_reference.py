"""docs/reference.md is what the code says: regenerated here and compared."""

from __future__ import annotations

from pathlib import Path

from computed import exception, version
from computed.conformance import reference
from drivers import base

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_is_current() -> None:
    written = (ROOT / reference.DEFAULT_PATH).read_text()
    assert written == reference.render(), (
        f"{reference.DEFAULT_PATH} is out of date with the code; regenerate it with "
        f"`{reference.REGENERATE}` from the repository's root and commit it"
    )


def test_every_object_version_exception_and_driver_method_is_in_it() -> None:
    text = reference.render()
    for objects in version.OBJECT_VERSIONS.values():
        for name, object_version in objects.items():
            assert f"**{name} {object_version}**" in text
    for name in exception.__all__:
        assert f"| `{name}` |" in text
    for operation in base.ALL_OPERATIONS:
        if operation not in base.ALWAYS_SERVED:
            assert f"### `{operation}(" in text


def test_check_mode_says_how_to_regenerate(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "reference.md"
    stale.write_text("# Reference\n")
    assert reference.main(["--check", "--output", str(stale)]) == 1
    assert f"run: {reference.REGENERATE}" in capsys.readouterr().err
    assert reference.main(["--output", str(stale)]) == 0
    assert reference.main(["--check", "--output", str(stale)]) == 0
