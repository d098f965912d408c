"""`onestop certs`: a development CA and per-center certificates for mutual TLS between nodes.

A center's identity is its certificate: the center code is the subject CN, a DNS name
`<code>.centers.onestop` and a URI `onestop://center/<code>`. Keys are ECDSA P-256 (gRPC's
BoringSSL negotiates it everywhere; see docs/INTERCONNECT.md for why not Ed25519).
In production the CA is the government network's; this one is for development and tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.tls import center_dns_name, center_uri

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
DEFAULT_DAYS = 397


@dataclass(frozen=True)
class Issued:
    """The files of one issued certificate."""

    cert: Path
    key: Path
    ca: Path


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signing only; a CA also signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, unit: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "onestop development"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def init_ca(
    directory: Path, *, name: str = "onestop development CA", days: int = 3650, overwrite: bool = False
) -> Issued:
    """Create a self-signed CA (P-256) in `directory`; refuse to overwrite one unless asked."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if cert_path.exists() and not overwrite:
        raise FileExistsError(f"{cert_path} exists; pass --force to replace the CA")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name, "certificate authority")
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(cert=cert_path, key=key_path, ca=cert_path)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{directory / CA_KEY} is not an ECDSA key")
    return cert, key


def issue(
    directory: Path,
    *,
    center: str,
    service: str = "",
    days: int = DEFAULT_DAYS,
    not_before: dt.datetime | None = None,
    self_signed: bool = False,
    out: Path | None = None,
) -> Issued:
    """Issue a certificate for `center` (server and client use) signed by the CA in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    label = f"{service}.{center}" if service else center
    subject = _name(center, f"center {center}" + (f" service {service}" if service else ""))
    start = not_before or (_now() - dt.timedelta(minutes=5))
    if self_signed:
        issuer_name, signer = subject, key
    else:
        ca_cert, ca_key = _load_ca(directory)
        issuer_name, signer = ca_cert.subject, ca_key
    names: list[x509.GeneralName] = [
        x509.DNSName(center_dns_name(center)),
        x509.UniformResourceIdentifier(center_uri(center)),
    ]
    if service:
        names.append(x509.DNSName(f"{service}.{center_dns_name(center)}"))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    cert = builder.sign(signer, hashes.SHA256())
    target = out or directory
    cert_path, key_path = target / f"{label}.pem", target / f"{label}-key.pem"
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return Issued(cert=cert_path, key=key_path, ca=directory / CA_CERT)


def tls_env(issued: Issued) -> dict[str, str]:
    """The ONESTOP_TLS_* variables that make a node use this certificate."""
    return {
        "ONESTOP_TLS_CERT_FILE": str(issued.cert),
        "ONESTOP_TLS_KEY_FILE": str(issued.key),
        "ONESTOP_TLS_CA_FILE": str(issued.ca),
    }


def _init_ca(args: argparse.Namespace) -> int:
    try:
        issued = init_ca(Path(args.dir), days=args.days, overwrite=args.force)
    except FileExistsError as exc:
        print(f"onestop certs init-ca: {exc}", file=sys.stderr)
        return 1
    print(f"CA certificate {issued.cert}\nCA key         {issued.key} (keep it offline)")
    return 0


def _issue(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / CA_CERT).exists():
        print(
            f"onestop certs issue: no CA in {directory}; run `onestop certs init-ca --dir {directory}`",
            file=sys.stderr,
        )
        return 1
    from services.common.settings import CENTER_CODE

    if not CENTER_CODE.match(args.center):
        print(f"onestop certs issue: {args.center!r} is not a center code", file=sys.stderr)
        return 2
    issued = issue(directory, center=args.center, service=args.service or "", days=args.days)
    for name, value in tls_env(issued).items():
        print(f"{name}={value}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `onestop certs init-ca|issue`."""
    certs = sub.add_parser("certs", help="development CA and center certificates for node-to-node mTLS")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    p = certs_sub.add_parser("init-ca", help="create a development CA in --dir")
    p.add_argument("--dir", required=True)
    p.add_argument("--days", type=int, default=3650)
    p.add_argument("--force", action="store_true", help="replace an existing CA")
    p.set_defaults(func=_init_ca)
    p = certs_sub.add_parser("issue", help="issue a center's certificate signed by the CA in --dir")
    p.add_argument("--dir", required=True)
    p.add_argument("--center", required=True)
    p.add_argument("--service", default="", help="optional: the service the certificate is for")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS)
    p.set_defaults(func=_issue)
