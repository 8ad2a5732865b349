"""Broadcasts only make workers more careful: stale, malformed and forged events."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pika

from tests.conftest import AMQP_URL
from tests.support.stack import TestStack, wait_for


def publish(stack: TestStack, routing_key: str, body: bytes) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        conn.channel().basic_publish(stack.keys.control_exchange, routing_key, body)
    finally:
        conn.close()


def event(cid: int, version: int, action: str, status: str) -> bytes:
    return json.dumps(
        {
            "type": "campaign.transition",
            "campaign_id": cid,
            "version": version,
            "action": action,
            "status": status,
            "at": datetime.now(UTC).isoformat(),
        }
    ).encode()


def acked(stack: TestStack, cid: int) -> dict[str, int]:
    return {w: int(v) for w, v in stack.redis.hgetall(stack.keys.acks(cid)).items()}


def test_a_stale_resume_delivered_after_a_newer_pause_leaves_the_campaign_paused(
    make_stack, redis_engine
):
    stack = make_stack(**redis_engine).start()
    stack.start_worker()
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=200, max_concurrency=2)
    stack.wait_calls(5)
    paused = stack.act(cid, "pause")
    answered = time.time()
    wait_for(lambda: list(acked(stack, cid).values()) == [2], 10, "the pause to be applied")

    # The start event (version 1) redelivered late, and a resume replayed with an old version.
    publish(stack, f"campaign.{cid}.start", event(cid, 1, "start", "running"))
    publish(stack, f"campaign.{cid}.resume", event(cid, 2, "resume", "running"))
    time.sleep(1.5)
    assert list(acked(stack, cid).values()) == [2]
    assert stack.campaign(cid)["status"] == "paused"
    assert stack.redis.hget(stack.keys.gate(cid), "status") == "paused"
    assert [c for c in stack.calls() if c["t"] > answered] == []
    assert paused["gate"]["drained"]


def test_malformed_and_forged_control_messages_change_nothing_and_the_worker_keeps_going(
    make_stack,
):
    stack = make_stack().start()
    stack.start_worker()
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=100, max_concurrency=2)
    stack.wait_calls(5)
    stack.act(cid, "pause")
    answered = time.time()
    wait_for(lambda: list(acked(stack, cid).values()) == [2], 10, "the pause to be applied")

    for body in (
        b"not json",
        b"{}",
        b'{"campaign_id": "x"}',
        b"\xff" * 100_000,
        json.dumps(
            {
                "type": "campaign.transition",
                "campaign_id": cid,
                "version": 3,
                "action": "resume",
                "status": "open",
                "at": "now",
            }
        ).encode(),
    ):
        publish(stack, f"campaign.{cid}.resume", body)
    # A well-formed resume that the database never committed: it must not open the gate.
    publish(stack, f"campaign.{cid}.resume", event(cid, 3, "resume", "running"))
    time.sleep(1.5)
    assert stack.redis.hget(stack.keys.gate(cid), "status") == "paused"
    assert [c for c in stack.calls() if c["t"] > answered] == []
    assert stack.workers[0].poll() is None, "the worker died"

    # The real resume (version 3) opens the gate; the worker is alive and dials again.
    stack.act(cid, "resume")
    stack.wait_status(cid, "completed", timeout=60)


def test_with_a_control_key_unsigned_or_missigned_events_are_dropped_and_signed_ones_apply(
    make_stack,
):
    stack = make_stack(control_key="k" * 32).start()
    stack.start_worker()
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=60, max_concurrency=2)
    stack.wait_calls(3)
    stack.act(cid, "pause")
    answered = time.time()
    wait_for(lambda: list(acked(stack, cid).values()) == [2], 10, "the signed pause to apply")

    # Without the key, a forged far-future version would make this worker wait for a gate
    # version that never comes (a stall); with it, the forgery is dropped.
    forged = event(cid, 10**9, "resume", "running")
    publish(stack, f"campaign.{cid}.resume", forged)
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        props = pika.BasicProperties(headers={"x-dialgate-sig": "0" * 64})
        conn.channel().basic_publish(
            stack.keys.control_exchange, f"campaign.{cid}.resume", forged, properties=props
        )
    finally:
        conn.close()
    wait_for(
        lambda: "bad_signature" in (stack.tmp / "worker-0.log").read_text(),
        10,
        "the worker to drop the forged events",
    )
    assert list(acked(stack, cid).values()) == [2]
    assert [c for c in stack.calls() if c["t"] > answered] == []

    stack.act(cid, "resume")
    wait_for(lambda: list(acked(stack, cid).values()) == [3], 10, "the signed resume to apply")
    stack.wait_status(cid, "completed", timeout=60)
    assert stack.workers[0].poll() is None
