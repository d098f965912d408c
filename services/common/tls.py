"""Mutual TLS between nodes: credentials that reload on rotation, and the caller's center from its certificate.

Settings-free: callers pass file paths. A center's identity is the URI SAN `onestop://center/<code>`
(or, failing that, the DNS SAN `<code>.centers.onestop`) of a certificate the CA signed.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

DNS_SUFFIX = ".centers.onestop"
URI_PREFIX = "onestop://center/"


class TlsError(ValueError):
    """TLS files are missing or do not form a usable identity."""


def center_dns_name(center: str) -> str:
    """The DNS SAN of a center's certificate, e.g. 210200.centers.onestop."""
    return f"{center.lower()}{DNS_SUFFIX}"


def center_uri(center: str) -> str:
    """The URI SAN of a center's certificate, e.g. onestop://center/210200."""
    return f"{URI_PREFIX}{center}"


def center_of_certificate(cert: x509.Certificate) -> str:
    """The center a certificate names (URI SAN first, then DNS SAN); '' when it names none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(URI_PREFIX) and "/" not in uri[len(URI_PREFIX) :]:
            return uri[len(URI_PREFIX) :]
    for dns in san.get_values_for_type(x509.DNSName):
        if dns.endswith(DNS_SUFFIX) and dns.count(".") == DNS_SUFFIX.count("."):
            return dns[: -len(DNS_SUFFIX)].upper()
    return ""


def peer_center(context: Any) -> str:
    """The verified caller's center, from the TLS client certificate of a gRPC call ('' if none)."""
    auth: Mapping[str, list[bytes]] = context.auth_context() or {}
    if auth.get("transport_security_type") != [b"ssl"]:
        return ""
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return ""
    return _center_of_pem(pems[0])


@functools.lru_cache(maxsize=256)
def _center_of_pem(pem: bytes) -> str:
    # A child sends the same certificate on every call: parse it once (~0.1 ms a call), not per call.
    return center_of_certificate(x509.load_pem_x509_certificate(pem))


@dataclass(frozen=True)
class TlsFiles:
    """The three PEM files of a node's identity: its certificate (chain), key and trusted CAs."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def of(cls, cert: str, key: str, ca: str) -> TlsFiles | None:
        """The files when all three are given; None when none is; TlsError when only some are."""
        given = [bool(cert), bool(key), bool(ca)]
        if not any(given):
            return None
        if not all(given):
            raise TlsError("ONESTOP_TLS_CERT_FILE, ONESTOP_TLS_KEY_FILE and ONESTOP_TLS_CA_FILE go together")
        files = cls(Path(cert), Path(key), Path(ca))
        for path in (files.cert, files.key, files.ca):
            if not path.is_file():
                raise TlsError(f"TLS file {path} does not exist")
        return files

    def stamp(self) -> tuple[float, ...]:
        """Modification times; a change means the files were rotated."""
        return tuple(os.stat(p).st_mtime_ns for p in (self.cert, self.key, self.ca))

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, trusted CAs) as PEM bytes."""
        return self.cert.read_bytes(), self.key.read_bytes(), self.ca.read_bytes()

    def own_center(self) -> str:
        """The center this node's certificate names."""
        return center_of_certificate(x509.load_pem_x509_certificate(self.cert.read_bytes()))


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate and re-read rotated files on new handshakes."""
    lock = threading.Lock()
    state: dict[str, Any] = {"stamp": files.stamp()}
    chain, key, ca = files.read()
    initial = grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC on every new connection: returning None keeps the current configuration.
        with lock:
            try:
                stamp = files.stamp()
                if stamp == state["stamp"]:
                    return None
                chain, key, ca = files.read()
            except OSError:
                return None
            state["stamp"] = stamp
            return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials: our certificate and key, and the CAs we trust to sign the parent's."""
    chain, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)


def secure_channel(
    address: str, files: TlsFiles, *, server_center: str, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A channel to another node that only completes the handshake if its certificate names `server_center`."""
    opts = [
        ("grpc.ssl_target_name_override", center_dns_name(server_center)),
        ("grpc.max_receive_message_length", 8 * 1024 * 1024),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC's reconnect backoff grows to 120 s by default: after an outage of a few minutes the
        # child would find its parent again up to two minutes late. Keep retrying every 10 s at most.
        ("grpc.initial_reconnect_backoff_ms", 1_000),
        ("grpc.max_reconnect_backoff_ms", 10_000),
        *(options or []),
    ]
    return grpc.aio.secure_channel(address, channel_credentials(files), options=opts)
