"""``dialgate up``: the whole stack in the foreground, for a laptop or a demo.

Checks that Redis and RabbitMQ answer (and says how to start the one that does not),
applies the migrations, starts the API, the control loops and N worker processes as
supervised child processes (:mod:`shared.supervisor`: one that dies is started again,
the rest keep running), optionally creates and starts a demo campaign, prints where to
look, and stops everything cleanly on Ctrl-C or SIGTERM. What it prints carries no secret
of yours: URLs are masked, and an admin token is printed only when ``up`` made it for
this run.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

import httpx
import phonenumbers

from control.auth.tokens import new_secret
from control.cli.client import Client
from shared.clients import make_redis
from shared.keys import Keys
from shared.settings import Settings, load, mask_url
from shared.supervisor import Spec, Supervisor

HOW_TO_START = {
    "redis": "Redis is not reachable at {url}: start it with `redis-server --daemonize yes "
    '--port 6379 --save ""` (or set DIALGATE_REDIS_URL)',
    "rabbitmq": "RabbitMQ is not reachable at {url}: start it with `rabbitmq-server -detached` "
    "(or set DIALGATE_AMQP_URL)",
    "database": "the database at {url} is not reachable: check DIALGATE_DATABASE_URL "
    "(PostgreSQL: `pg_ctlcluster <version> main start`)",
}


def check_services(settings: Settings) -> list[str]:
    from sqlalchemy import text

    from shared.clients import amqp_unreachable, make_redis
    from shared.db import make_engine
    from shared.queue import queue_conflict

    problems = []
    try:
        make_redis(settings).ping()
    except Exception:
        if settings.redis_cluster_nodes is None and settings.redis_sentinels is None:
            problems.append(HOW_TO_START["redis"].format(url=mask_url(settings.redis_url)))
        else:
            problems.append(f"Redis is not reachable: {settings.redis_where()} does not answer")
    if amqp_unreachable(settings):
        problems.append(HOW_TO_START["rabbitmq"].format(url=mask_url(settings.amqp_url)))
    elif conflict := queue_conflict(settings):
        problems.append(conflict)
    try:
        with make_engine(settings).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        problems.append(HOW_TO_START["database"].format(url=mask_url(settings.database_url)))
    return problems


def demo_contacts(n: int) -> list[dict[str, Any]]:
    """Fictional numbers (NANP 555-01xx) that phonenumbers accepts as valid."""
    out: list[dict[str, Any]] = []
    for area in ("415", "201", "212", "213", "305", "312", "617", "646", "702", "718", "202"):
        for line in range(100, 200):
            phone = f"+1{area}5550{line}"
            if phonenumbers.is_valid_number(phonenumbers.parse(phone)):
                out.append({"phone": phone, "name": f"Demo contact {len(out) + 1}"})
            if len(out) == n:
                return out
    return out


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def admin_token(settings: Settings, url: str) -> tuple[str, str]:
    """The admin token of this run, and the banner's lines about it. A token ``up`` made is
    printed (nothing else knows it, and it lasts only this run); one set in
    ``DIALGATE_ADMIN_TOKEN`` is not: the lines say where it came from, never its value."""
    given = settings.secret("admin_token")
    if given is not None:
        return given, (
            "  admin token from DIALGATE_ADMIN_TOKEN in your environment (not shown)\n"
            "    (sign in on the page with it; for the CLI in another terminal:\n"
            f'     export DIALGATE_TOKEN="$DIALGATE_ADMIN_TOKEN" DIALGATE_URL={url})'
        )
    made = new_secret()
    return made, (
        f"  admin token {made}   (made for this run)\n"
        "    (sign in on the page with it; for the CLI in another terminal:\n"
        f"     export DIALGATE_TOKEN={made} DIALGATE_URL={url})"
    )


# The demo's simulated calls: slow enough to watch, pause and resume by hand, each with a
# whole life (rings ~3 s; most are answered and talk ~8 s, some busy, unanswered, ...).
DEMO_PROVIDER = {
    "DIALGATE_SIM_LATENCY_MS": "300",
    "DIALGATE_SIM_RING_MS": "3000",
    "DIALGATE_SIM_TALK_MS": "8000",
    "DIALGATE_SIM_DISPOSITIONS": "answered=0.55,busy=0.15,no_answer=0.2,declined=0.05,failed=0.05",
}


def up(args: argparse.Namespace) -> int:
    if args.demo:
        for name, value in DEMO_PROVIDER.items():
            os.environ.setdefault(name, value)
    settings = load("dialgate up")
    if args.port:
        settings.http_port = args.port
    url = f"http://{settings.http_host}:{settings.http_port}"
    problems = check_services(settings)
    if not _port_free(settings.http_host, settings.http_port):
        problems.append(
            f"port {settings.http_port} is already in use (another `dialgate up`?): stop it, "
            "or choose another port with --port"
        )
    if problems:
        for problem in problems:
            print(f"dialgate up: {problem}", file=sys.stderr)
        return 1

    from shared.db import make_engine
    from shared.migrate import upgrade

    upgrade(make_engine(settings))
    # The demo's admin token: the one given, or a new one for this run only.
    token, token_lines = admin_token(settings, url)
    env = {
        **os.environ,
        "DIALGATE_HTTP_PORT": str(settings.http_port),
        "DIALGATE_URL": url,
        "DIALGATE_ADMIN_TOKEN": token,
    }
    exe = [sys.executable, "-m", "control.cli", "control", "--role"]
    workers = [sys.executable, "-m", "worker", "--processes", str(args.workers)]
    supervisor = Supervisor(
        "dialgate up",
        [
            Spec("api", [*exe, "api"]),
            Spec("loops", [*exe, "loops"]),
            Spec("workers", [*workers, "--threads", str(args.threads)]),
        ],
        redis_client=make_redis(settings),
        keys=Keys(settings.namespace),
        env=env,
    ).start()
    try:
        if not supervisor.wait(lambda: _healthy(url), 30):
            if supervisor.stopping:
                return 0
            print(
                "dialgate up: the control service did not start; see its log above", file=sys.stderr
            )
            return 1
        demo = ""
        if args.demo:
            client = Client(url, token=token)
            c = client.create(
                name="Demo campaign",
                max_concurrency=2,
                max_lines=10,
                max_cps=2,
                max_attempts=2,
                retry={"busy": 30, "no_answer": 60},
                timezone="UTC",
            )
            client.add_contacts(c["id"], demo_contacts(1000))
            client.act(c["id"], "start", actor="dialgate up --demo")
            demo = (
                f"\n  demo campaign {c['id']} is dialing 1000 fictional numbers "
                "(simulated calls that ring and talk: up to 10 lines, 2 calls started per "
                "second; busy and unanswered numbers are called again once; "
                "DIALGATE_SIM_* change the calls)\n"
                f"    its calls:  .venv/bin/dialgate calls {c['id']}\n"
                f"    watch it:   .venv/bin/dialgate show {c['id']}\n"
                f"    pause it:   .venv/bin/dialgate pause {c['id']}\n"
                f"    resume it:  .venv/bin/dialgate resume {c['id']}\n"
                f"    history:    .venv/bin/dialgate history {c['id']}"
            )
        print(
            f"\ndialgate is up (namespace {settings.namespace!r}, database "
            f"{mask_url(settings.database_url)}):\n"
            f"  page        {url}/\n"
            f"  API         {url}/api/v1/campaigns   (OpenAPI: {url}/docs)\n"
            f"  readiness   {url}/readyz\n"
            f"  metrics     {url}/metrics, workers :{settings.worker_metrics_port}/metrics\n"
            f"  workers     {args.workers} processes × {args.threads} threads\n"
            f"{token_lines}{demo}\n"
            "A process that dies is started again; Ctrl-C stops everything.\n",
            flush=True,
        )
        return supervisor.run()  # until Ctrl-C or SIGTERM; a process that dies restarts
    finally:
        supervisor.stop()
