"""Propagation: time from a pause's answer until every live worker acknowledged its
version, next to a bare RabbitMQ publish→consume round trip measured in the same run.

    .venv/bin/python -m bench.propagation --workers 8 --cycles 50
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika

from bench.protocol import pct
from tests.conftest import AMQP_URL, _missing
from tests.support.stack import TestStack, wait_for


def rabbit_round_trips(n: int) -> list[float]:
    """Publish → consume through a fresh queue on the same broker, in ms."""
    queue = f"bench.rtt.{uuid.uuid4().hex[:8]}"
    got = threading.Event()
    pub = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    sub = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    pch, sch = pub.channel(), sub.channel()
    sch.queue_declare(queue, exclusive=True)
    sch.basic_consume(queue, lambda ch, m, p, b: (ch.basic_ack(m.delivery_tag), got.set()))
    out = []
    try:
        for _ in range(n):
            got.clear()
            t0 = time.perf_counter()
            pch.basic_publish("", queue, b"x")
            while not got.is_set():
                sub.process_data_events(time_limit=0)
            out.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.01)
    finally:
        pub.close()
        sub.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--cycles", type=int, default=50)
    args = ap.parse_args()
    if missing := _missing():
        raise SystemExit(f"services not reachable: {', '.join(missing)}")
    stack = TestStack(
        Path(tempfile.mkdtemp(prefix="dialgate-bench-")), "postgres", log_level="WARNING"
    )
    try:
        stack.start()
        for _ in range(args.workers):
            stack.start_worker(threads=1)
        stack.wait_workers(args.workers)
        cid = stack.make_campaign(contacts=0, max_concurrency=1)  # nothing to dial: it
        # stays running, so only the control plane is measured
        lags = []
        for i in range(args.cycles):
            action = "pause" if i % 2 == 0 else "resume"
            answer = stack.act(cid, action)
            answered = time.perf_counter()
            version = answer["version"]

            def all_acked(v: int = version) -> bool:
                acks = stack.redis.hgetall(stack.keys.acks(cid))
                live = stack.live_workers()
                return len(live) >= args.workers and all(int(acks.get(w, 0)) >= v for w in live)

            wait_for(all_acked, 10, f"every worker to ack version {version}", every=0.0005)
            lags.append((time.perf_counter() - answered) * 1000)
            time.sleep(0.05)
        rtt = rabbit_round_trips(args.cycles)
        result = {
            "workers": args.workers,
            "propagation_p50_ms": round(pct(lags, 50), 2),
            "propagation_p99_ms": round(pct(lags, 99), 2),
            "rabbitmq_rtt_p50_ms": round(pct(rtt, 50), 3),
            "rabbitmq_rtt_p99_ms": round(pct(rtt, 99), 3),
            "ratio_p99": round(pct(lags, 99) / pct(rtt, 99), 1),
        }
        print(json.dumps(result))
    finally:
        stack.close()


if __name__ == "__main__":
    main()
