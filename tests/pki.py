"""A throw-away PKI for tests and benchmarks: CAs that issue server and client certificates (``cryptography``).

Used by the adapter, optimizer and chart tests and by ``bench/adapter.py`` (which puts ``tests/`` on
``sys.path``); never by the product. Serving certificates name 127.0.0.1 and localhost unless told otherwise.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates (ECDSA P-256, 1 day)."""

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server: bool = False,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    ) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if server:
            sans: list[x509.GeneralName] = []
            for h in hosts:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    sans.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )


@dataclass(frozen=True)
class PlanAPICerts:
    """The plan gRPC API's files in mTLS, as the chart makes them: one CA, the optimizer's serving pair and the
    adapter's client pair (CN ``faro-adapter``)."""

    ca: CertificateAuthority
    ca_file: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    client_name: str

    def server_flags(self) -> list[str]:
        """``faro optimizer`` flags for this server (mTLS, only the adapter's CN allowed)."""
        return ["--grpc-tls-cert-file", str(self.server[0]), "--grpc-tls-private-key-file", str(self.server[1]),
                "--grpc-client-ca-file", str(self.ca_file), "--grpc-allowed-client-names", self.client_name]

    def client_flags(self) -> list[str]:
        """``faro adapter`` (and ``faro status``) flags to reach it."""
        return ["--optimizer-ca-file", str(self.ca_file), "--optimizer-cert-file", str(self.client[0]),
                "--optimizer-key-file", str(self.client[1])]

    def server_tls(self, **overrides: object):  # -> faro.optimizer.service.grpc_security.ServerTLS
        from faro.optimizer.service.grpc_security import ServerTLS

        settings: dict[str, object] = {"cert_file": self.server[0], "key_file": self.server[1],
                                       "client_ca_file": self.ca_file, "allowed_client_names": (self.client_name,)}
        return ServerTLS(**{**settings, **overrides})  # type: ignore[arg-type]

    def client_tls(self, **overrides: object):  # -> faro.optimizer.service.plan_client.PlanClientTLS
        from faro.optimizer.service.plan_client import PlanClientTLS

        settings: dict[str, object] = {"ca_file": self.ca_file, "cert_file": self.client[0],
                                       "key_file": self.client[1]}
        return PlanClientTLS(**{**settings, **overrides})  # type: ignore[arg-type]


def plan_api_certs(directory: Path, *, client_name: str = "faro-adapter") -> PlanAPICerts:
    ca = CertificateAuthority("faro-ca")
    ca_file = directory / "plan-ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    server = ca.issue("faro-optimizer", server=True).write(directory, "plan-server")
    client = ca.issue(client_name).write(directory, "plan-client")
    return PlanAPICerts(ca=ca, ca_file=ca_file, server=server, client=client, client_name=client_name)
