"""The dial path's database writes, grouped: one writer thread per worker process commits
what every dial thread of the process asked for since its last commit, in one transaction
(group commit), with one statement per kind of change.

A dial thread hands its writes to :meth:`Ledger.write` and waits until they are committed:
an attempt is ``dialing`` in the database before its call is placed, and a message is
acknowledged only after its outcomes are written, exactly as if each thread committed its
own transaction. What changes is the cost: a commit and a handful of statements per group
instead of per dial.

Three kinds of writes (:class:`Start`, :class:`Event`, :class:`Park`), all conditional
updates; an event is what a back end reported of a call, applied by
:func:`shared.calls.apply_events` like every webhook's, and the lines of the calls it ended
are released after the commit. A start also reads the number to dial: its contact's phone
as stored, returned by the start's own contact update (no extra statement), never a number
a message carries.
Within a transaction every attempt row is written before any contact row: the order a
cancel locks them in, so the two never deadlock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, bindparam, tuple_, update
from sqlalchemy.exc import OperationalError

from shared.calls import Applied, CallEvent, apply_events
from shared.messages import QueuedDial
from shared.models import Attempt, Contact, utcnow
from shared.states import AttemptState, ContactState

log = structlog.get_logger("dialgate.worker")

# Tries of a group when the database connection drops (0.1 s, doubling). Every write is a
# conditional update, so running a group again is harmless.
WRITE_TRIES = 5

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
# The parked attempts' contacts, returned: those still ``queued`` (a message parked
# without being started) ...
PARK_QUEUED = (
    update(Attempt)
    .where(
        Attempt.id.in_(bindparam("ids", expanding=True)),
        Attempt.state == AttemptState.QUEUED.value,
    )
    .values(state=bindparam("st"), deny_reason=bindparam("why"), finished_at=bindparam("t"))
    .returning(Attempt.contact_id)
)
# ... or those this worker moved to ``dialing``.
PARK_ATTEMPTS = (
    update(Attempt)
    .where(
        Attempt.id.in_(bindparam("ids", expanding=True)),
        Attempt.state == AttemptState.DIALING.value,
        Attempt.worker_id == bindparam("w"),
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
class Event:
    """A call event of an attempt this process placed (its result: the
    :class:`~shared.calls.Applied`, None if the attempt was not one dialed)."""

    event: CallEvent


@dataclass(frozen=True)
class Park:
    """Denied dials: attempts this worker moved to ``dialing`` (``queued``: attempts still
    queued, never started) end ``attempt_state``; their contacts ``contact_state``, not fed
    again before ``dial_after``."""

    attempt_ids: tuple[int, ...]
    reason: str
    attempt_state: str
    contact_state: str
    dial_after: datetime | None = None
    queued: bool = False


Write = Start | Event | Park


class Ledger:
    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        ended: Callable[[int, list[int]], None] = lambda campaign_id, attempts: None,
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.ended = ended  # after a commit: (campaign, attempts) whose calls it ended
        self._queue: list[tuple[Write, Future[Any]]] = []
        self._ready = threading.Condition()
        self._committing = False
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

    def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every write handed over is committed."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while self._queue or self._committing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                group, self._queue = self._queue, []
                self._committing = True
            try:
                self._commit(group)
            finally:
                with self._ready:
                    self._committing = False
                    self._ready.notify_all()

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
            lines: dict[int, list[int]] = {}
            for (_, f), result in zip(group, results, strict=True):
                if isinstance(result, Applied) and result.ended:
                    lines.setdefault(result.campaign_id, []).append(result.attempt_id)
                f.set_result(result)
            for campaign_id, attempts in lines.items():
                self.ended(campaign_id, attempts)
            return

    def _apply(self, s: Connection, writes: list[Write]) -> list[Any]:
        now = utcnow()
        events = [w.event for w in writes if isinstance(w, Event)]
        starts = [w for w in writes if isinstance(w, Start)]
        parks = [w for w in writes if isinstance(w, Park)]
        # attempts (the events lock campaign, attempts, contacts in that order) ...
        applied = iter(apply_events(s, events, strict=False))
        moved: dict[int, int] = {}
        if starts:
            keys = [(w.args.attempt_id, w.args.campaign_id, w.args.contact_id) for w in starts]
            moved = dict(
                s.execute(START_ATTEMPTS, {"keys": keys, "w": self.worker_id, "t": now}).all()
            )
        parked: list[tuple[Park, list[int]]] = []
        for p in parks:
            how = {"st": p.attempt_state, "why": p.reason, "t": now, "ids": list(p.attempt_ids)}
            if p.queued:
                parked.append((p, list(s.scalars(PARK_QUEUED, how))))
            else:
                parked.append((p, list(s.scalars(PARK_ATTEMPTS, {**how, "w": self.worker_id}))))
        # ... then contacts
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
            if isinstance(w, Event):
                result = next(applied)
                if result is None:
                    log.warning("call_event_refused", attempt_id=w.event.attempt_id)
                results.append(result)
                continue
            # One start per attempt wins, even when one group holds two (the same attempt
            # in two messages, e.g. re-enqueued as lost, reaching two threads at once).
            contact = moved.pop(w.args.attempt_id, None) if isinstance(w, Start) else None
            results.append(None if contact is None else phones.get(contact))
        return results
