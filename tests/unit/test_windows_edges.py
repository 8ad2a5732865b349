"""Calling-window edges beyond test_windows.py: week wrap, midnight ends, DST nights,
windows that never open, and which zones a dial must be inside."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from shared.windows import DAYS, Window, check, opens_at, phone_zones, verdict, zones_for

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def test_a_stored_window_without_fields_is_every_day_from_nine_to_nine():
    w = Window.parse({})
    assert w == Window(frozenset(range(7)), time(9, 0), time(21, 0), False)
    assert [DAYS.index(d) for d in ("mon", "sun")] == [0, 6]


def test_a_sunday_night_window_runs_into_monday_morning():
    night = {"days": ["sun"], "start": "22:00", "end": "02:00"}
    assert check(night, "Europe/Paris", None, paris(2026, 11, 29, 23, 0)).open  # Sunday
    assert check(night, "Europe/Paris", None, paris(2026, 11, 30, 1, 59)).open  # Monday
    assert not check(night, "Europe/Paris", None, paris(2026, 11, 30, 2, 0)).open
    assert not check(night, "Europe/Paris", None, paris(2026, 11, 29, 1, 0)).open  # Sat night


def test_a_window_ending_at_midnight_closes_at_midnight():
    evening = {"days": ["fri"], "start": "18:00", "end": "00:00"}
    assert check(evening, "Europe/Paris", None, paris(2026, 11, 27, 23, 59, 59)).open
    assert not check(evening, "Europe/Paris", None, paris(2026, 11, 28, 0, 0)).open


def test_a_night_window_not_yet_open_opens_the_same_evening():
    night = {"days": ["fri"], "start": "22:00", "end": "02:00"}
    v = check(night, "Europe/Paris", None, paris(2026, 11, 27, 21, 0))
    assert v == verdict(Window.parse(night), [PARIS], paris(2026, 11, 27, 21, 0))
    assert not v.open and v.opens_at == paris(2026, 11, 27, 22, 0)
    assert v.opens_at is not None and v.opens_at.tzinfo is UTC


def test_a_night_window_over_the_spring_forward_change_is_an_hour_shorter():
    night = {"days": ["sat"], "start": "22:00", "end": "06:00"}
    # Saturday 2026-03-28 22:00 CET (21:00 UTC) to Sunday 06:00 CEST (04:00 UTC): 7 hours.
    assert not check(night, "Europe/Paris", None, utc(2026, 3, 28, 20, 59, 59)).open
    assert check(night, "Europe/Paris", None, utc(2026, 3, 28, 21, 0)).open
    assert check(night, "Europe/Paris", None, utc(2026, 3, 29, 3, 59, 59)).open
    assert not check(night, "Europe/Paris", None, utc(2026, 3, 29, 4, 0)).open


def test_an_end_inside_the_spring_forward_gap_closes_when_the_clock_jumps():
    w = Window.parse({"start": "01:00", "end": "02:30"})
    assert w.is_open(PARIS, utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET
    assert not w.is_open(PARIS, utc(2026, 3, 29, 1, 0))  # 03:00 CEST


def test_a_wall_clock_time_repeated_by_the_fall_back_change_is_inside_both_times():
    w = Window.parse({"start": "01:00", "end": "02:30"})
    # 2026-10-25 in Paris: 02:00–03:00 happens twice (CEST, then CET).
    assert w.is_open(PARIS, utc(2026, 10, 25, 0, 29))  # 02:29 CEST
    assert not w.is_open(PARIS, utc(2026, 10, 25, 0, 30))  # 02:30 CEST
    assert w.is_open(PARIS, utc(2026, 10, 25, 1, 0))  # 02:00 CET, again inside
    assert not w.is_open(PARIS, utc(2026, 10, 25, 1, 30))  # 02:30 CET


@pytest.mark.xfail(
    strict=True,
    reason="bug: opens_at only tries window starts, so it misses the reopening of a window "
    "whose end falls in the hour the fall-back change repeats (answers the next day)",
)
def test_a_window_reopened_by_the_fall_back_change_says_so():
    w = Window.parse({"start": "01:00", "end": "02:30"})
    at = utc(2026, 10, 25, 0, 45)  # 02:45 CEST: closed, reopens at 02:00 CET (01:00 UTC)
    assert not w.is_open(PARIS, at)
    assert opens_at(w, [PARIS], at) == utc(2026, 10, 25, 1, 0)


def test_an_open_window_opens_now():
    w = Window.parse({"start": "09:00", "end": "17:00"})
    at = paris(2026, 11, 27, 10, 0)
    assert opens_at(w, [PARIS], at) == at
    assert verdict(w, [PARIS], at).opens_at is None  # an open verdict carries no time


def test_a_window_without_any_day_never_opens():
    v = check({"days": [], "start": "09:00", "end": "18:00"}, "UTC", None, utc(2026, 1, 1))
    assert not v.open and v.opens_at is None


def test_a_window_whose_zones_never_overlap_never_opens():
    w = Window.parse({"start": "09:00", "end": "10:00"})
    assert opens_at(w, [PARIS, ZoneInfo("Asia/Tokyo")], utc(2026, 1, 1)) is None


def test_only_the_campaigns_zone_counts_without_contact_local_time():
    w = Window.parse({"start": "09:00", "end": "18:00"})
    assert zones_for(w, "Europe/Paris", "+12125550100") == [PARIS]


def test_with_contact_local_time_the_contacts_zones_are_added_once():
    w = Window.parse({"contact_local_time": True})
    assert zones_for(w, "Europe/Paris", "+12125550100") == [PARIS, NEW_YORK]
    assert zones_for(w, "Europe/Paris", "+33612345678") == [PARIS]  # the same zone, once
    assert zones_for(w, "Europe/Paris", None) == [PARIS]  # the campaign as a whole


@pytest.mark.parametrize("phone", ["not a number", "+999", "+80012345678"])
def test_a_number_without_a_known_zone_is_held_to_the_campaigns_zone(phone: str):
    assert phone_zones(phone) == ()
    assert zones_for(Window.parse({"contact_local_time": True}), "UTC", phone) == [ZoneInfo("UTC")]


def test_a_campaign_in_new_york_waits_for_a_paris_contacts_morning():
    local = {"start": "09:00", "end": "18:00", "contact_local_time": True}
    at = datetime(2026, 11, 27, 9, 0, tzinfo=NEW_YORK)  # 15:00 in Paris: both open
    assert check(local, "America/New_York", "+33612345678", at).open
    late = datetime(2026, 11, 27, 12, 30, tzinfo=NEW_YORK)  # 18:30 in Paris: closed there
    v = check(local, "America/New_York", "+33612345678", late)
    assert not v.open
    # Saturday 09:00 in New York is 15:00 in Paris: inside in both zones.
    assert v.opens_at == datetime(2026, 11, 28, 9, 0, tzinfo=NEW_YORK)
