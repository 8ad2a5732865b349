"""Forged dial messages: a worker dials only signed messages, and only the contact's number
as stored; the safety checker names a call to any other number."""

from __future__ import annotations

import json
import time
from typing import Any

import pika
from sqlalchemy import select

from shared.messages import DialBatch, QueuedDial, dial_body, sign
from shared.models import Attempt, Contact
from tests.conftest import AMQP_URL
from tests.support.stack import TestStack, wait_for

KEY = "k" * 32
FORGED = "+33699999999"  # no contact of the campaign has it


def _queued(stack: TestStack, cid: int) -> dict[int, tuple[QueuedDial, str, str]]:
    """attempt id -> (its queued dial, its state, its contact's stored phone)."""
    assert stack.stack is not None
    with stack.stack.control.sessions() as s:
        rows = s.execute(
            select(Attempt.id, Attempt.contact_id, Attempt.state, Contact.phone)
            .join(Contact, Contact.id == Attempt.contact_id)
            .where(Attempt.campaign_id == cid)
            .order_by(Attempt.id)
        ).all()
    epoch = stack.stack.feeder.gate.epoch
    return {
        a: (QueuedDial(attempt_id=a, campaign_id=cid, contact_id=k, epoch=epoch), state, phone)
        for a, k, state, phone in rows
    }


def _with_number(kwargs: dict[str, Any], phone: str) -> dict[str, Any]:
    """A dial message that names a number, as the messages once did."""
    return {**kwargs, "attempts": [{**t, "phone": phone} for t in kwargs["attempts"]]}


def _dropped(stack: TestStack, reason: str) -> float:
    metrics = stack.worker_metrics(stack.workers[0])
    return metrics.get(f'dialgate_dial_messages_dropped_total{{reason="{reason}"}}', 0.0)


def test_an_unsigned_or_number_carrying_dial_message_is_dropped_and_only_stored_numbers_are_called(
    make_stack, db
):
    stack = make_stack(db, control_key=KEY, feeder_requeue_after=1.0).start(loops=False)
    assert stack.stack is not None
    stack.stack.control.dnc.reconcile()  # the do-not-call set every dial checks, built
    cid = stack.make_campaign(contacts=3)
    assert stack.stack.feeder.step() == 3  # three queued attempts, their messages enqueued
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        conn.channel().queue_purge(stack.keys.dial_queue)  # the genuine messages lost
    finally:
        conn.close()
    attempts = _queued(stack, cid)
    unsigned, insider, genuine = (DialBatch.of([q]) for q, _, _ in attempts.values())

    # An outsider: no signature, another number. An insider with the key: signed, but a
    # message names no number (the contract refuses one). A genuine message, signed.
    stack.publish_dial(_with_number(unsigned.model_dump(), FORGED))
    forged = _with_number(insider.model_dump(), FORGED)
    stack.publish_dial({**forged, "sig": sign(dial_body(forged), KEY)})
    stack.publish_dial(genuine.signed(KEY).model_dump())
    stack.start_worker()
    stack.wait_calls(1)
    wait_for(
        lambda: _dropped(stack, "bad_signature") == 1 and _dropped(stack, "invalid") == 1,
        15,
        "the two forged messages dropped and counted",
    )
    stored = {a: phone for a, (_, _, phone) in attempts.items()}
    first = genuine.attempts[0].attempt_id
    assert [(c["attempt_id"], c["phone"]) for c in stack.calls()] == [(first, stored[first])]
    left = _queued(stack, cid)  # the forged messages' attempts: untouched, still queued
    assert [left[b.attempts[0].attempt_id][1] for b in (unsigned, insider)] == ["queued"] * 2

    time.sleep(1.1)  # the two attempts are lost now: the feeder enqueues them again, signed
    assert stack.stack.feeder.step() == 2
    stack.wait_calls(3)
    assert sorted((c["attempt_id"], c["phone"]) for c in stack.calls()) == sorted(stored.items())
    assert stack.check_calls({cid}).ok


def test_the_safety_checker_names_a_call_to_a_number_that_is_not_its_contacts(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=2, start=False)
    assert stack.stack is not None
    with stack.stack.control.sessions() as s:
        (k1, p1), (k2, p2) = s.execute(
            select(Contact.id, Contact.phone).where(Contact.campaign_id == cid).order_by(Contact.id)
        ).all()
    line = {"t": time.time(), "campaign_id": cid, "worker_id": "w", "gate_version": 1}
    calls = [
        {**line, "contact_id": k1, "attempt_id": 1, "phone": p1},  # its own number: fine
        {**line, "contact_id": k2, "attempt_id": 2, "phone": FORGED},
        {**line, "contact_id": k2 + 100, "attempt_id": 3, "phone": p2},  # no such contact
    ]
    stack.call_log_path.write_text("".join(json.dumps(c) + "\n" for c in calls))

    report = stack.check_calls({cid})
    assert not report.ok
    assert [(w["contact_id"], w["phone"], w["contact_phone"]) for w in report.wrong] == [
        (k2, FORGED, p2),
        (k2 + 100, p2, None),
    ]
    assert report.late == [] and report.doubled == [] and report.lost == []
    out = stack.cli("check-calls", "--call-log", str(stack.call_log_path), "--campaign", str(cid))
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"WRONG  campaign {cid} contact {k2} called {FORGED}, its number is {p2}" in out.stdout
    assert "wrong numbers: 2," in out.stdout
