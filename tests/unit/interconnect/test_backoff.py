"""Retries of the forwarding outbox back off exponentially, with jitter, up to a cap."""

from __future__ import annotations

from services.intake.outbound import BACKOFF_BASE_S, BACKOFF_MAX_S, Operation, backoff


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for attempts in range(1, 8):
        expected = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempts)
        samples = [backoff(attempts) for _ in range(50)]
        assert all(expected / 2 <= s <= expected for s in samples)
    assert max(backoff(60) for _ in range(50)) <= BACKOFF_MAX_S


def test_an_operation_id_is_unique_per_outbox_row() -> None:
    ops = [
        Operation.of(
            {
                "seq": seq,
                "case_id": "c1",
                "op": "supplement",
                "state": "pending",
                "parent_center": "p",
                "payload": {},
                "attempts": 0,
                "waiting_since": None,
            }
        )
        for seq in (7, 8)
    ]
    assert ops[0].operation_id != ops[1].operation_id and "c1" in ops[0].operation_id
