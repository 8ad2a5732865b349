"""A whole dialgate stack for one test: its own namespace, database, keys and queues.

The control service (API + loops) runs in-process on a free port; workers are real
``python -m worker`` processes. ``close()`` removes everything the test made.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pika
import psycopg
import uvicorn
from dramatiq import Message
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from control.loops.relay import backlog
from control.server import Stack, build, http_config
from shared import fleet
from shared.clients import make_redis
from shared.db import make_engine
from shared.keys import DIAL_ACTOR, Keys
from shared.migrate import upgrade
from shared.queue import make_broker
from shared.settings import Settings
from tests.conftest import AMQP_URL, PG_URL, REDIS_CLUSTER_NODES, REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def create_database(name: str) -> str:
    """A fresh PostgreSQL database on the test server; its URL."""
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class TestStack:
    __test__ = False

    def __init__(self, tmp: Path, db: str = "postgres", **overrides: Any) -> None:
        self.tmp = tmp
        self.db = db
        self.namespace = "t" + uuid.uuid4().hex[:10]
        self.keys = Keys(self.namespace)
        self.call_log_path = tmp / "calls.jsonl"
        self._pg_db: str | None = None
        if db == "postgres":
            self._pg_db = f"dg_{self.namespace}"
            db_url = create_database(self._pg_db)
        else:
            db_url = f"sqlite:///{tmp / 'dialgate.db'}"
        port = free_port()
        values: dict[str, Any] = {
            "database_url": db_url,
            "redis_url": REDIS_URL,
            "amqp_url": AMQP_URL,
            "namespace": self.namespace,
            "http_port": port,
            "url": f"http://127.0.0.1:{port}",
            "sim_latency_ms": 10,
            "sim_call_log": str(self.call_log_path),
            "heartbeat_interval": 0.5,
            "reconcile_interval": 1.0,
            "feeder_interval": 0.05,
            "feeder_queue_factor": 2,
            "dial_batch": 1,  # one attempt per message unless a test asks for more
            "log_json": True,
            "admin_token": "dg_test_admin_" + uuid.uuid4().hex,
            # httpx keeps no Secure cookie over http://; the browser tests use the default.
            "cookie_secure": False,
            "webhook_allow_private": True,  # the tests' receivers listen on 127.0.0.1
        }
        if REDIS_CLUSTER_NODES and "redis_url" not in overrides:  # a test's own Redis wins
            values["redis_cluster_nodes"] = REDIS_CLUSTER_NODES
        values.update(overrides)
        self.settings = Settings(**values)
        self.namespace = self.settings.namespace
        self.keys = Keys(self.namespace)
        self.redis = make_redis(self.settings)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.metrics_ports: dict[int, int] = {}  # worker pid -> its /metrics port
        self.loops_procs: list[subprocess.Popen[bytes]] = []
        self.stack: Stack | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.auth = {"Authorization": f"Bearer {self.settings.secret('admin_token')}"}
        self.http = httpx.Client(base_url=self.settings.url, timeout=30, headers=self.auth)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, loops: bool = True) -> TestStack:
        upgrade(make_engine(self.settings))
        self.stack = build(self.settings)
        if loops:  # in their own process, as `dialgate control` runs them
            self.start_loops_process()
        config = http_config(self.stack.app, "127.0.0.1", self.settings.http_port)
        self._server = uvicorn.Server(config)  # served as `dialgate control` serves it
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server is not None and self._server.started, 15, "the API")
        return self

    def start_loops_process(self) -> subprocess.Popen[bytes]:
        """One more ``dialgate control --role loops`` (a second set of the six loops)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "control.cli", "control", "--role", "loops"],
            env=self.worker_env(),
            cwd=ROOT,
            stdout=open(self.tmp / f"loops-{len(self.loops_procs)}.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.loops_procs.append(proc)
        return proc

    def start_up(self, workers: int = 2, threads: int = 2) -> subprocess.Popen[bytes]:
        """``dialgate up`` on this stack's settings, as a user runs it (its own supervised
        API, loops and workers), stopped with the workers; the stack's control objects are
        built too, unserved, for the safety checker."""
        log = self.tmp / "up.log"
        cmd = [sys.executable, "-m", "control.cli", "up", "--workers", str(workers)]
        proc = subprocess.Popen(
            [*cmd, "--threads", str(threads)],
            env={**self.worker_env(), "DIALGATE_WORKER_METRICS_PORT": "0"},
            cwd=ROOT,
            stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        wait_for(lambda: b"Ctrl-C stops everything" in log.read_bytes(), 60, "dialgate up")
        self.stack = build(self.settings)
        return proc

    def worker_env(self) -> dict[str, str]:
        """This stack's settings as the ``DIALGATE_*`` environment of a child process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIALGATE_")}
        for name, value in self.settings.model_dump().items():
            if isinstance(value, SecretStr):  # its str() is "**********"
                value = value.get_secret_value()
            if value is not None:
                env[f"DIALGATE_{name.upper()}"] = (
                    str(value).lower() if isinstance(value, bool) else str(value)
                )
        env["DIALGATE_SIM_HOLD_FILE"] = str(self.tmp / "hold")
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start_worker(
        self, processes: int = 1, threads: int = 4, variant: str | None = None
    ) -> subprocess.Popen[bytes]:
        """``python -m worker``; with ``variant``, a benchmark variant of it (bench/)."""
        n = len(list(self.tmp.glob("worker-*.log")))  # a worker replaced keeps its log
        log = open(self.tmp / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed with the process
        env = self.worker_env()
        env["DIALGATE_WORKER_THREADS"] = str(threads)
        metrics_port = free_port()  # several workers on one host: one port each
        env["DIALGATE_WORKER_METRICS_PORT"] = str(metrics_port)
        env["DIALGATE_WORKER_METRICS_HOST"] = "127.0.0.1"
        cmd = [
            sys.executable,
            "-m",
            "worker",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--shutdown-timeout",
            "5000",
        ]
        if variant is not None:
            env["DIALGATE_BENCH_VARIANT"] = variant
            cmd = [
                sys.executable,
                "-m",
                "dramatiq",
                "bench.variants",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
                "--queues",
                self.keys.dial_queue,
                "--skip-logging",
            ]
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.workers.append(proc)
        self.metrics_ports[proc.pid] = metrics_port
        return proc

    def scrape(self, url: str) -> dict[str, float]:
        """One Prometheus scrape: ``'name{label="v",...}' -> value`` (labels sorted)."""
        text = httpx.get(url, timeout=10).raise_for_status().text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def control_metrics(self) -> dict[str, float]:
        return self.scrape(f"{self.settings.url}/metrics")

    def worker_metrics(self, proc: subprocess.Popen[bytes]) -> dict[str, float]:
        return self.scrape(f"http://127.0.0.1:{self.metrics_ports[proc.pid]}/metrics")

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``dialgate ARGS`` against this stack (its settings in the environment), as
        the platform admin or, with ``token``, as that token's holder."""
        env = self.worker_env()
        if token is not None:
            env["DIALGATE_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "control.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def wait_workers(self, n: int, timeout: float = 30) -> None:
        def subscribed() -> bool:
            live = self.live_workers()
            return len(live) >= n

        wait_for(subscribed, timeout, f"{n} live workers")
        # Their control subscribers have bound their queues once they acked a sync.
        time.sleep(0.5)

    def live_workers(self) -> list[str]:
        return fleet.live(self.redis, self.keys, self.settings.worker_ttl)

    def outbox_unsent(self) -> int:
        """Outbox rows the relay has not published yet."""
        assert self.stack is not None
        with self.stack.control.sessions() as s:
            return backlog(s).unsent

    def stop_workers(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.workers:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        self.workers = []

    def stop_loops_process(self) -> None:
        """SIGTERM the loops processes; SIGKILL one that has not ended within 20 s."""
        for proc in self.loops_procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.loops_procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def close(self) -> None:
        try:
            self.stop_workers()
            self.stop_loops_process()
        finally:
            if self.stack is not None:
                self.stack.stop_loops()
            if self._server is not None:
                self._server.should_exit = True
                if self._thread is not None:
                    self._thread.join(10)
            self._cleanup()

    def _cleanup(self) -> None:
        for key in self.redis.scan_iter(f"{self.namespace}:*", count=1000):
            self.redis.delete(key)
        try:
            params = pika.URLParameters(self.settings.amqp_url)
            params.socket_timeout = 5
            conn = pika.BlockingConnection(params)
            ch = conn.channel()
            for q in (
                self.keys.dial_queue,
                f"{self.keys.dial_queue}.DQ",
                f"{self.keys.dial_queue}.XQ",
            ):
                ch.queue_delete(q)
            ch.exchange_delete(self.keys.control_exchange)
            conn.close()
        except pika.exceptions.AMQPError:
            pass
        if self.stack is not None:
            self.stack.control.sessions.kw["bind"].dispose()
        if self._pg_db:
            drop_database(self._pg_db)

    # -- API helpers ---------------------------------------------------------------------
    def api(self, method: str, path: str, expect: int | None = 200, **kw: Any) -> Any:
        resp = self.http.request(method, f"/api/v1{path}", **kw)
        if expect is not None:
            assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def campaign(self, cid: int) -> dict[str, Any]:
        return dict(self.api("GET", f"/campaigns/{cid}"))

    def act(self, cid: int, action: str, expect: int = 200, **body: Any) -> dict[str, Any]:
        return dict(self.api("POST", f"/campaigns/{cid}/{action}", expect=expect, json=body))

    def make_campaign(
        self,
        contacts: int,
        max_concurrency: int = 4,
        start: bool = True,
        numbers: list[str] | None = None,
        **fields: Any,
    ) -> int:
        """A campaign of ``contacts`` fictional numbers (or of ``numbers``, in this order);
        ``fields`` go into its creation (``max_lines``, ``retry``, ...)."""
        body = {"name": "test campaign", "max_concurrency": max_concurrency, **fields}
        c = self.api("POST", "/campaigns", expect=201, json=body)
        cid = int(c["id"])
        rows = [{"phone": p} for p in numbers or phones(contacts)]
        contacts = len(rows)
        res = self.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})
        assert res["accepted"] == contacts, res["rejected"][:3]
        if start:
            self.act(cid, "start")
        return cid

    def publish_dial(self, kwargs: dict[str, Any]) -> None:
        """Put a dial message with these actor arguments, as they are (a forgery's too), on
        this stack's dial queue, through the broker the feeder uses."""
        broker = make_broker(self.settings)
        try:
            broker.enqueue(
                Message(
                    queue_name=self.keys.dial_queue,
                    actor_name=DIAL_ACTOR,
                    args=(),
                    kwargs=kwargs,
                    options={},
                )
            )
        finally:
            broker.close()

    def check_calls(self, campaign_ids: set[int] | None = None) -> Any:
        from control.campaigns.safety import check_calls

        assert self.stack is not None
        return check_calls(self.stack.control.sessions, self.calls(), campaign_ids)

    def calls(self) -> list[dict[str, Any]]:
        if not self.call_log_path.exists():
            return []
        # The last line may be half written while workers are dialing: only whole lines.
        lines = self.call_log_path.read_text().split("\n")[:-1]
        return [json.loads(x) for x in lines if x.strip()]

    def wait_calls(self, n: int, timeout: float = 60) -> None:
        wait_for(lambda: len(self.calls()) >= n, timeout, f"{n} calls")

    def wait_status(self, cid: int, status: str, timeout: float = 120) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (c := self.campaign(cid))["status"] == status and c,
                timeout,
                f"campaign {cid} {status}",
                every=0.2,
            )
        )


def phones(n: int) -> list[str]:
    """``n`` distinct valid numbers (French mobiles +33 6 xx xx xx xx)."""
    return [f"+336{10000000 + i:08d}" for i in range(n)]
