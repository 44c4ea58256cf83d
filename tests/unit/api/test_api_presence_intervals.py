"""Presence changes into intervals: cut to the window, empty ones dropped, repeated presences merged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.presence.services import intervals

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_changes_are_cut_to_the_window_and_contiguous() -> None:
    changes = [(at(-10), "online", "status"), (at(5), "offline", "heartbeat"), (at(20), "online", "status")]

    found = intervals(changes, at(0), at(30))

    assert [(i.presence, i.source, i.start, i.end) for i in found] == [
        ("online", "status", at(0), at(5)),
        ("offline", "heartbeat", at(5), at(20)),
        ("online", "status", at(20), at(30)),
    ]


def test_changes_in_one_instant_leave_only_the_last_and_repeats_merge() -> None:
    changes = [(at(1), "online", "status"), (at(1), "offline", "status"), (at(2), "offline", "heartbeat")]

    found = intervals(changes, at(0), at(10))

    assert [(i.presence, i.start, i.end) for i in found] == [("offline", at(1), at(10))]
