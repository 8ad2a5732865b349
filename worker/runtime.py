"""What one worker process knows and does: the dial path.

The path of a dial (:meth:`Runtime.receive`, then :meth:`Runtime.dial`). A dial message
carries up to ``dial_batch`` attempts of one campaign, and no number. Before anything else
its signature is checked (with ``DIALGATE_CONTROL_KEY`` set) and then its contract; a
message failing either is logged, counted and dropped. One worker thread dials its
attempts one after the other, each through the whole path:

1. ``queued → dialing`` by a conditional update, committed before anything else happens
   to the attempt (:mod:`worker.ledger`, group commit with the other threads' writes; the
   next attempt's start is committed while the current call is placed): a redelivered
   message finds the attempt no longer ``queued`` and never dials it again. The start
   gives back the number to dial, the contact's phone as stored: every check and the call
   use it;
2. the calling window (:mod:`worker.checks`, cached: no I/O per dial);
3. the gate claim, one Redis round trip: status, version ≥ the highest this worker has
   heard of, concurrency, lines, calls per second, emergency stop; a lease, a line and a
   token (:mod:`shared.gate`); the do-not-call lookups ride along;
4. denied → the attempt is parked (contact back to ``pending``, or ``cancelled`` /
   ``blocked_dnc``); a gate denial parks the rest of the message with it, in the same
   transaction; all before the message is acknowledged;
5. the back end places the call (:mod:`worker.provider`); the lease is released once the
   provider has the call or refused it; the call's life goes on without this thread, its
   events written through the ledger as they come, its line released when it ended;
6. what the provider answered at placement is committed while the next call is placed;
   the message is acknowledged once every placement is written.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any

import redis
import structlog
from pydantic import ValidationError
from sqlalchemy import Engine

from shared import metrics
from shared.calls import CallEvent
from shared.db import database_epoch
from shared.dnc import DncSet
from shared.fleet import Record
from shared.gate import LINE_MARGIN_S, Claim, Gate
from shared.messages import SIG, DialArgs, DialBatch, QueuedDial, dial_body, signed_by
from shared.settings import Settings
from shared.states import (
    AttemptState,
    CallEventKind,
    ContactState,
    DenyReason,
    Disposition,
    Hangup,
)
from shared.windows import system_clock
from worker.checks import Denial, DialChecks
from worker.ledger import Event, Ledger, Park, Start
from worker.provider import CallRequest, Provider, Report

log = structlog.get_logger("dialgate.worker")

# Denials that end the contact; any other denial parks it back to pending.
ENDS: dict[str, tuple[AttemptState, ContactState]] = {
    DenyReason.CANCELLED: (AttemptState.CANCELLED, ContactState.CANCELLED),
    DenyReason.DNC: (AttemptState.BLOCKED_DNC, ContactState.BLOCKED_DNC),
}

# Denials of one contact; any other (the gate's) holds for the whole campaign.
PER_CONTACT = frozenset({DenyReason.DNC, DenyReason.DNC_UNKNOWN, DenyReason.CALLING_WINDOW})

# How long a dial waits for a free concurrency slot, line or calls-per-second token before
# it parks its contact.
CONCURRENCY_WAIT_S = 2.0
# Claim denials a dial waits out (up to CONCURRENCY_WAIT_S) instead of parking at once.
WAITS = frozenset({DenyReason.CONCURRENCY, DenyReason.LINES, DenyReason.CPS})


def _started(start: Future[Any]) -> bool:
    """Whether a start handed to the ledger moved its attempt (False if its write failed);
    a moved attempt's result is its contact's number."""
    try:
        return bool(start.result())
    except Exception:
        return False


class Runtime:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        redis_client: redis.Redis,
        gate: Gate,
        provider: Callable[[Report], Provider],
    ) -> None:
        self.settings = settings
        self.engine = engine  # Core connections: the dial path is hot, no ORM session
        self.redis = redis_client  # for all but the gate: do-not-call set, heartbeat
        self.gate = gate
        self.checks = DialChecks(engine, DncSet(redis_client, gate.keys), system_clock)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.ledger = Ledger(engine, self.worker_id, gate.end_lines)
        self.provider = provider(self.report)
        self.line_ttl_ms = round((settings.max_call_seconds + LINE_MARGIN_S) * 1000)
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
    def receive(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """A dial message as the broker delivered it (the actor's arguments). With a control
        key, its signature is checked before anything else; then its contract. A message
        failing either is dropped (logged, counted, and acknowledged by returning: its
        attempts are left alone, and the feeder enqueues a truly lost one again)."""
        # This thread's previous message named its campaign and attempt: not this one's.
        structlog.contextvars.unbind_contextvars("campaign_id", "attempt_id")
        key = self.settings.secret("control_key")
        if key and (args or not signed_by(dial_body(kwargs), kwargs.get(SIG), key)):
            return self._drop("bad_signature", "missing or wrong signature")
        try:
            if args:
                raise ValueError(f"{len(args)} positional arguments")
            batch = DialBatch.model_validate(kwargs)
        except (ValidationError, ValueError) as exc:
            return self._drop("invalid", str(exc)[:300])
        return self.dial(batch)

    @staticmethod
    def _drop(reason: str, detail: str) -> list[str]:
        log.warning("dial_message_dropped", reason=reason, error=detail)
        metrics.DIAL_MESSAGES_DROPPED.labels(reason).inc()
        return [f"dropped:{reason}"]

    def dial(self, batch: DialBatch) -> list[str]:
        """Dial the attempts of one message, one after the other; what became of each."""
        structlog.contextvars.bind_contextvars(
            campaign_id=batch.campaign_id, worker_id=self.worker_id
        )
        if batch.epoch != self.epoch:
            log.warning("dial_message_of_another_database_dropped", epoch=batch.epoch)
            metrics.DIAL_MESSAGES_DROPPED.labels("foreign_epoch").inc()
            return ["dropped:foreign"] * len(batch.attempts)
        todo = batch.args()
        results: list[str] = []
        # The next attempt's start is committed while the current call is placed, and each
        # outcome while the next call is: the message is acknowledged once all are written.
        ahead = self._start_next(todo)  # a message holds at least one attempt
        written: list[Future[Any]] = []
        try:
            while todo:
                queued = todo.pop(0)
                structlog.contextvars.bind_contextvars(attempt_id=queued.attempt_id)
                assert ahead is not None  # every attempt's start is handed over first
                phone, ahead = ahead.result(), None
                if phone is None:
                    log.info("attempt_not_queued_skip")
                    results.append("skipped:not_queued")
                    ahead = self._start_next(todo)
                    continue
                # From here on the number is the contact's as its start read it.
                args = queued.dialing(phone)
                denial = self.checks.calling_window(args)
                claim = None if denial is not None else self._claim(args)
                if claim is not None and not claim.ok:
                    denial = Denial(claim.reason)
                elif claim is not None:
                    denial = self.checks.dnc_verdict(claim.members)
                    if denial is not None:
                        self.gate.give_back(args.campaign_id, args.attempt_id, claim)
                if denial is not None:
                    # A gate denial holds for the whole campaign: the rest of the message is
                    # parked with this attempt instead of meeting the same gate one by one.
                    rest = [] if denial.reason in PER_CONTACT else todo
                    self.park(args, denial.reason, denial.dial_after, rest)
                    results += [f"denied:{denial.reason}"] * (1 + len(rest))
                    metrics.DIALS_DENIED.labels(denial.reason).inc(1 + len(rest))
                    if rest:
                        todo = []
                    ahead = self._start_next(todo)
                    continue
                assert claim is not None
                ahead = self._start_next(todo)
                placed = self._call(batch, args, claim)
                written += self.ledger.submit(Event(placed))
                results.append(placed.outcome or "")
        finally:
            if ahead is not None and todo and _started(ahead):
                # Leaving early (an error): the attempt started ahead was never dialed.
                self.park(todo[0], DenyReason.ABORTED)
            for f in written:
                f.result()
        return results

    def report(self, event: CallEvent) -> None:
        """What a back end reports of a call (from any thread): written by the ledger with
        the other threads' writes; the call's line is released once its end is committed."""
        self.ledger.submit(Event(event))

    def hang_up(self, campaign_id: int | None, scope: Hangup) -> int:
        """End this process's live calls of a campaign (None: of every campaign) that
        ``scope`` targets."""
        if scope == Hangup.NONE:
            return 0
        n = self.provider.hang_up(campaign_id, scope)
        log.info("calls_hung_up", campaign_id=campaign_id, scope=scope.value, calls=n)
        return n

    def close(self, timeout: float = 5.0) -> None:
        """Shutting down: calls still up are hung up, and their ends written (bounded)."""
        self.provider.close()
        self.ledger.flush(timeout)

    def _start_next(self, todo: list[QueuedDial]) -> Future[Any] | None:
        """Hand the next attempt's start to the ledger (None: the message is done); its
        result is the number to dial, or None when the attempt was not started."""
        return self.ledger.submit(Start(todo[0]))[0] if todo else None

    def _call(self, batch: DialBatch, args: DialArgs, claim: Claim) -> CallEvent:
        """Place the call; the event that says what the provider answered."""
        assert claim.lease_id is not None
        metrics.DIALS_PLACED.inc()
        with self._lock:
            self.inflight += 1
        try:
            placed = self.provider.place(
                CallRequest(
                    campaign_id=args.campaign_id,
                    contact_id=args.contact_id,
                    attempt_id=args.attempt_id,
                    phone=args.phone,
                    worker_id=self.worker_id,
                    gate_version=claim.version,
                    max_seconds=self.settings.max_call_seconds,
                    machine_detection=batch.machine_detection,
                )
            )
        finally:
            # The provider has the call, refused it, or raised (the call may be out: its
            # line stays until it expires): the lease goes back.
            self.gate.release(args.campaign_id, claim.lease_id)
            with self._lock:
                self.inflight -= 1
        if placed.accepted:
            return CallEvent(
                args.attempt_id,
                CallEventKind.PLACED,
                outcome=placed.outcome,
                provider_call_id=placed.provider_call_id,
                gate_version=claim.version,
            )
        return CallEvent(
            args.attempt_id,
            CallEventKind.ENDED,
            disposition=Disposition.FAILED,
            outcome=placed.outcome,
            sip_code=placed.sip_code,
            error=placed.error,
            gate_version=claim.version,
        )

    def _claim(self, args: DialArgs) -> Claim:
        deadline = time.monotonic() + CONCURRENCY_WAIT_S
        pause = 0.005
        probes = self.checks.dnc_probes(args)
        while True:
            claim = self.gate.claim(
                args.campaign_id,
                args.attempt_id,
                self.worker_id,
                self.observed.get(args.campaign_id, 0),
                self.settings.lease_ttl_ms,
                probes,
                self.line_ttl_ms,
            )
            if claim.lines_expired:
                # Calls whose end never arrived (a worker died, an event was lost): the
                # recovery sweep marks their attempts unknown.
                log.warning("lines_expired", lines=claim.lines_expired)
                metrics.LINES_EXPIRED.inc(claim.lines_expired)
            now = time.monotonic()
            if claim.reason not in WAITS or now >= deadline:
                return claim
            wait = claim.retry_after_ms / 1000 if claim.reason == DenyReason.CPS else pause
            time.sleep(max(0.001, min(wait, deadline - now)))
            pause = min(pause * 2, 0.05)

    def park(
        self,
        args: QueuedDial,
        reason: str,
        dial_after: datetime | None = None,
        rest: list[QueuedDial] | None = None,
    ) -> None:
        """A denied dial: the attempt this worker moved to ``dialing`` (and ``rest``, the
        attempts of its message still ``queued``) are parked and their contacts go back to
        ``pending`` (not fed before ``dial_after``), or end ``cancelled`` / ``blocked_dnc``,
        before the message is acked."""
        attempt_state, contact_state = ENDS.get(reason, (AttemptState.PARKED, ContactState.PENDING))
        rest_ids = tuple(r.attempt_id for r in rest or [])
        self.ledger.write(
            Park(args, reason, attempt_state.value, contact_state.value, dial_after, rest_ids)
        )
        log.info("dial_denied", reason=reason, parked_with_it=len(rest_ids))

    def describe(self, now: float) -> Record:
        """This worker's heartbeat record as of ``now`` (unix seconds)."""
        return Record(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=self.started,
            threads=self.settings.worker_threads,
            inflight=self.inflight,
            calls=self.provider.live(),
            last=now,
            applied={str(c): v for c, v in self.applied().items()},
        )
