"""Readers of the event feed (edges' cursors, the webhook dispatcher) move only over events
whose predecessors are visible: a missing number may be a change still committing (its event
would be lost for good)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from origin.replication import GAP_SECONDS, settled


@dataclass(frozen=True)
class Row:
    seq: int
    at: datetime


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_it_stops_before_a_fresh_gap() -> None:
    rows = [Row(1, NOW), Row(2, NOW), Row(4, NOW)]  # 3 is still committing
    assert [r.seq for r in settled(0, rows, NOW)] == [1, 2]


def test_an_old_gap_is_a_change_that_rolled_back() -> None:
    old = NOW - timedelta(seconds=GAP_SECONDS + 1)
    rows = [Row(1, old), Row(3, old), Row(4, NOW)]
    assert [r.seq for r in settled(0, rows, NOW)] == [1, 3, 4]


def test_a_gap_right_after_the_cursor_counts_too() -> None:
    assert settled(5, [Row(7, NOW)], NOW) == []
    naive = (NOW - timedelta(seconds=60)).replace(tzinfo=None)  # SQLite's times
    assert [r.seq for r in settled(5, [Row(7, naive)], NOW)] == [7]
