"""Webhook sender: posts the deliveries :func:`control.campaigns.webhooks.enqueue` wrote.

At least once and in order per (subscription, campaign): a delivery is due only when no
earlier one of its lane is still undelivered, and rows are claimed for a while with a
conditional update (as the relay claims the outbox), so two senders never post one
delivery at once. Each request is signed per the Standard Webhooks spec (``webhook-id``:
the delivery's ``msg_id``, the same on every retry; ``webhook-timestamp``;
``webhook-signature``). A 2xx answer delivers it; anything else (another status, a
timeout, a refused address) is retried with exponential backoff and jitter until
``webhook_retry_for`` after its first attempt, then given up; a subscription whose every
attempt has failed that long is disabled, saying since when and why.
"""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker
from standardwebhooks import Webhook as Signer

from control.auth.trail import record
from control.campaigns.webhooks import check_url, give_up_pending
from control.loops.base import Loop
from shared.errors import InvalidInput
from shared.keys import Keys
from shared.models import Webhook, WebhookDelivery, utcnow
from shared.settings import Settings

BATCH = 50
CLAIM_FOR = timedelta(seconds=90)  # well over one request's timeout
SENDERS = 8  # requests under way at once (each lane's deliveries still one at a time)


def backoff(
    attempts: int, base: float, cap: float, jitter: Callable[[], float] = random.random
) -> float:
    """Seconds before the next try after ``attempts`` failed ones: ``base`` doubling per
    attempt, at most ``cap``, each drawn between 0.75 and 1.25 of that (so many receivers
    failing at once are not retried in step)."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return min(cap, delay * (0.75 + 0.5 * jitter()))


@dataclass(frozen=True)
class Job:
    id: int
    webhook_id: int
    msg_id: str
    payload: dict[str, Any]
    attempts: int
    first_attempt_at: datetime | None
    url: str
    secret: str


@dataclass(frozen=True)
class Result:
    status: int | None  # the HTTP status (None: no answer)
    error: str | None  # None: delivered

    @property
    def delivered(self) -> bool:
        return self.error is None


class WebhookSender(Loop):
    name = "webhooks"

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        keys: Keys,
        r: redis.Redis | None = None,
    ) -> None:
        super().__init__(settings.webhook_interval, (r, keys.outbox_nudge) if r else None)
        self.settings = settings
        self.sessions = sessions
        self.sender_id = f"webhooks-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        # No redirects: a 3xx is a failed attempt, never a request to another address.
        self.http = httpx.Client(timeout=settings.webhook_timeout, follow_redirects=False)
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def step(self) -> int:
        jobs = self._claim()
        if not jobs:
            return 0
        for job, result in zip(jobs, self._pool.map(self.send, jobs), strict=True):
            self._settle(job, result)
        return len(jobs)

    def _claim(self) -> list[Job]:
        now = utcnow()
        d, earlier = WebhookDelivery, aliased(WebhookDelivery)
        pending = and_(d.delivered_at.is_(None), d.gave_up_at.is_(None))
        free = or_(d.claimed_until.is_(None), d.claimed_until < now)
        blocked = (
            select(earlier.id)
            .where(
                earlier.webhook_id == d.webhook_id,
                func.coalesce(earlier.campaign_id, 0) == func.coalesce(d.campaign_id, 0),
                earlier.id < d.id,
                earlier.delivered_at.is_(None),
                earlier.gave_up_at.is_(None),
            )
            .exists()
        )
        with self.sessions.begin() as s:
            ids = list(
                s.scalars(
                    select(d.id)
                    .join(Webhook, Webhook.id == d.webhook_id)
                    .where(Webhook.enabled.is_(True), pending, free, d.next_attempt_at <= now)
                    .where(~blocked)
                    .order_by(d.id)
                    .limit(BATCH)
                )
            )
            if not ids:
                return []
            # The pending/free predicate again: a sender that claimed them first wins.
            claimed = list(
                s.scalars(
                    update(d)
                    .where(d.id.in_(ids), pending, free)
                    .values(claimed_by=self.sender_id, claimed_until=now + CLAIM_FOR)
                    .returning(d.id)
                )
            )
            rows = s.execute(
                select(d, Webhook.url, Webhook.secret)
                .join(Webhook, Webhook.id == d.webhook_id)
                .where(d.id.in_(claimed))
                .order_by(d.id)
            )
            return [
                Job(
                    row.id,
                    row.webhook_id,
                    row.msg_id,
                    row.payload,
                    row.attempts,
                    row.first_attempt_at,
                    url,
                    secret,
                )
                for row, url, secret in rows
            ]

    def send(self, job: Job) -> Result:
        """One signed POST of a delivery; never raises."""
        try:  # the address again, just before the request: DNS may have changed
            check_url(job.url, self.settings.webhook_allow_private)
        except InvalidInput as exc:
            return Result(None, exc.message)
        body = json.dumps(job.payload, separators=(",", ":")).encode()
        at = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "dialgate-webhooks",
            "webhook-id": job.msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Signer(job.secret).sign(job.msg_id, at, body),
        }
        try:
            resp = self.http.post(job.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Result(None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= resp.status_code < 300:
            return Result(resp.status_code, None)
        return Result(resp.status_code, f"HTTP {resp.status_code}")

    def _settle(self, job: Job, result: Result) -> None:
        now = utcnow()
        d = WebhookDelivery
        mine = and_(d.id == job.id, d.claimed_by == self.sender_id)
        with self.sessions.begin() as s:
            w = s.get(Webhook, job.webhook_id)
            if result.delivered:
                s.execute(
                    update(d)
                    .where(mine)
                    .values(
                        delivered_at=now,
                        attempts=job.attempts + 1,
                        first_attempt_at=job.first_attempt_at or now,
                        last_status=result.status,
                        last_error=None,
                        next_attempt_at=None,
                        claimed_until=None,
                    )
                )
                if w is not None and w.failing_since is not None:
                    w.failing_since = None
                self.log.debug("webhook_delivered", delivery=job.id, status=result.status)
                return
            first = job.first_attempt_at or now
            attempts = job.attempts + 1
            retry_for = timedelta(seconds=self.settings.webhook_retry_for)
            give_up = now - first >= retry_for
            wait = backoff(
                attempts, self.settings.webhook_backoff, self.settings.webhook_backoff_max
            )
            s.execute(
                update(d)
                .where(mine)
                .values(
                    attempts=attempts,
                    first_attempt_at=first,
                    last_status=result.status,
                    last_error=result.error,
                    next_attempt_at=None if give_up else now + timedelta(seconds=wait),
                    gave_up_at=now if give_up else None,
                    claimed_until=None,
                )
            )
            self.log.info(
                "webhook_failed",
                delivery=job.id,
                webhook=job.webhook_id,
                attempts=attempts,
                error=result.error,
                gave_up=give_up,
            )
            if w is None:
                return
            if w.failing_since is None:
                w.failing_since = now
            if give_up and w.enabled and now - w.failing_since >= retry_for:
                self._disable(s, w, now, result)

    def _disable(self, s: Session, w: Webhook, now: datetime, result: Result) -> None:
        since = w.failing_since.isoformat() if w.failing_since else now.isoformat()
        w.enabled = False
        w.disabled_at = now
        w.disabled_reason = f"failing since {since} (last: {result.error})"
        give_up_pending(s, w.id, now, "the subscription was disabled")
        record(s, None, "webhook.disabled", f"webhook:{w.id}", w.org, reason=w.disabled_reason)
        self.log.warning("webhook_disabled", webhook=w.id, reason=w.disabled_reason)
