"""Secrets in journaled arguments, sealed while they rest in the registry.

A lifecycle message is journaled with its arguments so that another worker
can run it after this one dies; for ``attach_volume`` those include the
volume's connection data, and with it a storage service's credentials (an
iSCSI target's CHAP password). With ``[registry] journal_key_file`` set,
every string whose key names a secret (``auth_password``,
``discovery_auth_password``, a ``secret``, a ``token``, ...) is replaced in
the journal by a Fernet token (AES-128-CBC with an HMAC-SHA256, from
``cryptography``), and opened again only when the entry is replayed. The
workers of one driver share the key file, since any of them may replay
another's entries.

Without a key, arguments are journaled as they came, and
``computedctl upgrade check`` says so.
"""

from __future__ import annotations

import re
from typing import Any

from computed import exception

__all__ = ["Sealer", "SECRET_NAME", "seal", "unseal", "load"]

#: Keys whose string values are secrets, wherever they appear in the arguments.
SECRET_NAME = re.compile(r"(password|passphrase|secret|token|private_key)$", re.IGNORECASE)

_SEALED = "computed.sealed"


class Sealer:
    """Seals and opens secrets with one Fernet key."""

    def __init__(self, key: bytes, source: str = "the key") -> None:
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key.strip())
        except ValueError as exc:
            raise exception.ConfigError(
                reason=f"{source} is not a Fernet key (32 url-safe base64-encoded bytes): {exc}"
            ) from exc
        self.source = source

    def seal(self, value: str) -> dict[str, str]:
        return {_SEALED: self._fernet.encrypt(value.encode()).decode("ascii")}

    def open(self, token: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise exception.ConfigError(
                reason=f"a secret in this journal entry was sealed with another key than "
                f"{self.source}: give every worker of the driver the same "
                "[registry] journal_key_file"
            ) from exc


def load(path: str) -> Sealer | None:
    """The sealer of ``[registry] journal_key_file``; None when it is empty.

    :raises computed.exception.ConfigError: naming the file, when it cannot be
        read or holds no key.
    """
    if not path:
        return None
    try:
        with open(path, "rb") as fh:
            key = fh.read()
    except OSError as exc:
        raise exception.ConfigError(
            reason=f"[registry] journal_key_file {path}: {exc.strerror}"
        ) from exc
    return Sealer(key, f"[registry] journal_key_file {path}")


def seal(value: Any, sealer: Sealer | None) -> Any:
    """``value`` (JSON values) with every secret string sealed; as it is without a sealer."""
    if sealer is None:
        return value
    if isinstance(value, dict):
        return {
            key: sealer.seal(item)
            if isinstance(item, str) and SECRET_NAME.search(str(key))
            else seal(item, sealer)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [seal(item, sealer) for item in value]
    return value


def unseal(value: Any, sealer: Sealer | None) -> Any:
    """``value`` with every sealed secret opened.

    :raises computed.exception.ConfigError: for a sealed secret and no key, or
        another key than the one it was sealed with.
    """
    if isinstance(value, dict):
        if set(value) == {_SEALED}:
            if sealer is None:
                raise exception.ConfigError(
                    reason="this journal entry holds a sealed secret and this worker has no "
                    "[registry] journal_key_file to open it: give it the key of the "
                    "driver's other workers"
                )
            return sealer.open(value[_SEALED])
        return {key: unseal(item, sealer) for key, item in value.items()}
    if isinstance(value, list):
        return [unseal(item, sealer) for item in value]
    return value
