"""Seals verify with the center's public key and fail on any change; logs never show contacts."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onestop.common.v1 import common_pb2
from services.common.logging import mask
from services.common.seal import seal, verify


def _decision() -> common_pb2.Decision:
    return common_pb2.Decision(
        center="210200",
        case_number="210200-20251009-000001",
        department="PLAN",
        outcome=common_pb2.OUTCOME_APPROVED,
        decided_by="chief.plan",
    )


def test_a_sealed_decision_verifies_with_the_centers_public_key() -> None:
    key = Ed25519PrivateKey.generate()
    valid, reason = verify(seal(_decision(), key), key.public_key())
    assert valid, reason


def test_a_tampered_decision_fails_verification() -> None:
    key = Ed25519PrivateKey.generate()
    sealed = seal(_decision(), key)
    sealed.decision.outcome = common_pb2.OUTCOME_REJECTED
    sealed.canonical = sealed.decision.SerializeToString(deterministic=True)
    valid, reason = verify(sealed, key.public_key())
    assert not valid and "altered" in reason


def test_another_centers_key_does_not_verify() -> None:
    sealed = seal(_decision(), Ed25519PrivateKey.generate())
    valid, reason = verify(sealed, Ed25519PrivateKey.generate().public_key())
    assert not valid and "another key" in reason


def test_phone_numbers_id_numbers_and_emails_are_masked() -> None:
    text = mask("call 13800001111, id 210202199001011234, mail zhang.san@example.cn")
    assert "13800001111" not in text and "138****1111" in text
    assert "210202199001011234" not in text and "210202********1234" in text
    assert "zhang.san@" not in text and "z***@example.cn" in text
