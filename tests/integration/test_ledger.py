"""The worker's ledger: the dial threads' writes, group-committed, with the guarantees of a
transaction per write (one start per attempt wins, call events and parks land, attempts
before contacts)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event, insert, select

from shared.calls import CallEvent
from shared.messages import DialArgs
from shared.models import Attempt, Campaign, Contact, utcnow
from shared.states import CallEventKind, Disposition
from tests.support.stack import phones
from worker.ledger import Event, Ledger, Park, Start


def _queued(stack: Any, n: int) -> list[DialArgs]:
    """A draft campaign with ``n`` contacts and one queued attempt each (no loops run)."""
    cid = stack.make_campaign(contacts=n, start=False)
    with stack.stack.control.sessions.begin() as s:
        contacts = list(
            s.scalars(select(Contact.id).where(Contact.campaign_id == cid).order_by(Contact.id))
        )
        s.execute(
            Contact.__table__.update().where(Contact.campaign_id == cid).values(state="queued")
        )
        ids = s.scalars(
            insert(Attempt).returning(Attempt.id, sort_by_parameter_order=True),
            [
                {"campaign_id": cid, "contact_id": k, "state": "queued", "queued_at": utcnow()}
                for k in contacts
            ],
        ).all()
    return [
        DialArgs(attempt_id=a, campaign_id=cid, contact_id=k, phone=phone, epoch="test")
        for a, k, phone in zip(ids, contacts, phones(n), strict=True)
    ]


def _states(stack: Any, args: list[DialArgs]) -> list[tuple[str, str]]:
    with stack.stack.control.sessions() as s:
        rows = s.execute(
            select(Attempt.state, Contact.state)
            .join(Contact, Contact.id == Attempt.contact_id)
            .where(Attempt.id.in_([a.attempt_id for a in args]))
            .order_by(Attempt.id)
        ).all()
    return [(a, c) for a, c in rows]


def test_concurrent_starts_of_one_attempt_let_exactly_one_dial(make_stack, db):
    stack = make_stack(db).start(loops=False)
    (one,) = _queued(stack, 1)
    ledger = Ledger(stack.stack.control.sessions.kw["bind"], "w-test")
    results: list[str | None] = []
    go = threading.Barrier(16)

    def start() -> None:
        go.wait()
        results.append(ledger.write(Start(one))[0])

    threads = [threading.Thread(target=start) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # The one start that wins gives the number to dial: the contact's, as stored.
    assert results.count(None) == 15 and phones(1)[0] in results
    # Twice in one group (the same attempt in two messages): one start still wins.
    (other,) = _queued(stack, 1)
    assert ledger.write(Start(other), Start(other)) == [phones(1)[0], None]
    assert _states(stack, [one, other]) == [("dialing", "dialing")] * 2


def test_threads_writes_are_grouped_and_each_lands_as_asked(make_stack, db):
    stack = make_stack(db).start(loops=False)
    args = _queued(stack, 40)
    engine = stack.stack.control.sessions.kw["bind"]
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    ledger = Ledger(engine, "w-test")
    go = threading.Barrier(32)
    started: list[str | None] = []

    def start(a: DialArgs) -> None:
        go.wait()
        started.append(ledger.write(Start(a))[0])

    threads = [threading.Thread(target=start, args=(a,)) for a in args[:32]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(started) == sorted(phones(40)[:32])  # each attempt's own contact's number
    assert len(commits) < 32, "32 concurrent writes were not grouped at all"

    # Call events committed with the next start (the campaign retries busy numbers); the
    # ended calls' lines are released after the commit.
    ended: list[tuple[int, list[int]]] = []
    ledger.ended = lambda cid, attempts: ended.append((cid, attempts))
    with stack.stack.control.sessions.begin() as s:
        s.execute(
            Campaign.__table__.update()
            .where(Campaign.id == args[0].campaign_id)
            .values(max_attempts=3, retry={"busy": 60})
        )
    answered = CallEvent(args[0].attempt_id, CallEventKind.ENDED, disposition=Disposition.ANSWERED)
    busy = CallEvent(args[1].attempt_id, CallEventKind.ENDED, disposition=Disposition.BUSY)
    ringing = CallEvent(args[2].attempt_id, CallEventKind.RINGING)
    done = ledger.write(
        Event(answered), Event(busy), Event(ringing), Start(args[32]), Start(args[33])
    )
    assert [(a.state, a.ended) for a in done[:3]] == [
        ("ended", True),
        ("ended", True),
        ("ringing", False),
    ]
    assert done[3:] == phones(40)[32:34]
    assert ended == [(args[0].campaign_id, [args[0].attempt_id, args[1].attempt_id])]
    # A gate denial parks the attempts of a message, started together, in one write.
    pair = (args[32].attempt_id, args[33].attempt_id)
    ledger.write(Park(pair, "paused", "parked", "pending"))
    # A do-not-call denial ends the attempt and its contact.
    assert ledger.write(Start(args[34])) == [phones(40)[34]]
    ledger.write(Park((args[34].attempt_id,), "dnc", "blocked_dnc", "blocked_dnc"))

    states = _states(stack, args[:35])
    assert states[0] == ("ended", "done")
    assert states[1] == ("ended", "retry_wait")
    assert states[2] == ("ringing", "dialing")
    assert states[32] == ("parked", "pending")
    assert states[33] == ("parked", "pending")
    assert states[34] == ("blocked_dnc", "blocked_dnc")
    assert states[3:32] == [("dialing", "dialing")] * 29
