"""Intake's rules, free of protobuf, SQL and the network: numbering, query codes, pre-review."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.common.clock import SHANGHAI

# No 0/O, 1/I/L: the code is read aloud and typed from a paper receipt.
QUERY_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
QUERY_CODE_LENGTH = 8


@dataclass(frozen=True)
class MaterialRule:
    """What the matter asks for one material."""

    code: str
    name_zh: str
    mandatory: bool
    accepted_types: tuple[str, ...]
    max_bytes: int


@dataclass(frozen=True)
class Submitted:
    """A document the applicant handed in for a material."""

    material_code: str
    digest: str
    content_type: str
    size: int
    known: bool  # the upload was acknowledged and is stored


@dataclass(frozen=True)
class Shortfall:
    """One item of the one-time supplement notice."""

    material_code: str
    reason: str


def new_query_code() -> str:
    """A random query code for the applicant (8 characters, ~39 bits)."""
    return "".join(secrets.choice(QUERY_ALPHABET) for _ in range(QUERY_CODE_LENGTH))


def query_code_digest(code: str) -> str:
    """Lowercase hex SHA-256 of a query code (as the gateway sends it to supervision with an evaluation)."""
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def case_number(*, center: str, accepted_at: datetime, seq: int) -> str:
    """The case number: center code, acceptance date in Shanghai, daily sequence."""
    return f"{center}-{accepted_at.astimezone(SHANGHAI):%Y%m%d}-{seq:06d}"


def numbering_day(accepted_at: datetime) -> str:
    """The day (Shanghai) whose sequence a case number draws from."""
    return f"{accepted_at.astimezone(SHANGHAI):%Y%m%d}"


def pre_review(*, rules: Sequence[MaterialRule], submitted: Iterable[Submitted]) -> list[Shortfall]:
    """Every missing or faulty item at once (R2, R7): the one-time supplement notice."""
    by_code: dict[str, list[Submitted]] = {}
    for doc in submitted:
        by_code.setdefault(doc.material_code, []).append(doc)
    known_codes = {rule.code for rule in rules}
    shortfalls: list[Shortfall] = []
    for code in sorted(set(by_code) - known_codes):
        shortfalls.append(Shortfall(code, f"材料 {code} 不属于本事项 / not a material of this matter"))
    for rule in rules:
        docs = by_code.get(rule.code, [])
        if not docs:
            if rule.mandatory:
                shortfalls.append(Shortfall(rule.code, f"缺少{rule.name_zh} / missing"))
            continue
        for doc in docs:
            if not doc.known:
                shortfalls.append(Shortfall(rule.code, f"{rule.name_zh}未上传成功 / upload not received"))
            elif rule.accepted_types and doc.content_type not in rule.accepted_types:
                shortfalls.append(
                    Shortfall(rule.code, f"{rule.name_zh}格式不符({doc.content_type}) / type not accepted")
                )
            elif rule.max_bytes and doc.size > rule.max_bytes:
                shortfalls.append(Shortfall(rule.code, f"{rule.name_zh}超过大小限制 / too large"))
    return shortfalls


def merge_documents(
    current: Sequence[Mapping[str, object]], added: Sequence[Mapping[str, object]]
) -> list[dict[str, object]]:
    """The case's documents after a supplement: a new document replaces the same material's."""
    replaced = {str(doc["material_code"]) for doc in added}
    kept = [dict(doc) for doc in current if str(doc["material_code"]) not in replaced]
    return kept + [dict(doc) for doc in added]
