"""A campaign's last hour in 10-second buckets: the calls started, how the calls that ended
ended, and every transition of the hour as a marker (the campaign page's chart and
``GET /api/v1/campaigns/{id}/activity``).

- **Calls started** are dialed attempts by ``started_at`` (set when the attempt passed the
  gate and its call was being placed); attempts parked or cancelled before dialing are
  not calls.
- **Calls ended** are attempts that ended (``ended``, or ``unknown`` when their worker
  vanished) by ``finished_at``, per disposition; an ``unknown`` attempt (or an ended one
  without a disposition) counts as ``unknown``.
- **Markers** are the hour's transitions, whatever their action (pause, resume, cancel,
  lift_cap, start, complete, and any added later): the chart labels each with its action.

Two grouped queries, the bucket computed by the database (its epoch seconds divided by
:data:`BUCKET_S`: ``extract(epoch …)`` on PostgreSQL, ``strftime('%s', …)`` on SQLite), so
an hour of a busy campaign is 360 rows per query, not its calls. Buckets are aligned on
multiples of :data:`BUCKET_S` seconds since the epoch; the last one holds "now".
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from control.campaigns.service import Control
from control.campaigns.views import cap_view
from shared.models import Attempt, Transition, utcnow
from shared.states import DIALED, AttemptState, Disposition

BUCKET_S = 10
WINDOW_S = 3600
BUCKETS = WINDOW_S // BUCKET_S
UNKNOWN = "unknown"
# The series of calls that ended, in the order the chart stacks them.
ENDINGS = (*(d.value for d in Disposition), UNKNOWN)
ENDED_STATES = (AttemptState.ENDED.value, AttemptState.UNKNOWN.value)


def _bucket(s: Session, column: Any) -> ColumnElement[Any]:
    """The column's instant as a bucket number (epoch seconds // BUCKET_S), in SQL."""
    if s.get_bind().dialect.name == "sqlite":  # stored naive UTC text
        return cast(func.strftime("%s", column), Integer) / BUCKET_S
    return cast(func.floor(func.extract("epoch", column) / BUCKET_S), Integer)


def window(now: datetime) -> tuple[datetime, datetime]:
    """The hour of buckets that ends with the bucket holding ``now``: [start, end)."""
    end_s = (math.floor(now.timestamp() / BUCKET_S) + 1) * BUCKET_S
    end = datetime.fromtimestamp(end_s, UTC)
    return end - timedelta(seconds=WINDOW_S), end


def activity(control: Control, campaign_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The campaign's calls started and ended per bucket over the last hour, and its
    transitions of the hour (oldest first)."""
    start, end = window(now or utcnow())
    first = int(start.timestamp()) // BUCKET_S
    started = [0] * BUCKETS
    ended = {name: [0] * BUCKETS for name in ENDINGS}
    with control.sessions() as s:
        control.get(s, campaign_id)
        b = _bucket(s, Attempt.started_at)
        rows = s.execute(
            select(b, func.count())
            .where(
                Attempt.campaign_id == campaign_id,
                Attempt.state.in_([x.value for x in DIALED]),
                Attempt.started_at >= start,
                Attempt.started_at < end,
            )
            .group_by(b)
        )
        for bucket, n in rows:
            if 0 <= int(bucket) - first < BUCKETS:
                started[int(bucket) - first] += int(n)
        b = _bucket(s, Attempt.finished_at)
        rows = s.execute(
            select(b, Attempt.state, Attempt.disposition, func.count())
            .where(
                Attempt.campaign_id == campaign_id,
                Attempt.state.in_(ENDED_STATES),
                Attempt.finished_at >= start,
                Attempt.finished_at < end,
            )
            .group_by(b, Attempt.state, Attempt.disposition)
        )
        for bucket, state, disposition, n in rows:
            i = int(bucket) - first
            name = disposition if state == AttemptState.ENDED.value else UNKNOWN
            if 0 <= i < BUCKETS:
                ended[name if name in ended else UNKNOWN][i] += int(n)
        markers = [
            _marker(t)
            for t in s.scalars(
                select(Transition)
                .where(
                    Transition.campaign_id == campaign_id,
                    Transition.created_at >= start,
                    Transition.created_at < end,
                )
                .order_by(Transition.version)
            )
        ]
    return {
        "campaign_id": campaign_id,
        "bucket_s": BUCKET_S,
        "start": start,
        "end": end,
        "started": started,
        "ended": ended,
        "markers": markers,
    }


def as_json(data: dict[str, Any]) -> str:
    """The answer as one line of JSON (instants in ISO 8601, as the JSON route answers):
    the data of the page's ``event: activity``."""
    return json.dumps(data, default=_iso, separators=(",", ":"))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _marker(t: Transition) -> dict[str, Any]:
    return {
        "version": t.version,
        "action": t.action,
        "from": t.from_status,
        "to": t.to_status,
        "actor": t.actor,
        "source": t.source,
        "reason": t.reason,
        "at": t.created_at,
        "cap": cap_view(t.cap_concurrency, t.cap_until),
    }
