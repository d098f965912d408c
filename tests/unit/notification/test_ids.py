"""Delivery, message and notice ids: random version-4 UUIDs, never repeated across blocks."""

from __future__ import annotations

import uuid

from services.notification.model import RandomIds


def test_ids_are_distinct_version_4_uuids_across_several_blocks() -> None:
    ids = RandomIds(block=4)
    drawn = [ids() for _ in range(50)]
    assert len(set(drawn)) == 50
    for text in drawn:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
