"""Calling windows: when a campaign (and a contact) may be called. Pure: no I/O, no clock.

A window is ``{days, start, end}`` in local wall-clock time: ``days`` are the days a
window *starts* on, ``end`` before ``start`` means the window spans midnight (it then ends
on the next day). Every question takes the instant ``at`` (timezone-aware), so tests
freeze the clock by passing it; callers pass ``clock()``.

Local time is read with :mod:`zoneinfo`, so DST is exact: an instant is open when its
wall-clock time in the zone falls in the window. A start that does not exist on a
spring-forward day (``02:30`` in a gap) opens at the first wall-clock time after it (the
change itself); a start that occurs twice on a fall-back day opens at its first occurrence.

With ``contact_local_time`` the window must hold in the campaign's zone *and* in every zone
of the contact's number (``phonenumbers``' timezone data): a number that spans several
zones is callable only when all of them are inside the window (the most restrictive).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead ``opens_at`` looks: a weekly window opens within 8 days or never.
HORIZON_DAYS = 8

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: time
    end: time
    contact_local_time: bool = False

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Window:
        """From the stored JSON (validated by the API's schema when it was written)."""
        return cls(
            days=frozenset(DAYS.index(d) for d in raw.get("days", DAYS)),
            start=time.fromisoformat(raw.get("start", "09:00")),
            end=time.fromisoformat(raw.get("end", "21:00")),
            contact_local_time=bool(raw.get("contact_local_time", False)),
        )

    def is_open(self, zone: ZoneInfo, at: datetime) -> bool:
        local = at.astimezone(zone)
        now, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        return (day in self.days and now >= self.start) or (
            (day - 1) % 7 in self.days and now < self.end
        )

    def start_on(self, zone: ZoneInfo, day: date) -> datetime:
        """The instant this window starts on local ``day`` (exact across DST changes)."""
        first = datetime.combine(day, self.start, zone)  # fold=0: the first occurrence
        if _wall(first, zone) == first.replace(tzinfo=None):
            return first.astimezone(UTC)
        # The start falls in a spring-forward gap: the window opens when the clock jumps.
        # Wall time is monotonic across a gap, so bisect for the first instant ≥ start.
        lo = first.replace(fold=1).astimezone(UTC)  # before the jump
        hi = first.astimezone(UTC)  # after it
        wanted = datetime.combine(day, self.start)
        while hi - lo > timedelta(seconds=1):
            mid = lo + (hi - lo) / 2
            if _wall(mid, zone) >= wanted:
                hi = mid
            else:
                lo = mid
        return hi


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(UTC).astimezone(zone).replace(tzinfo=None)


@dataclass(frozen=True)
class Verdict:
    open: bool
    opens_at: datetime | None  # None when open, or when it never opens within the horizon


def is_open(window: Window, zones: Sequence[ZoneInfo], at: datetime) -> bool:
    return all(window.is_open(z, at) for z in zones)


def opens_at(window: Window, zones: Sequence[ZoneInfo], at: datetime) -> datetime | None:
    """The first instant ≥ ``at`` at which the window is open in every zone.

    An intersection of windows opens at one of their starts, so only those are tried."""
    candidates = {at.astimezone(UTC)}
    for z in zones:
        today = at.astimezone(z).date()
        for n in range(-1, HORIZON_DAYS):
            day = today + timedelta(days=n)
            if day.weekday() in window.days:
                candidates.add(window.start_on(z, day))
    for c in sorted(x for x in candidates if x >= at):
        if is_open(window, zones, c):
            return c
    return None


def verdict(window: Window, zones: Sequence[ZoneInfo], at: datetime) -> Verdict:
    if is_open(window, zones, at):
        return Verdict(True, None)
    return Verdict(False, opens_at(window, zones, at))


@lru_cache(maxsize=4096)
def phone_zones(phone: str) -> tuple[str, ...]:
    """IANA zones of an E.164 number (empty when ``phonenumbers`` does not know them)."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = phone_timezones.time_zones_for_number(number)
    return tuple(z for z in zones if z != "Etc/Unknown")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zones_for(window: Window, campaign_tz: str, phone: str | None) -> list[ZoneInfo]:
    """The zones a dial must be inside the window in: the campaign's, plus the contact's."""
    names: Iterable[str] = [campaign_tz]
    if window.contact_local_time and phone is not None:
        names = [campaign_tz, *phone_zones(phone)]
    return [zone(n) for n in dict.fromkeys(names)]


def check(raw: dict[str, Any] | None, campaign_tz: str, phone: str | None, at: datetime) -> Verdict:
    """May ``phone`` (None: the campaign as a whole) be dialed at ``at``?"""
    if raw is None:
        return Verdict(True, None)
    window = Window.parse(raw)
    return verdict(window, zones_for(window, campaign_tz, phone), at)
