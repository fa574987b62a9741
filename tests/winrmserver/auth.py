"""Server-side authentication: NTLM through pyspnego, Basic, and WinRM message sealing.

NTLM is connection-based: the Negotiate/Challenge/Authenticate exchange happens on
one keep-alive connection and its session keys then seal every later message on
that connection. Over HTTP, pywinrm (``transport='ntlm'``) sends those messages as
``multipart/encrypted`` with ``protocol="application/HTTP-SPNEGO-session-encrypted"``
(MS-WSMV 2.2.9.1.1): a header part carrying the plaintext length and an
``application/octet-stream`` part holding a 4-byte little-endian signature length,
the 16-byte NTLM signature and the sealed SOAP envelope.

pyspnego's NTLM acceptor reads its credentials from the file named by the
``NTLM_USER_FILE`` environment variable (``DOMAIN:USER:PASSWORD`` lines). Each
:class:`CredentialStore` writes its own file and every acceptor step runs with the
variable pointing at it, under one process-wide lock, so several servers with
different users can run in one process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import os
import struct
import tempfile
import threading
from collections.abc import Iterator

import spnego
import spnego.channel_bindings
import spnego.exceptions

__all__ = [
    "BOUNDARY",
    "ENCRYPTED_CONTENT_TYPE",
    "AuthFailed",
    "CredentialStore",
    "NtlmAcceptor",
    "channel_bindings_for",
    "decrypt_message",
    "encrypt_message",
]

BOUNDARY = b"--Encrypted Boundary"
PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{PROTOCOL}";boundary="Encrypted Boundary"'
_OCTET = b"\tContent-Type: application/octet-stream\r\n"
_ENV_LOCK = threading.Lock()


class AuthFailed(Exception):
    """Credentials or tokens were rejected: the client gets HTTP 401."""


def _split(user: str) -> tuple[str, str]:
    if "\\" in user:
        domain, name = user.split("\\", 1)
        return domain, name
    return "", user


class CredentialStore:
    """The accounts a test server accepts, for Basic and for NTLM."""

    def __init__(self, users: dict[str, str]) -> None:
        for user, password in users.items():
            if ":" in user or ":" in password or "\n" in user + password:
                raise ValueError("user names and passwords may not contain ':' or newlines")
        self.users = dict(users)
        fd, self.path = tempfile.mkstemp(prefix="winrm-ntlm-users-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for user, password in users.items():
                domain, name = _split(user)
                handle.write(f"{domain}:{name}:{password}\n")

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def check_basic(self, header_value: str) -> str:
        """The user named by a ``Basic`` Authorization value, or :class:`AuthFailed`."""
        try:
            user, _, password = (
                base64.b64decode(header_value, validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise AuthFailed("malformed Basic credentials") from exc
        for known, expected in self.users.items():
            if known.lower() == user.lower() and hmac.compare_digest(
                expected.encode(), password.encode()
            ):
                return known
        raise AuthFailed("bad user name or password")

    def canonical(self, principal: str) -> str:
        domain, name = _split(principal)
        for known in self.users:
            k_domain, k_name = _split(known)
            if k_name.lower() == name.lower() and k_domain.lower() == domain.lower():
                return known
        return principal

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with _ENV_LOCK:
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = self.path
            try:
                yield
            finally:
                if previous is None:
                    os.environ.pop("NTLM_USER_FILE", None)
                else:
                    os.environ["NTLM_USER_FILE"] = previous


def channel_bindings_for(certificate_der: bytes) -> spnego.channel_bindings.GssChannelBindings:
    """``tls-server-end-point`` bindings (RFC 5929) for the server's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(certificate_der)
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate_der)
    return spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + digest.finalize()
    )


class NtlmAcceptor:
    """The server half of one connection's NTLM exchange and its sealing keys."""

    def __init__(
        self,
        store: CredentialStore,
        bindings: spnego.channel_bindings.GssChannelBindings | None = None,
    ) -> None:
        self.store = store
        self.user = ""
        with store.active():
            self._context = spnego.server(
                protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm, channel_bindings=bindings
            )

    @property
    def complete(self) -> bool:
        return bool(self._context.complete) and bool(self.user)

    def step(self, token: bytes) -> bytes | None:
        try:
            with self.store.active():
                out = self._context.step(token)
        except spnego.exceptions.SpnegoError as exc:
            raise AuthFailed(str(exc)) from exc
        if self._context.complete:
            self.user = self.store.canonical(self._context.client_principal or "")
        return out

    def wrap(self, data: bytes) -> bytes:
        """Signature (16 bytes) followed by the sealed data."""
        return bytes(self._context.wrap(data, encrypt=True).data)

    def unwrap(self, data: bytes) -> bytes:
        try:
            return bytes(self._context.unwrap(data).data)
        except spnego.exceptions.SpnegoError as exc:
            raise AuthFailed(f"message could not be unsealed: {exc}") from exc


def encrypt_message(acceptor: NtlmAcceptor, plaintext: bytes) -> bytes:
    sealed = acceptor.wrap(plaintext)
    signature, data = sealed[:16], sealed[16:]
    return (
        BOUNDARY + b"\r\n"
        b"\tContent-Type: " + PROTOCOL.encode() + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
        + str(len(plaintext)).encode()
        + b"\r\n"
        + BOUNDARY
        + b"\r\n"
        + _OCTET
        + struct.pack("<i", len(signature))
        + signature
        + data
        + BOUNDARY
        + b"--\r\n"
    )


def decrypt_message(acceptor: NtlmAcceptor, body: bytes) -> bytes:
    """The SOAP envelope inside a ``multipart/encrypted`` body; ValueError if malformed."""
    if not body.startswith(BOUNDARY + b"\r\n") or not body.endswith(BOUNDARY + b"--\r\n"):
        raise ValueError("not an encrypted WinRM message")
    header_end = body.find(BOUNDARY + b"\r\n" + _OCTET, len(BOUNDARY))
    if header_end == -1:
        raise ValueError("encrypted message has no payload part")
    header = body[len(BOUNDARY) + 2 : header_end]
    if PROTOCOL.encode() not in header or b"Length=" not in header:
        raise ValueError("encrypted message header is incomplete")
    expected = int(header.split(b"Length=")[1].split(b"\r\n")[0])
    payload = body[header_end + len(BOUNDARY) + 2 + len(_OCTET) : -(len(BOUNDARY) + 4)]
    (signature_length,) = struct.unpack("<i", payload[:4])
    signature = payload[4 : 4 + signature_length]
    plaintext = acceptor.unwrap(signature + payload[4 + signature_length :])
    if len(plaintext) != expected:
        raise ValueError("decrypted length does not match OriginalContent")
    return plaintext
