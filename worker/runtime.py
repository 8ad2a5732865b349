"""What one worker process knows and does: the dial path.

The path of a dial (:meth:`Runtime.dial`):

0. the calling window and the do-not-call list (:mod:`worker.checks`): a denial parks
   the attempt (window: the contact waits for it to open; DNC: ``blocked_dnc``);
1. claim through the gate (one Redis round trip: status, version ≥ the highest this
   worker has heard of, concurrency, emergency stop; records a lease);
2. denied → park the attempt (contact back to ``pending``, or ``cancelled``) and return,
   so the message is acknowledged only after the contact is safe;
3. ``queued → dialing`` by a conditional update: a redelivered message finds the attempt
   no longer ``queued`` and never dials again;
4. the provider places the call; the lease is released once it accepted or refused;
5. the outcome is written (``dialing → done | failed``).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import OperationalError

from shared import metrics
from shared.db import database_epoch
from shared.dnc import DncSet
from shared.gate import Claim, Gate
from shared.messages import DialArgs
from shared.models import Attempt, Campaign, Contact, utcnow
from shared.settings import Settings
from shared.states import AttemptState, ContactState, Status
from shared.windows import system_clock
from worker.checks import DialChecks
from worker.provider import CallRequest, Provider

log = structlog.get_logger("dialgate.worker")

# Denials that end the contact; any other denial parks it back to pending.
ENDS = {
    Status.CANCELLED.value: (AttemptState.CANCELLED, ContactState.CANCELLED),
    "dnc": (AttemptState.BLOCKED_DNC, ContactState.BLOCKED_DNC),
}

# How long a dial waits for a free concurrency slot before it parks its contact.
CONCURRENCY_WAIT_S = 2.0
# Tries of an outcome or park write when the database connection drops (0.1 s, doubling).
WRITE_TRIES = 5


class Runtime:
    def __init__(self, settings: Settings, engine: Engine, gate: Gate, provider: Provider) -> None:
        self.settings = settings
        self.engine = engine  # Core connections: the dial path is hot, no ORM session
        self.gate = gate
        self.provider = provider
        self.checks = DialChecks(engine, DncSet(gate.r, gate.keys), system_clock)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.started = time.time()
        # campaign id -> highest transition version this worker has heard of (broadcast or
        # gate read). Claims demand at least this version: broadcasts only add caution.
        self.observed: dict[int, int] = {}
        self._lock = threading.Lock()
        self.inflight = 0

    @functools.cached_property
    def epoch(self) -> str:
        """The database's epoch, read on the first dial (the database may be away at boot)."""
        return database_epoch(self.engine)

    # -- versions --------------------------------------------------------------------------
    def observe(self, campaign_id: int, version: int) -> bool:
        """Record a version heard of; True when it is newer than what we had."""
        with self._lock:
            if version <= self.observed.get(campaign_id, 0):
                return False
            self.observed[campaign_id] = version
            return True

    def applied(self) -> dict[int, int]:
        """A copy of the versions heard of (the subscriber thread changes the original)."""
        with self._lock:
            return dict(self.observed)

    # -- the dial path ---------------------------------------------------------------------
    def dial(self, args: DialArgs) -> str:
        structlog.contextvars.bind_contextvars(
            campaign_id=args.campaign_id, attempt_id=args.attempt_id, worker_id=self.worker_id
        )
        if args.epoch != self.epoch:
            log.warning("dial_message_of_another_database_dropped", epoch=args.epoch)
            return "dropped:foreign"
        if not self._start(args):
            log.info("attempt_not_queued_skip")
            return "skipped:not_queued"
        denial = self.checks.check(args)
        if denial is not None:
            self.park(args, denial.reason, denial.dial_after)
            return f"denied:{denial.reason}"
        # The claim comes after the database write, right before the call: a lease is held
        # only while the provider is being called, so a pause drains in a provider latency.
        claim = self._claim(args)
        if not claim.ok:
            metrics.DIALS_DENIED.labels(claim.reason).inc()
            self.park(args, claim.reason)
            return f"denied:{claim.reason}"
        assert claim.token is not None
        metrics.DIALS_PLACED.inc()
        with self._lock:
            self.inflight += 1
        try:
            result = self.provider.place(
                CallRequest(
                    campaign_id=args.campaign_id,
                    contact_id=args.contact_id,
                    attempt_id=args.attempt_id,
                    phone=args.phone,
                    worker_id=self.worker_id,
                    gate_version=claim.version,
                )
            )
        finally:
            # The provider accepted or refused (or raised): the lease goes back.
            self.gate.release(args.campaign_id, claim.token)
            with self._lock:
                self.inflight -= 1
        self._finish(args, claim.version, result.accepted, result.outcome, result.provider_call_id)
        return result.outcome

    def _claim(self, args: DialArgs) -> Claim:
        deadline = time.monotonic() + CONCURRENCY_WAIT_S
        pause = 0.005
        while True:
            claim = self.gate.claim(
                args.campaign_id,
                args.attempt_id,
                self.worker_id,
                self.observed.get(args.campaign_id, 0),
                self.settings.lease_ttl_ms,
            )
            if claim.reason != "concurrency" or time.monotonic() >= deadline:
                return claim
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _start(self, args: DialArgs) -> bool:
        """``queued → dialing``, conditionally; False when the attempt was not queued."""
        now = utcnow()
        with self.engine.begin() as s:
            moved = s.execute(
                update(Attempt)
                .where(
                    Attempt.id == args.attempt_id,
                    Attempt.campaign_id == args.campaign_id,
                    Attempt.contact_id == args.contact_id,
                    Attempt.state == AttemptState.QUEUED.value,
                )
                .values(
                    state=AttemptState.DIALING.value,
                    worker_id=self.worker_id,
                    started_at=now,
                )
            )
            if moved.rowcount != 1:
                return False  # redelivered, parked or cancelled meanwhile: never dial again
            s.execute(
                update(Contact)
                .where(Contact.id == args.contact_id)
                .values(state=ContactState.DIALING.value, updated_at=now)
            )
            return True

    def _finish(
        self, args: DialArgs, version: int, accepted: bool, outcome: str, call_id: str | None
    ) -> None:
        now = utcnow()
        state = AttemptState.DONE if accepted else AttemptState.FAILED
        late = [AttemptState.DIALING.value, AttemptState.UNKNOWN.value]
        # A failed call with calls left: the contact waits, then the feeder queues it again.
        contact: dict[str, Any] = {"state": state.value}
        if not accepted and args.attempt_no < args.max_attempts:
            wait = args.retry_backoff_s * 2 ** (args.attempt_no - 1)
            contact = {
                "state": ContactState.RETRY_WAIT.value,
                "retry_at": now + timedelta(seconds=wait),
            }

        def write(s: Connection) -> None:
            if contact["state"] == ContactState.RETRY_WAIT.value:
                # The campaign row first (the order a cancel locks in): a cancel committed
                # before this is seen, one after it finds the contact in retry_wait.
                status = s.scalar(
                    select(Campaign.status)
                    .where(Campaign.id == args.campaign_id)
                    .with_for_update(read=True)
                )
                if status == Status.CANCELLED.value:
                    contact.update(state=ContactState.CANCELLED.value, retry_at=None)
            # An outcome that arrives after the recovery sweep marked the attempt unknown
            # (a provider slower than the lease) still wins: it is what happened.
            s.execute(
                update(Attempt)
                .where(Attempt.id == args.attempt_id, Attempt.state.in_(late))
                .values(
                    state=state.value,
                    outcome=outcome,
                    provider_call_id=call_id,
                    finished_at=now,
                    gate_version=version,
                )
            )
            s.execute(
                update(Contact)
                .where(Contact.id == args.contact_id, Contact.state.in_(late))
                .values(**contact, updated_at=now)
            )

        self._write(write)

    def park(self, args: DialArgs, reason: str, dial_after: datetime | None = None) -> None:
        """A denied dial: the attempt this worker moved to ``dialing`` is parked and its
        contact goes back to ``pending`` (not fed before ``dial_after``), or ends
        ``cancelled`` / ``blocked_dnc``, before the message is acked."""
        attempt_state, contact_state = ENDS.get(reason, (AttemptState.PARKED, ContactState.PENDING))
        now = utcnow()

        def write(s: Connection) -> None:
            moved = s.execute(
                update(Attempt)
                .where(
                    Attempt.id == args.attempt_id,
                    Attempt.state == AttemptState.DIALING.value,
                    Attempt.worker_id == self.worker_id,
                )
                .values(state=attempt_state.value, deny_reason=reason, finished_at=now)
            )
            if moved.rowcount == 1:
                s.execute(
                    update(Contact)
                    .where(
                        Contact.id == args.contact_id, Contact.state == ContactState.DIALING.value
                    )
                    .values(state=contact_state.value, updated_at=now, dial_after=dial_after)
                )

        self._write(write)
        log.info("dial_denied", reason=reason)

    def _write(self, write: Callable[[Connection], None]) -> None:
        """Run a conditional update in its own transaction, up to ``WRITE_TRIES`` times when
        the connection is lost: a call that was placed (or denied) must not end ``unknown``
        because one connection dropped. Re-running a conditional update is harmless."""
        for n in range(WRITE_TRIES):
            try:
                with self.engine.begin() as s:
                    write(s)
                return
            except OperationalError as exc:
                if n == WRITE_TRIES - 1:
                    raise
                log.warning("outcome_write_retried", error=str(exc)[:200])
                time.sleep(0.1 * 2**n)

    def describe(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": self.started,
            "threads": self.settings.worker_threads,
            "inflight": self.inflight,
        }
