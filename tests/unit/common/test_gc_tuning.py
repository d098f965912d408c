"""A service process, once started, keeps its start-up objects out of the collector's sight and collects
young objects less often, yet still frees reference cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common.runtime import GC_THRESHOLDS, tune_gc


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_after_start_up_young_collections_are_rarer_and_start_up_objects_are_frozen(
    restored_gc: None,
) -> None:
    built_at_start_up = [Node() for _ in range(10)]
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # CPython's default
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert not any(gc.is_tracked(n) and n in gc.get_objects(generation=2) for n in built_at_start_up)


def test_cycles_made_after_start_up_are_still_collected(restored_gc: None) -> None:
    tune_gc()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
