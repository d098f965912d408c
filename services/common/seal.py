"""Seals: Ed25519 signatures over the canonical encoding of a decision (行政许可专用章)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onestop.common.v1 import common_pb2

ALGORITHM = "Ed25519"


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _key_id_of(key: Ed25519PrivateKey) -> str:
    # A service signs every decision with the same key: derive its id once, not per seal.
    return key_id(key.public_key())


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The center's signing key from a PEM file, created (mode 0600) when absent."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
    return key


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM text, for anyone who wants to verify a seal."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def canonical(decision: common_pb2.Decision) -> bytes:
    """The exact bytes a seal signs: deterministic protobuf encoding."""
    return decision.SerializeToString(deterministic=True)


def seal(decision: common_pb2.Decision, key: Ed25519PrivateKey) -> common_pb2.SealedDecision:
    """Sign a decision with the center's key."""
    data = canonical(decision)
    return common_pb2.SealedDecision(
        decision=decision,
        canonical=data,
        seal=common_pb2.Seal(
            center=decision.center,
            key_id=_key_id_of(key),
            algorithm=ALGORITHM,
            signature=key.sign(data),
        ),
    )


def verify(sealed: common_pb2.SealedDecision, public: Ed25519PublicKey) -> tuple[bool, str]:
    """(valid, reason): the signature holds and the decision is the one that was signed."""
    if sealed.seal.algorithm != ALGORITHM:
        return False, f"unknown algorithm {sealed.seal.algorithm!r}"
    if sealed.seal.key_id != key_id(public):
        return False, "sealed with another key than this center's"
    if canonical(sealed.decision) != sealed.canonical:
        return False, "the decision differs from what was sealed"
    try:
        public.verify(sealed.seal.signature, sealed.canonical)
    except InvalidSignature:
        return False, "the signature does not match: the decision was altered or forged"
    return True, "valid seal of center " + sealed.seal.center


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A public key from PEM text."""
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key
