"""The development CA: center identities in certificates, and reading them back from a TLS peer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from services.cli import certs_cmd
from services.cli.main import build_parser
from services.common.tls import TlsError, TlsFiles, center_dns_name, center_of_certificate, peer_center


class FakeContext:
    """What grpc.aio gives a servicer: the verified peer's auth context."""

    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self._auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_center_certificate_names_the_center_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    ca = certs_cmd.init_ca(tmp_path)
    issued = certs_cmd.issue(tmp_path, center="210211")
    cert = _cert(issued.cert)
    assert center_of_certificate(cert) == "210211"
    assert cert.issuer == _cert(ca.cert).subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert center_dns_name("210211") in san.get_values_for_type(x509.DNSName)
    assert "onestop://center/210211" in san.get_values_for_type(x509.UniformResourceIdentifier)
    # P-256, not Ed25519: gRPC's BoringSSL does not negotiate Ed25519 certificates.
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert issued.key.stat().st_mode & 0o777 == 0o600
    ca_key = _cert(ca.cert).public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey) and cert.signature_hash_algorithm is not None
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def test_the_ca_is_not_replaced_by_accident(tmp_path: Path) -> None:
    certs_cmd.init_ca(tmp_path)
    with pytest.raises(FileExistsError):
        certs_cmd.init_ca(tmp_path)


def test_the_cli_issues_a_certificate_and_prints_the_node_settings(tmp_path: Path, capsys) -> None:
    parser = build_parser()
    for argv in (
        ["certs", "init-ca", "--dir", str(tmp_path)],
        ["certs", "issue", "--dir", str(tmp_path), "--center", "210200", "--service", "intake"],
    ):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "ONESTOP_TLS_CERT_FILE=" in out and "ONESTOP_TLS_CA_FILE=" in out
    assert center_of_certificate(_cert(tmp_path / "intake.210200.pem")) == "210200"
    args = parser.parse_args(["certs", "issue", "--dir", str(tmp_path / "none"), "--center", "210200"])
    assert args.func(args) == 1


def test_expired_and_self_signed_certificates_can_be_made_for_tests(tmp_path: Path) -> None:
    certs_cmd.init_ca(tmp_path)
    old = certs_cmd.issue(
        tmp_path,
        center="210211",
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
        out=tmp_path / "old",
    )
    assert _cert(old.cert).not_valid_after_utc < dt.datetime.now(dt.UTC)
    own = certs_cmd.issue(tmp_path, center="210211", self_signed=True, out=tmp_path / "own")
    assert _cert(own.cert).issuer == _cert(own.cert).subject


def test_the_caller_center_comes_from_the_verified_certificate_only(tmp_path: Path) -> None:
    certs_cmd.init_ca(tmp_path)
    pem = certs_cmd.issue(tmp_path, center="210211").cert.read_bytes()
    assert peer_center(FakeContext({"transport_security_type": [b"ssl"], "x509_pem_cert": [pem]})) == "210211"
    assert peer_center(FakeContext({"transport_security_type": [b"insecure"], "x509_pem_cert": [pem]})) == ""
    assert peer_center(FakeContext({})) == ""


def test_tls_files_go_together_and_must_exist(tmp_path: Path) -> None:
    assert TlsFiles.of("", "", "") is None
    with pytest.raises(TlsError):
        TlsFiles.of(str(tmp_path / "a.pem"), "", "")
    with pytest.raises(TlsError):
        TlsFiles.of(str(tmp_path / "a.pem"), str(tmp_path / "b.pem"), str(tmp_path / "c.pem"))
    certs_cmd.init_ca(tmp_path)
    issued = certs_cmd.issue(tmp_path, center="210200")
    files = TlsFiles.of(str(issued.cert), str(issued.key), str(issued.ca))
    assert files is not None and files.own_center() == "210200"
