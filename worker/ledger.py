"""The dial path's database writes, grouped: one writer thread per worker process commits
what every dial thread of the process asked for since its last commit, in one transaction
(group commit), with one statement per kind of change.

A dial thread hands its writes to :meth:`Ledger.write` and waits until they are committed:
an attempt is ``dialing`` in the database before its call is placed, and a message is
acknowledged only after its outcomes are written, exactly as if each thread committed its
own transaction. What changes is the cost: a commit and a handful of statements per group
instead of per dial.

Three kinds of writes (:class:`Start`, :class:`Outcome`, :class:`Park`), all conditional
updates. A start also reads the number to dial: its contact's phone as stored, returned by
the start's own contact update (no extra statement), never a number a message carries.
Within a transaction every attempt row is written before any contact row: the order a
cancel locks them in, so the two never deadlock.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, bindparam, or_, select, tuple_, update
from sqlalchemy.exc import OperationalError

from shared.messages import DialArgs, QueuedDial
from shared.models import Attempt, Campaign, Contact, utcnow
from shared.states import AttemptState, CallOutcome, ContactState, Status

log = structlog.get_logger("dialgate.worker")

# Tries of a group when the database connection drops (0.1 s, doubling). Every write is a
# conditional update, so running a group again is harmless.
WRITE_TRIES = 5
# States an outcome may overwrite: an outcome that arrives after the recovery sweep marked
# the attempt unknown (a provider slower than the lease) still wins: it is what happened.
# (spelled without IN: statements run with executemany cannot expand a list)
LATE = [AttemptState.DIALING.value, AttemptState.UNKNOWN.value]

# Statements built once: building a statement per dial cost more CPU than running it.
START_ATTEMPTS = (
    update(Attempt)
    .where(
        tuple_(Attempt.id, Attempt.campaign_id, Attempt.contact_id).in_(
            bindparam("keys", expanding=True)
        ),
        Attempt.state == AttemptState.QUEUED.value,
    )
    .values(state=AttemptState.DIALING.value, worker_id=bindparam("w"), started_at=bindparam("t"))
    .returning(Attempt.id, Attempt.contact_id)
)
# The contacts of the attempts START_ATTEMPTS moved (it matched each attempt's own contact),
# with the number to dial: the contact's phone as stored.
START_CONTACTS = (
    update(Contact)
    .where(Contact.id.in_(bindparam("ids", expanding=True)))
    .values(state=ContactState.DIALING.value, updated_at=bindparam("t"))
    .returning(Contact.id, Contact.phone)
)
FINISH_ATTEMPT = (
    update(Attempt)
    .where(Attempt.id == bindparam("a_id"), or_(*(Attempt.state == x for x in LATE)))
    .values(
        state=bindparam("st"),
        outcome=bindparam("o"),
        provider_call_id=bindparam("call"),
        finished_at=bindparam("t"),
        gate_version=bindparam("v"),
    )
)
FINISH_CONTACT = (
    update(Contact)
    .where(Contact.id == bindparam("k_id"), or_(*(Contact.state == x for x in LATE)))
    .values(state=bindparam("st"), retry_at=bindparam("r"), updated_at=bindparam("t"))
)
CAMPAIGN_STATUS_SHARED = (
    select(Campaign.status).where(Campaign.id == bindparam("c_id")).with_for_update(read=True)
)
PARK_ATTEMPT = (
    update(Attempt)
    .where(
        Attempt.id == bindparam("a_id"),
        Attempt.state == AttemptState.DIALING.value,
        Attempt.worker_id == bindparam("w"),
    )
    .values(state=bindparam("st"), deny_reason=bindparam("why"), finished_at=bindparam("t"))
)
PARK_QUEUED = (
    update(Attempt)
    .where(
        Attempt.id.in_(bindparam("ids", expanding=True)),
        Attempt.state == AttemptState.QUEUED.value,
    )
    .values(state=bindparam("st"), deny_reason=bindparam("why"), finished_at=bindparam("t"))
    .returning(Attempt.contact_id)
)
PARK_CONTACTS = (
    update(Contact)
    .where(
        Contact.id.in_(bindparam("ids", expanding=True)),
        Contact.state.in_([ContactState.DIALING.value, ContactState.QUEUED.value]),
    )
    .values(state=bindparam("st"), updated_at=bindparam("t"), dial_after=bindparam("after"))
)


@dataclass(frozen=True)
class Start:
    """``queued → dialing``, conditionally: its result is the number to dial (its contact's
    phone as stored), or None when the attempt was not ``queued`` (redelivered, parked or
    cancelled meanwhile: never dial it again) or its campaign or contact is not the
    message's."""

    args: QueuedDial


@dataclass(frozen=True)
class Outcome:
    """What became of a placed call: ``dialing → done | failed``, the contact to
    ``retry_wait`` when it has calls left (``cancelled`` if its campaign was cancelled)."""

    args: DialArgs
    version: int
    accepted: bool
    outcome: CallOutcome
    call_id: str | None
    at: datetime = field(default_factory=utcnow)

    @property
    def retries(self) -> bool:
        """A failed call with calls left: the contact waits, then the feeder queues it."""
        return not self.accepted and self.args.attempt_no < self.args.max_attempts

    @property
    def state(self) -> str:
        return (AttemptState.DONE if self.accepted else AttemptState.FAILED).value

    def cancelled(self, s: Connection) -> bool:
        """Before a retry: read the campaign row (the order a cancel locks in). A cancel
        committed before this is seen, one after it finds the contact in retry_wait."""
        status = s.scalar(CAMPAIGN_STATUS_SHARED, {"c_id": self.args.campaign_id})
        return status == Status.CANCELLED.value

    def attempt_row(self) -> dict[str, Any]:
        return {
            "a_id": self.args.attempt_id,
            "st": self.state,
            "o": self.outcome,
            "call": self.call_id,
            "t": self.at,
            "v": self.version,
        }

    def contact_row(self, cancelled: bool) -> dict[str, Any]:
        a = self.args
        state, retry_at = self.state, None
        if self.retries and cancelled:
            state = ContactState.CANCELLED.value
        elif self.retries:
            state = ContactState.RETRY_WAIT.value
            retry_at = self.at + timedelta(seconds=a.retry_backoff_s * 2 ** (a.attempt_no - 1))
        return {"k_id": a.contact_id, "st": state, "r": retry_at, "t": self.at}


@dataclass(frozen=True)
class Park:
    """A denied dial: the attempt this worker moved to ``dialing`` (and ``rest``, attempts of
    its message still ``queued``) end ``attempt_state``; their contacts ``contact_state``,
    not fed again before ``dial_after``."""

    args: QueuedDial
    reason: str
    attempt_state: str
    contact_state: str
    dial_after: datetime | None = None
    rest: tuple[int, ...] = ()


Write = Start | Outcome | Park


class Ledger:
    def __init__(self, engine: Engine, worker_id: str) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self._queue: list[tuple[Write, Future[Any]]] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, *writes: Write) -> list[Future[Any]]:
        """Hand ``writes`` to the writer thread; each future has its write's result once
        committed (with whatever the other dial threads asked for meanwhile), or what the
        last try of the transaction raised."""
        futures: list[Future[Any]] = [Future() for _ in writes]
        with self._ready:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
                self._thread.start()
            self._queue.extend(zip(writes, futures, strict=True))
            self._ready.notify()
        return futures

    def write(self, *writes: Write) -> list[Any]:
        """:meth:`submit` and wait: the writes' results, in order."""
        return [f.result() for f in self.submit(*writes)]

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                group, self._queue = self._queue, []
            self._commit(group)

    def _commit(self, group: list[tuple[Write, Future[Any]]]) -> None:
        writes = [w for w, _ in group]
        for n in range(WRITE_TRIES):
            try:
                with self.engine.begin() as s:
                    results = self._apply(s, writes)
            except OperationalError as exc:
                if n < WRITE_TRIES - 1:
                    log.warning("dial_writes_retried", writes=len(writes), error=str(exc)[:200])
                    time.sleep(0.1 * 2**n)
                    continue
                for _, f in group:
                    f.set_exception(exc)
                return
            except BaseException as exc:  # a bug: every waiting dial thread hears of it
                for _, f in group:
                    f.set_exception(exc)
                return
            for (_, f), result in zip(group, results, strict=True):
                f.set_result(result)
            return

    def _apply(self, s: Connection, writes: list[Write]) -> list[Any]:
        now = utcnow()
        outcomes = [w for w in writes if isinstance(w, Outcome)]
        starts = [w for w in writes if isinstance(w, Start)]
        parks = [w for w in writes if isinstance(w, Park)]
        cancelled = {id(o): o.retries and o.cancelled(s) for o in outcomes}
        # attempts ...
        if outcomes:
            s.execute(FINISH_ATTEMPT, [o.attempt_row() for o in outcomes])
        moved: dict[int, int] = {}
        if starts:
            keys = [(w.args.attempt_id, w.args.campaign_id, w.args.contact_id) for w in starts]
            moved = dict(
                s.execute(START_ATTEMPTS, {"keys": keys, "w": self.worker_id, "t": now}).all()
            )
        parked: list[tuple[Park, list[int]]] = []
        for p in parks:
            how = {"st": p.attempt_state, "why": p.reason, "t": now}
            one = s.execute(PARK_ATTEMPT, {**how, "a_id": p.args.attempt_id, "w": self.worker_id})
            contacts = [p.args.contact_id] if one.rowcount == 1 else []
            if p.rest:
                contacts += s.scalars(PARK_QUEUED, {**how, "ids": list(p.rest)}).all()
            parked.append((p, contacts))
        # ... then contacts
        if outcomes:
            s.execute(FINISH_CONTACT, [o.contact_row(cancelled[id(o)]) for o in outcomes])
        phones: dict[int, str] = {}
        if moved:
            phones = dict(s.execute(START_CONTACTS, {"ids": list(moved.values()), "t": now}).all())
        for p, contacts in parked:
            if contacts:
                s.execute(
                    PARK_CONTACTS,
                    {"ids": contacts, "st": p.contact_state, "t": now, "after": p.dial_after},
                )
        results: list[Any] = []
        for w in writes:
            # One start per attempt wins, even when one group holds two (the same attempt
            # in two messages, e.g. re-enqueued as lost, reaching two threads at once).
            contact = moved.pop(w.args.attempt_id, None) if isinstance(w, Start) else None
            results.append(None if contact is None else phones.get(contact))
        return results
