"""Database models (SQLAlchemy 2). The database is the source of truth.

Tables: campaigns, transitions (append-only, per-campaign monotonic version), contacts,
attempts (one row per dial attempt), holds (who or what keeps a campaign paused), outbox
(events to broadcast), emergency_stops, dnc, meta (the database's epoch), api_tokens,
web_sessions, audit_events, org_settings, webhooks (each organisation's subscriptions)
and webhook_deliveries (one row per event and subscription).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from shared.text import ACTOR_MAX

# The platform admin token's organisation, and that of rows written without a caller.
DEFAULT_ORG = "default"

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    org: Mapped[str] = mapped_column(String(64), default="default", index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=1)
    # Live calls at once (dialing + ringing + answered) across the fleet; calls started per
    # second (None: no limit of its own).
    max_lines: Mapped[int] = mapped_column(Integer, default=1)
    max_cps: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Retry policy: a call that ended with a disposition listed in ``retry`` (disposition ->
    # seconds) is tried again after that delay, up to max_attempts calls per contact (each
    # retry passes the gate, the window and do-not-call). Any other disposition is final.
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    retry: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    # Answering-machine detection, where the back end offers it (Twilio).
    machine_detection: Mapped[bool] = mapped_column(default=False)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    calling_window: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pause_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    pause_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # A temporary concurrency cap set by a controlled resume, until ``cap_until``; the
    # cap-lift loop ends it with a ``lift_cap`` transition.
    cap_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cap_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Monitor thresholds that override the global settings for this campaign.
    monitor: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A canary resume being watched: ``{calls, max_failure_ratio, version, at}`` (the
    # resume's version and time); cleared by its verdict (passed, or paused again).
    canary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def concurrency(self) -> int:
        """The concurrency the gate enforces: the temporary cap while there is one."""
        return effective_concurrency(self.max_concurrency, self.cap_concurrency)


def effective_concurrency(max_concurrency: int, cap: int | None) -> int:
    return max_concurrency if cap is None else min(cap, max_concurrency)


class Transition(Base):
    __tablename__ = "transitions"
    __table_args__ = (UniqueConstraint("campaign_id", "version", name="uq_transitions_version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Who, as authenticated: the token's role and the client's address (actor is the name);
    # the client is the one a trusted proxy named, the peer the TCP peer itself.
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    peer_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cap_concurrency: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cap_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When the answer went out (after gate CAS and drain) and whether the gate drained;
    # the safety checker replays calls against these.
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    drained: Mapped[bool | None] = mapped_column(nullable=True)
    # The holds it placed or released and how (acknowledged, approved, overridden
    # preflight findings, a canary): ``control.campaigns.holds``.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Hold(Base):
    """One reason a campaign is paused: who or what placed it, why, when; and, once
    released, by whom (the resume that released it). A compliance hold's release is asked
    for by one token and approved by another (``release_requested_*``)."""

    __tablename__ = "holds"
    __table_args__ = (Index("ix_holds_campaign_released", "campaign_id", "released_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    kind: Mapped[str] = mapped_column(String(16))
    # What a resume acknowledges to release it: the monitor rule, the alert's name.
    rule: Mapped[str | None] = mapped_column(String(ACTOR_MAX), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    placed_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    placed_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    placed_version: Mapped[int] = mapped_column(Integer)
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    release_requested_by: Mapped[str | None] = mapped_column(String(ACTOR_MAX), nullable=True)
    # The requesting credential (token id, or "admin"): the approver must be another one.
    release_requested_key: Mapped[str | None] = mapped_column(String(32), nullable=True)
    release_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(ACTOR_MAX), nullable=True)
    released_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("campaign_id", "phone", name="uq_contacts_campaign_phone"),
        Index("ix_contacts_campaign_state_id", "campaign_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    phone: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Not fed before this instant: a dial denied by the calling window waits for it to open.
    dial_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        Index("ix_attempts_campaign_state_disposition", "campaign_id", "state", "disposition"),
        Index("ix_attempts_contact", "contact_id"),
        # The calls of a frequency limit's window (shared.frequency: rebuild, diagnosis).
        Index("ix_attempts_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id"))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    worker_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    gate_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Which call of its contact this is (1: the first).
    attempt_no: Mapped[int] = mapped_column(Integer, default=1)
    # The call's life (shared.calls): what the provider answered at placement, when it
    # rang and was answered (finished_at: when it ended), how it ended, the SIP code or
    # provider error, ring and talk time.
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ringing_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disposition: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sip_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ring_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    talk_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provider_call_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    deny_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Outbox(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unsent", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    routing_key: Mapped[str] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class EmergencyStop(Base):
    """Every emergency stop and lift. The stop itself lives in Redis (one write, works
    while the database is down); this row is its record, written when the database can."""

    __tablename__ = "emergency_stops"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(8))  # stop | lift
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    drained: Mapped[bool | None] = mapped_column(nullable=True)


class Dnc(Base):
    """The do-not-call list, per organisation. Mirrored in a Redis set per organisation
    that every dial checks."""

    __tablename__ = "dnc"
    __table_args__ = (UniqueConstraint("org", "phone", name="uq_dnc_org_phone"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    org: Mapped[str] = mapped_column(String(64), default=DEFAULT_ORG, server_default=DEFAULT_ORG)
    phone: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Meta(Base):
    """Facts about this database. ``epoch``: a random id made by the migration, so gates
    and dial messages left in Redis or RabbitMQ by another (or a reset) database are
    recognised as foreign."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class ApiToken(Base):
    """An API token: only the SHA-256 of the secret is stored; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    org: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    platform: Mapped[bool] = mapped_column(default=False)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebSession(Base):
    """A browser session made by signing in with a token at ``/login``. The cookie holds a
    random id whose SHA-256 is stored here; revoking the token ends its sessions. A session
    opened with ``DIALGATE_ADMIN_TOKEN`` (no ``token_id``) keeps ``admin_mac``, the
    HMAC-SHA256 of its id keyed with that token: it ends when the token is replaced."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), nullable=True)
    admin_mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """Every transition and administrative change, with who did it from where."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_at", "org", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    org: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    peer_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class OrgSettings(Base):
    """An organisation's settings. ``max_calls_per_number``: its contact frequency limit,
    ``{"calls": int, "hours": float}`` (at most ``calls`` calls to one number within any
    ``hours``, across all its campaigns; None: no limit), checked at dial time
    (:mod:`shared.frequency`)."""

    __tablename__ = "org_settings"

    org: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_calls_per_number: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Webhook(Base):
    """An organisation's subscription to events (docs/webhooks.md). The secret signs each
    delivery (Standard Webhooks); it is answered once, at creation, and never listed."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    org: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Since when every attempt has failed (None: the last one succeeded, or none yet).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookDelivery(Base):
    """One event for one subscription, written in the transaction of the change it tells
    (the transactional outbox); ``msg_id`` is its ``webhook-id``, the same on every retry."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_pending", "delivered_at", "gave_up_at", "next_attempt_at"),
        Index("ix_webhook_deliveries_lane", "webhook_id", "campaign_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id"))
    campaign_id: Mapped[int | None] = mapped_column(Id, nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    gave_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
