"""What one worker process knows and does: the dial path.

The path of a dial (:meth:`Runtime.receive`, then :class:`_Dial`). A dial message carries
up to ``dial_batch`` attempts of one campaign, and no number. Before anything else its
signature is checked (with ``DIALGATE_CONTROL_KEY`` set) and then its contract; a message
failing either is logged, counted and dropped. One worker thread dials its attempts
together:

0. it waits until the campaign has room for a call (:meth:`shared.gate.Gate.room`, a read:
   the claim decides); a closed gate, or no room within ``CONCURRENCY_WAIT_S``, parks the
   message where it is, never started;
1. ``queued → dialing`` for all of them by one conditional update, committed before
   anything else happens to them (:mod:`worker.ledger`, group commit with the other
   threads' writes): a redelivered message finds its attempts no longer ``queued`` and
   never dials them again. The start gives back each number to dial, the contact's phone
   as stored: every check and the call use it;
2. the calling window of each (:mod:`worker.checks`, cached: no I/O per dial);
3. one gate claim for all of them, one Redis round trip: status, version ≥ the highest
   this worker has heard of, then a lease, a line and a token for as many as concurrency,
   lines and calls per second leave room for (:mod:`shared.gate`); the leases of the calls
   placed just before go back in the same trip, and the do-not-call lookups ride along;
   with an organisation's frequency limit, one more script call then takes a slot of each
   granted attempt's number (:mod:`shared.frequency`), and an attempt refused one gives its
   lease and line back (like the do-not-call list's denials);
4. the back end places the granted calls at once (:mod:`worker.provider`); the calls'
   lives go on without this thread, their events written through the ledger as they
   come, their lines released when they end;
5. attempts the gate had no room for are claimed again when a lease or line is given back
   (up to ``CONCURRENCY_WAIT_S``); a gate denial holds for the whole campaign and denies
   every attempt still open;
6. denied attempts are parked (contact back to ``pending``, with a ``dial_after`` when the
   calling window or the frequency limit says when it may be dialed; or ``cancelled`` /
   ``blocked_dnc``) by one write, and the message is acknowledged once that and every
   placement are written.

Nothing is logged per dial at INFO; ``dial_denied`` is at DEBUG, the metrics count.
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
from shared.frequency import FrequencySet
from shared.gate import LINE_MARGIN_S, Gate
from shared.messages import SIG, DialArgs, DialBatch, dial_body, signed_by
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
from worker.provider import CallRequest, Placed, Provider, Report

log = structlog.get_logger("dialgate.worker")

# Denials that end the contact; any other denial parks it back to pending.
ENDS: dict[str, tuple[AttemptState, ContactState]] = {
    DenyReason.CANCELLED: (AttemptState.CANCELLED, ContactState.CANCELLED),
    DenyReason.DNC: (AttemptState.BLOCKED_DNC, ContactState.BLOCKED_DNC),
}

# How long a dial waits for a free concurrency slot, line or calls-per-second token before
# it parks its contact.
CONCURRENCY_WAIT_S = 2.0
# Claim denials a dial waits out (up to CONCURRENCY_WAIT_S) instead of parking at once.
WAITS = frozenset({DenyReason.CONCURRENCY, DenyReason.LINES, DenyReason.CPS})
# A dial waiting for room wakes when a lease or line is given back, or after this long (a
# crashed worker's lease expires without a word).
FREED_LOOK_S = 0.05


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
        self.checks = DialChecks(
            engine,
            DncSet(redis_client, gate.keys),
            system_clock,
            FrequencySet(redis_client, gate.keys),
        )
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.ledger = Ledger(engine, self.worker_id, gate.end_lines)
        self.provider = provider(self.report)
        self.line_ttl_ms = round((settings.max_call_seconds + LINE_MARGIN_S) * 1000)
        self.started = time.time()
        # campaign id -> highest transition version this worker has heard of (broadcast or
        # gate read). Claims demand at least this version: broadcasts only add caution.
        self.observed: dict[int, int] = {}
        self._lock = threading.Lock()
        self._placing = threading.local()  # .events: reported while this thread places
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
        """Dial the attempts of one message, all at once; what became of each, in order."""
        structlog.contextvars.bind_contextvars(
            campaign_id=batch.campaign_id, worker_id=self.worker_id
        )
        if batch.epoch != self.epoch:
            log.warning("dial_message_of_another_database_dropped", epoch=batch.epoch)
            metrics.DIAL_MESSAGES_DROPPED.labels("foreign_epoch").inc()
            return ["dropped:foreign"] * len(batch.attempts)
        return _Dial(self, batch).run()

    def report(self, event: CallEvent) -> None:
        """What a back end reports of a call (from any thread): written by the ledger with
        the other threads' writes; the call's line is released once its end is committed.
        What a back end reports from a thread while it places calls goes to the ledger with
        the placements, after them (one write instead of one per event)."""
        held = getattr(self._placing, "events", None)
        if held is not None:
            held.append(event)
        else:
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


class _Dial:
    """The attempts of one message on their way: started by one write, claimed together
    (as many at a time as the gate has room for), placed at once, the denied ones parked
    by one write before the message is acknowledged."""

    def __init__(self, rt: Runtime, batch: DialBatch) -> None:
        self.rt = rt
        self.batch = batch
        self.campaign_id = batch.campaign_id
        self.todo = batch.args()
        self.out = [""] * len(self.todo)  # what became of each attempt, in message order
        # Started, neither placed nor denied: message index, attempt, its do-not-call lookups.
        self.open: list[tuple[int, DialArgs, list[tuple[str, str]]]] = []
        self.denied: dict[tuple[str, datetime | None], list[int]] = {}  # -> message indexes
        self.held: list[str] = []  # leases of calls placed, given back with the next claim
        self.written: list[Future[Any]] = []  # the placements' events handed to the ledger
        self.deadline = time.monotonic() + CONCURRENCY_WAIT_S  # the wait for room, all told

    def run(self) -> list[str]:
        rt = self.rt
        closed = self.wait_for_room()
        if closed is not None:
            # Nothing started: the attempts are parked where they are (one write instead of
            # a start, a claim and a park).
            ids = tuple(q.attempt_id for q in self.todo)
            rt.ledger.write(Park(ids, closed, *_ends(closed), queued=True))
            metrics.DIALS_DENIED.labels(closed).inc(len(ids))
            log.debug("dial_denied", reason=closed, attempt_ids=ids, started=False)
            return [f"denied:{closed}"] * len(ids)
        # Every attempt durably `dialing` before any call (a redelivered message finds its
        # attempts no longer `queued`): one conditional statement for the whole message.
        phones = rt.ledger.write(*(Start(q) for q in self.todo))
        for i, (q, phone) in enumerate(zip(self.todo, phones, strict=True)):
            if phone is None:
                log.info("attempt_not_queued_skip", attempt_id=q.attempt_id)
                self.out[i] = "skipped:not_queued"
                continue
            args = q.dialing(phone)  # from here on the number is the contact's as stored
            denial = rt.checks.calling_window(args)
            if denial is None:
                self.open.append((i, args, rt.checks.dnc_probes(args)))
            else:
                self.deny(i, denial)
        try:
            self.claim_and_place()
        finally:
            if self.held:
                rt.gate.release(self.campaign_id, *self.held)
            for i, *_ in self.open:  # leaving early (an error): started, never dialed
                self.deny(i, Denial(DenyReason.ABORTED))
            self.park()
            for f in self.written:
                f.result()
        return self.out

    def wait_for_room(self) -> str | None:
        """Before anything is started: wait (up to ``CONCURRENCY_WAIT_S``) until the
        campaign has room for a call, so that a started attempt is one about to be placed
        and a thread waiting for room holds nothing but its message; None once there is
        room, else why the message is not dialed (the gate's status, or still full)."""
        rt, cid = self.rt, self.campaign_id
        while True:
            reason = rt.gate.room(cid, rt.observed.get(cid, 0))
            now = time.monotonic()
            if reason == "ok":
                return None
            if reason not in WAITS or now >= self.deadline:
                return reason
            rt.gate.wait_freed(cid, min(FREED_LOOK_S, self.deadline - now))

    def claim_and_place(self) -> None:
        """Claim for every open attempt, place what was granted, and wait for room (up to
        ``CONCURRENCY_WAIT_S``) while the gate is open but full; a gate denial holds for
        the whole campaign, so it denies every attempt still open."""
        rt, cid = self.rt, self.campaign_id
        while self.open:
            claims = rt.gate.claim_many(
                cid,
                [args.attempt_id for _, args, _ in self.open],
                rt.worker_id,
                rt.observed.get(cid, 0),
                rt.settings.lease_ttl_ms,
                [p for *_, ps in self.open for p in ps],
                rt.line_ttl_ms,
                release=self.held,
            )
            self.held = []
            if claims.lines_expired:
                # Calls whose end never arrived (a worker died, an event was lost): the
                # recovery sweep marks their attempts unknown.
                log.warning("lines_expired", lines=claims.lines_expired)
                metrics.LINES_EXPIRED.inc(claims.lines_expired)
            n = len(claims.leases)
            granted, self.open = self.open[:n], self.open[n:]
            answers = iter(claims.members or ())
            go: list[tuple[int, DialArgs, str]] = []
            back: list[tuple[int, str]] = []
            for (i, args, ps), lease in zip(granted, claims.leases, strict=False):
                denial = rt.checks.dnc_verdict(tuple(next(answers) for _ in ps))
                if denial is None:
                    go.append((i, args, lease))
                else:
                    self.deny(i, denial)
                    back.append((args.attempt_id, lease))
            if go:  # the frequency limit's slots (one script call; none without a limit)
                verdicts = rt.checks.frequency(cid, [args for _, args, _ in go])
                for (i, args, lease), denial in zip(go, verdicts, strict=True):
                    if denial is not None:
                        self.deny(i, denial)
                        back.append((args.attempt_id, lease))
                go = [g for g, denial in zip(go, verdicts, strict=True) if denial is None]
            if back:
                rt.gate.give_back(cid, [a for a, _ in back], [lease for _, lease in back])
            if go:
                self.place(go, claims.version)
            now = time.monotonic()
            if not self.open:
                return
            if claims.reason not in WAITS or now >= self.deadline:
                for i, *_ in self.open:
                    self.deny(i, Denial(claims.reason))
                self.open = []
                return
            if go:
                continue  # room may be back with the leases just given back: claim again
            if claims.reason == DenyReason.CPS:
                time.sleep(max(0.001, min(claims.retry_after_ms / 1000, self.deadline - now)))
            else:
                rt.gate.wait_freed(cid, min(FREED_LOOK_S, self.deadline - now))

    def place(self, go: list[tuple[int, DialArgs, str]], version: int) -> None:
        """Place the granted calls at once; their placements go to the ledger. The leases go
        back once the provider has the calls or refused them (raised: the calls may be out,
        their attempts stay ``dialing`` and their lines until they expire)."""
        rt = self.rt
        self.held = [lease for *_, lease in go]
        calls = [
            CallRequest(
                campaign_id=args.campaign_id,
                contact_id=args.contact_id,
                attempt_id=args.attempt_id,
                phone=args.phone,
                worker_id=rt.worker_id,
                gate_version=version,
                max_seconds=rt.settings.max_call_seconds,
                machine_detection=self.batch.machine_detection,
            )
            for _, args, _ in go
        ]
        metrics.DIALS_PLACED.inc(len(calls))
        with rt._lock:
            rt.inflight += len(calls)
        reported: list[CallEvent] = []
        rt._placing.events = reported
        try:
            placed = rt.provider.place_many(calls)
        except BaseException:
            rt.ledger.submit(*(Event(e) for e in reported))  # what was reported still goes
            raise
        finally:
            rt._placing.events = None
            with rt._lock:
                rt.inflight -= len(calls)
        events = [
            _placement(call.attempt_id, p, version) for call, p in zip(calls, placed, strict=True)
        ]
        self.written += rt.ledger.submit(*(Event(e) for e in events + reported))
        for (i, _, _), p in zip(go, placed, strict=True):
            self.out[i] = p.outcome or ""

    def deny(self, i: int, denial: Denial) -> None:
        self.denied.setdefault((denial.reason, denial.dial_after), []).append(i)
        self.out[i] = f"denied:{denial.reason}"

    def park(self) -> None:
        """The denied attempts are parked and their contacts go back to ``pending`` (not fed
        before their ``dial_after``), or end ``cancelled`` / ``blocked_dnc``: one write,
        before the message is acknowledged."""
        parks = []
        for (reason, dial_after), idx in self.denied.items():
            ids = tuple(self.todo[i].attempt_id for i in idx)
            parks.append(Park(ids, reason, *_ends(reason), dial_after))
            metrics.DIALS_DENIED.labels(reason).inc(len(ids))
            log.debug("dial_denied", reason=reason, attempt_ids=ids)
        self.denied = {}
        if parks:
            self.rt.ledger.write(*parks)


def _ends(reason: str) -> tuple[str, str]:
    """What a denial for ``reason`` makes of the attempt and of its contact."""
    attempt, contact = ENDS.get(reason, (AttemptState.PARKED, ContactState.PENDING))
    return attempt.value, contact.value


def _placement(attempt_id: int, placed: Placed, version: int) -> CallEvent:
    """The event that says what the provider answered when the call was placed."""
    if placed.accepted:
        return CallEvent(
            attempt_id,
            CallEventKind.PLACED,
            outcome=placed.outcome,
            provider_call_id=placed.provider_call_id,
            gate_version=version,
        )
    return CallEvent(
        attempt_id,
        CallEventKind.ENDED,
        disposition=Disposition.FAILED,
        outcome=placed.outcome,
        sip_code=placed.sip_code,
        error=placed.error,
        gate_version=version,
    )
