"""Webhooks: each organisation's subscriptions to campaign and emergency-stop events.

:func:`enqueue` adds one delivery row per matching enabled subscription to the caller's
transaction (the transactional outbox: an event is told if and only if its change
committed); the sender loop (:mod:`control.loops.webhooks`) posts them, signed per the
Standard Webhooks spec. :func:`check_url` is the guard against server-side request
forgery, run at creation and again before every send. See docs/webhooks.md.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import secrets
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import redis
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control.auth.roles import Who
from control.auth.trail import record
from shared.clients import REDIS_ERRORS
from shared.errors import Conflict, InvalidInput, NotFound
from shared.keys import Keys
from shared.models import Campaign, Webhook, WebhookDelivery, utcnow
from shared.settings import Settings

# Every event a subscription may name; a family wildcard (``campaign.*``) names them all.
EVENTS = (
    "campaign.started",
    "campaign.paused",
    "campaign.resumed",
    "campaign.cancelled",
    "campaign.completed",
    "campaign.hold_placed",
    "campaign.canary_passed",
    "emergency_stop.stop",
    "emergency_stop.lift",
)
WILDCARDS = ("campaign.*", "emergency_stop.*")
TEST_EVENT = "webhook.test"  # sent to one subscription by POST …/webhooks/{id}/test
# A transition's action (its string value) → the event it tells; other actions tell none.
ACTION_EVENTS = {
    "start": "campaign.started",
    "pause": "campaign.paused",
    "resume": "campaign.resumed",
    "cancel": "campaign.cancelled",
    "complete": "campaign.completed",
    "hold": "campaign.hold_placed",
    "canary_passed": "campaign.canary_passed",
}
MAX_EVENTS = 20
MAX_URL = 2000

Resolver = Callable[..., Sequence[tuple[Any, ...]]]


def matches(patterns: list[str], event: str) -> bool:
    """Whether a subscription's ``patterns`` name ``event`` (exactly or by its family)."""
    family = event.split(".", 1)[0] + ".*"
    return event in patterns or family in patterns


def checked_events(raw: list[str]) -> list[str]:
    """The subscribed events, or InvalidInput naming the first unknown one and the allowed."""
    if not raw:
        raise InvalidInput("events", "give at least one event")
    if len(raw) > MAX_EVENTS:
        raise InvalidInput("events", f"at most {MAX_EVENTS} events")
    for i, name in enumerate(raw):
        if name not in EVENTS and name not in WILDCARDS:
            allowed = ", ".join((*EVENTS, *WILDCARDS))
            raise InvalidInput(f"events[{i}]", f"unknown event {name!r}; allowed: {allowed}")
    return list(dict.fromkeys(raw))


def refused_address(address: str) -> str | None:
    """Why a webhook may not be sent to this IP address (``None``: it may)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    return None


def check_url(url: str, allow_private: bool, resolve: Resolver = socket.getaddrinfo) -> str:
    """The URL, or InvalidInput naming ``url``: http or https only, a host that resolves, and
    (unless ``allow_private``) none of its addresses loopback, link-local, private,
    multicast, reserved or unspecified: no request of dialgate's reaches its own network."""
    if len(url) > MAX_URL:
        raise InvalidInput("url", f"at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidInput("url", f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url", "only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise InvalidInput("url", "the URL has no host")
    if parts.username or parts.password:
        raise InvalidInput("url", "credentials in the URL are not allowed")
    try:
        found = resolve(parts.hostname, port, 0, socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:  # gaierror; a label too long (UnicodeError)
        raise InvalidInput("url", f"the host {parts.hostname!r} does not resolve ({exc})") from None
    if not found:
        raise InvalidInput("url", f"the host {parts.hostname!r} does not resolve")
    if not allow_private:
        for *_, sockaddr in found:
            why = refused_address(str(sockaddr[0]))
            if why:
                raise InvalidInput(
                    "url",
                    f"{parts.hostname} resolves to {why}: refused (no requests to internal "
                    "networks; DIALGATE_WEBHOOK_ALLOW_PRIVATE=1 allows them)",
                )
    return url


def new_secret() -> str:
    """A signing secret in the form Standard Webhooks libraries take: ``whsec_`` + base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def envelope(event: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The body of a delivery (Standard Webhooks' ``type``, ``timestamp``, ``data``)."""
    return {"type": event, "timestamp": at.isoformat(), "data": data}


def enqueue(
    s: Session,
    org: str | None,
    event: str | None,
    data: dict[str, Any],
    campaign_id: int | None = None,
) -> int:
    """Add one delivery of ``event`` per enabled subscription of ``org`` (``None``: of every
    organisation) that names it, in the caller's transaction; how many. ``event`` ``None``:
    nothing to tell."""
    if event is None:
        return 0
    now = utcnow()
    query = select(Webhook.id, Webhook.events).where(Webhook.enabled.is_(True))
    if org is not None:
        query = query.where(Webhook.org == org)
    body = envelope(event, data, now)
    n = 0
    for webhook_id, patterns in s.execute(query):
        if matches(patterns, event):
            s.add(_delivery(webhook_id, event, body, now, campaign_id))
            n += 1
    return n


def transition_data(
    c: Campaign,
    version: int,
    from_status: str,
    to_status: str,
    action: str,
    actor: str,
    source: str,
    reason: str | None,
    at: datetime,
) -> dict[str, Any]:
    """A campaign event's ``data``: the transition as committed."""
    return {
        "campaign": {"id": c.id, "name": c.name, "org": c.org},
        "version": version,
        "from": from_status,
        "to": to_status,
        "action": action,
        "actor": actor,
        "source": source,
        "reason": reason,
        "at": at.isoformat(),
    }


def _delivery(
    webhook_id: int, event: str, body: dict[str, Any], now: datetime, campaign_id: int | None
) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id=webhook_id,
        campaign_id=campaign_id,
        event=event,
        msg_id=f"msg_{uuid.uuid4().hex}",
        payload=body,
        created_at=now,
        attempts=0,
        next_attempt_at=now,
    )


def view(w: Webhook) -> dict[str, Any]:
    return {
        "id": w.id,
        "org": w.org,
        "url": w.url,
        "events": list(w.events),
        "created_by": w.created_by,
        "created_at": w.created_at,
        "enabled": w.enabled,
        "disabled_at": w.disabled_at,
        "disabled_reason": w.disabled_reason,
        "failing_since": w.failing_since,
    }


def delivery_view(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event": d.event,
        "msg_id": d.msg_id,
        "campaign_id": d.campaign_id,
        "created_at": d.created_at,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "delivered_at": d.delivered_at,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "gave_up_at": d.gave_up_at,
        "state": "delivered" if d.delivered_at else "gave_up" if d.gave_up_at else "pending",
    }


class Webhooks:
    """The API's side: create, list, remove and test an organisation's subscriptions."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        redis_client: redis.Redis,
        keys: Keys,
        resolve: Resolver = socket.getaddrinfo,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.redis = redis_client
        self.keys = keys
        self.resolve = resolve

    def create(self, who: Who, url: str, events: list[str], actor: str) -> dict[str, Any]:
        """A new subscription of the caller's organisation; the answer carries its secret,
        this once."""
        patterns = checked_events(events)
        check_url(url, self.settings.webhook_allow_private, self.resolve)
        secret = new_secret()
        with self.sessions.begin() as s:
            w = Webhook(
                org=who.org,
                url=url,
                events=patterns,
                secret=secret,
                created_by=actor,
                created_at=utcnow(),
                enabled=True,
            )
            s.add(w)
            s.flush()
            record(s, who, "webhook.created", f"webhook:{w.id}", who.org, url=url, events=patterns)
            answer = view(w)
        return {**answer, "secret": secret}

    def entries(self, who: Who) -> list[dict[str, Any]]:
        with self.sessions() as s:
            rows = s.scalars(select(Webhook).where(Webhook.org == who.org).order_by(Webhook.id))
            return [view(w) for w in rows]

    def _get(self, s: Session, who: Who, webhook_id: int) -> Webhook:
        w = s.get(Webhook, webhook_id)
        if w is None or w.org != who.org:
            raise NotFound(f"webhook {webhook_id} not found")
        return w

    def remove(self, who: Who, webhook_id: int) -> dict[str, Any]:
        """Remove a subscription and its delivery log (nothing more is sent to it)."""
        for _ in range(3):
            try:
                with self.sessions.begin() as s:
                    w = self._get(s, who, webhook_id)
                    answer = view(w)
                    s.execute(
                        delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
                    )
                    s.delete(w)
                    record(s, who, "webhook.removed", f"webhook:{webhook_id}", who.org, url=w.url)
                return answer
            except IntegrityError:
                continue  # a delivery was enqueued for it meanwhile: delete again
        raise Conflict(f"webhook {webhook_id} is receiving events too fast to remove; retry")

    def test(self, who: Who, webhook_id: int) -> dict[str, Any]:
        """Queue a ``webhook.test`` delivery to this subscription (the sender posts it)."""
        with self.sessions.begin() as s:
            w = self._get(s, who, webhook_id)
            if not w.enabled:
                raise InvalidInput("webhook_id", f"webhook {webhook_id} is disabled")
            now = utcnow()
            data = {"webhook_id": webhook_id, "requested_by": who.name}
            d = _delivery(webhook_id, TEST_EVENT, envelope(TEST_EVENT, data, now), now, None)
            s.add(d)
            s.flush()
            answer = {"delivery_id": d.id, "msg_id": d.msg_id, "event": TEST_EVENT}
        with contextlib.suppress(*REDIS_ERRORS):  # the sender wakes at once
            self.redis.publish(self.keys.outbox_nudge, 0)
        return answer

    def deliveries(self, who: Who, webhook_id: int, limit: int) -> list[dict[str, Any]]:
        """The subscription's delivery log, newest first."""
        with self.sessions() as s:
            self._get(s, who, webhook_id)
            rows = s.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == webhook_id)
                .order_by(WebhookDelivery.id.desc())
                .limit(limit)
            )
            return [delivery_view(d) for d in rows]


def give_up_pending(s: Session, webhook_id: int, now: datetime, why: str) -> None:
    """Give up every delivery of a subscription not yet delivered (it was disabled)."""
    s.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.gave_up_at.is_(None),
        )
        .values(gave_up_at=now, next_attempt_at=None, last_error=why)
    )
