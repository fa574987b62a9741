"""A certificate authority of a test's own, for TLS to a private broker.

::

    files = make_certificates(tmp_path / "tls")
    with RabbitMQBroker(tls=files) as broker:     # a TLS listener only
        options = {"oslo_messaging_rabbit": files.client_options()}

:func:`make_certificates` writes a CA, a server certificate signed by it for
``localhost`` and ``127.0.0.1`` (what a private broker listens on), and a
client certificate, each with its key, into a directory.  Calling it again
elsewhere makes another CA that trusts none of the first one's certificates:
the certificate a client should refuse.

Needs the ``cryptography`` package (in the ``test`` extra); nothing else in
:mod:`computed.testing` imports this module.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TLSFiles", "make_certificates"]

#: How long the certificates are valid: longer than any test run.
_VALIDITY = datetime.timedelta(days=2)


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """PEM files made by :func:`make_certificates`."""

    #: The CA certificate: what ``[oslo_messaging_rabbit] ssl_ca_file`` names.
    ca_file: str
    #: The server's certificate (signed by the CA) and its unencrypted key.
    cert_file: str
    key_file: str
    #: A client certificate (signed by the CA) and its key, for mutual TLS.
    client_cert_file: str
    client_key_file: str

    def client_options(self, client_cert: bool = False) -> dict[str, Any]:
        """``[oslo_messaging_rabbit]`` options for a client that trusts this CA."""
        options: dict[str, Any] = {"ssl": True, "ssl_ca_file": self.ca_file}
        if client_cert:
            options.update(ssl_cert_file=self.client_cert_file, ssl_key_file=self.client_key_file)
        return options


def make_certificates(
    directory: str | os.PathLike[str],
    hostnames: tuple[str, ...] = ("localhost",),
    addresses: tuple[str, ...] = ("127.0.0.1",),
) -> TLSFiles:
    """Write a new CA, a server certificate and a client certificate into ``directory``.

    :param hostnames: DNS names the server certificate is valid for.
    :param addresses: IP addresses the server certificate is valid for.
    """

    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    ca_key = _key()
    ca_name = _name(f"computed test CA {os.urandom(4).hex()}")
    ca = _builder(ca_name, ca_name, ca_key).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    )
    ca_cert = _sign(ca, ca_key)
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    server_key = _key()
    server = (
        _builder(_name(hostnames[0] if hostnames else addresses[0]), ca_name, server_key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    client_key = _key()
    client = _builder(_name("computed test client"), ca_name, client_key).add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
    )
    files = TLSFiles(
        ca_file=os.path.join(directory, "ca.pem"),
        cert_file=os.path.join(directory, "server.pem"),
        key_file=os.path.join(directory, "server-key.pem"),
        client_cert_file=os.path.join(directory, "client.pem"),
        client_key_file=os.path.join(directory, "client-key.pem"),
    )
    _write(files.ca_file, _pem(ca_cert))
    _write(files.cert_file, _pem(_sign(server, ca_key)))
    _write(files.key_file, _key_pem(server_key))
    _write(files.client_cert_file, _pem(_sign(client, ca_key)))
    _write(files.client_key_file, _key_pem(client_key))
    return files


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _VALIDITY)
    )


def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: str, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "wb") as handle:
        handle.write(data)
