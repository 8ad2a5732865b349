"""The ceilings the dial path is held against, measured on the same broker and machine.

1. dramatiq's no-op actor rate: messages per second that ``--workers`` processes ×
   ``--threads`` drain from a pre-filled queue on this RabbitMQ (no database, no Redis).
2. dialgate's dial rate with 1 and with 4 worker processes (4 threads each, 5 ms provider).

    .venv/bin/python -m bench.noop

As a dramatiq module (``python -m dramatiq bench.noop``) it only declares the actor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

import dramatiq
import pika
from dramatiq import Message

from shared.queue import make_broker
from shared.settings import Settings

QUEUE = os.environ.get("BENCH_NOOP_QUEUE", "bench.noop")
broker = make_broker(Settings())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    return None


def queue_depth(queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(Settings().amqp_url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def noop_rate(n: int, workers: int, threads: int) -> float:
    queue = f"bench.noop.{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "BENCH_NOOP_QUEUE": queue}
    filler = make_broker(Settings())
    filler.declare_queue(queue)
    for _ in range(n):
        filler.enqueue(Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={}))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "bench.noop",
                "--processes",
                "1",
                "--threads",
                str(threads),
                "--queues",
                queue,
                "--skip-logging",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        while queue_depth(queue) == n:
            time.sleep(0.01)
        t0, left0 = time.perf_counter(), queue_depth(queue)
        while (left := queue_depth(queue)) > 0.05 * n:
            time.sleep(0.05)
        return (left0 - left) / (time.perf_counter() - t0)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        conn = pika.BlockingConnection(pika.URLParameters(Settings().amqp_url))
        for q in (queue, f"{queue}.DQ", f"{queue}.XQ"):
            conn.channel().queue_delete(q)
        conn.close()


def main() -> None:
    from bench.overhead import rate

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    result = {"noop_3x4_msgs_per_s": round(noop_rate(args.messages, 3, 4), 1)}
    print(json.dumps(result), flush=True)
    for workers in (1, 4):
        dial = argparse.Namespace(
            latency_ms=5, workers=workers, threads=4, contacts=20_000, seconds=args.seconds
        )
        result[f"dials_per_s_{workers}x4"] = round(rate(dial, "gate"), 1)
        print(json.dumps(result), flush=True)
    result["ratio_4_over_1"] = round(result["dials_per_s_4x4"] / result["dials_per_s_1x4"], 2)
    result["dial_rate_over_noop"] = round(
        result["dials_per_s_4x4"] / result["noop_3x4_msgs_per_s"], 3
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
