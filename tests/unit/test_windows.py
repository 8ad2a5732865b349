"""Calling windows with frozen clocks: start/end, midnight, DST, contacts' own zones."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from shared.windows import Window, check, opens_at, phone_zones

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (paris(2026, 11, 27, 8, 59, 59), False),  # a Friday, one second before the start
        (paris(2026, 11, 27, 9, 0), True),  # the start is inside
        (paris(2026, 11, 27, 17, 59, 59), True),
        (paris(2026, 11, 27, 18, 0), False),  # the end is outside
        (paris(2026, 11, 28, 10, 0), False),  # Saturday
    ],
)
def test_a_window_opens_at_its_start_and_closes_at_its_end(at: datetime, is_open: bool):
    assert check(WEEKDAYS, "Europe/Paris", None, at).open is is_open


def test_a_closed_window_says_when_it_opens_next():
    friday_evening = paris(2026, 11, 27, 18, 0)
    v = check(WEEKDAYS, "Europe/Paris", None, friday_evening)
    assert not v.open
    assert v.opens_at == paris(2026, 11, 30, 9, 0)  # Monday morning
    assert check(WEEKDAYS, "Europe/Paris", None, paris(2026, 11, 27, 8, 0)).opens_at == paris(
        2026, 11, 27, 9, 0
    )


def test_a_window_across_midnight_belongs_to_the_day_it_starts_on():
    night = {"days": ["fri"], "start": "22:00", "end": "02:00"}
    assert not check(night, "Europe/Paris", None, paris(2026, 11, 27, 21, 59)).open
    assert check(night, "Europe/Paris", None, paris(2026, 11, 27, 23, 0)).open
    assert check(night, "Europe/Paris", None, paris(2026, 11, 28, 1, 59)).open  # Saturday
    assert not check(night, "Europe/Paris", None, paris(2026, 11, 28, 2, 0)).open
    assert not check(night, "Europe/Paris", None, paris(2026, 11, 27, 1, 0)).open  # Thu night
    assert check(night, "Europe/Paris", None, paris(2026, 11, 28, 3, 0)).opens_at == paris(
        2026, 12, 4, 22, 0
    )


def test_windows_follow_the_wall_clock_across_dst_changes():
    nine_to_five = {"start": "09:00", "end": "17:00"}
    # Paris goes to summer time on 2026-03-29: 09:00 local is 08:00 UTC before, 07:00 after.
    assert check(nine_to_five, "Europe/Paris", None, datetime(2026, 3, 28, 8, 0, tzinfo=UTC)).open
    assert not check(
        nine_to_five, "Europe/Paris", None, datetime(2026, 3, 29, 6, 59, tzinfo=UTC)
    ).open
    assert check(nine_to_five, "Europe/Paris", None, datetime(2026, 3, 29, 7, 0, tzinfo=UTC)).open
    v = check(nine_to_five, "Europe/Paris", None, datetime(2026, 3, 29, 1, 0, tzinfo=UTC))
    assert v.opens_at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_a_start_inside_the_spring_forward_gap_opens_when_the_clock_jumps():
    w = Window.parse({"start": "02:30", "end": "05:00"})
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:30 never happens.
    first = opens_at(w, [PARIS], datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    assert first == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert w.is_open(PARIS, first)
    assert not w.is_open(PARIS, datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC))


def test_a_start_repeated_by_the_fall_back_change_opens_at_its_first_occurrence():
    w = Window.parse({"start": "02:30", "end": "04:00"})
    # 2026-10-25 in Paris: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    first = opens_at(w, [PARIS], datetime(2026, 10, 24, 23, 0, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_a_contact_in_another_timezone_is_called_only_inside_its_own_window_too():
    local = {"start": "09:00", "end": "18:00", "contact_local_time": True}
    ten_in_paris = paris(2026, 11, 27, 10, 0)  # 04:00 in New York
    assert check(local, "Europe/Paris", "+33612345678", ten_in_paris).open
    v = check(local, "Europe/Paris", "+12125550100", ten_in_paris)
    assert not v.open
    assert v.opens_at == datetime(2026, 11, 27, 9, 0, tzinfo=NEW_YORK)  # 15:00 in Paris
    # Without contact_local_time only the campaign's zone counts.
    assert check(
        {**local, "contact_local_time": False}, "Europe/Paris", "+12125550100", ten_in_paris
    ).open


def test_a_number_spanning_several_zones_uses_the_most_restrictive():
    assert phone_zones("+12085550100") == ("America/Boise", "America/Los_Angeles")  # Idaho
    local = {"start": "09:00", "end": "18:00", "contact_local_time": True}
    # 09:30 in Boise is 08:30 in Los Angeles: not yet for a number that may be there.
    at = datetime(2026, 11, 27, 9, 30, tzinfo=ZoneInfo("America/Boise"))
    assert check(local, "America/Boise", "+12085550100", at).opens_at == datetime(
        2026, 11, 27, 9, 0, tzinfo=ZoneInfo("America/Los_Angeles")
    )
    # A toll-free number may ring from Guam to Newfoundland: 09–18 never holds in all of them.
    v = check(local, "America/New_York", "+18005550100", at)
    assert not v.open and v.opens_at is None


def test_no_window_means_always_open():
    assert check(None, "UTC", "+33612345678", datetime(2026, 1, 1, 3, 0, tzinfo=UTC)).open
