"""Secrets stay secret: what the commands print, the settings' repr and errors, what the
global emergency stop shows to whom, and the RabbitMQ permissions docs/security.md gives.

The commands run as real processes (``python -m control.cli``) against closed ports or
the machine's Redis and RabbitMQ; the emergency stop against a real stack; the
permissions on a RabbitMQ node of the test session's own.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from pydantic import ValidationError

from control.cli.up import admin_token
from shared.settings import Settings
from tests.conftest import AMQP_URL, REDIS_URL
from tests.support.services import PrivateRabbitMQ
from tests.support.stack import TestStack, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-" + uuid.uuid4().hex[:8]
TOKEN = "dg_env_admin_" + uuid.uuid4().hex


def _env(**dialgate: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALGATE_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"DIALGATE_{k.upper()}": v for k, v in dialgate.items()})
    return env


def _dialgate(*args: str, **dialgate: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control.cli", *args],
        cwd=ROOT,
        env=_env(**dialgate),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dialgate_up_names_each_unreachable_service_with_its_password_masked() -> None:
    out = _dialgate(
        "up",
        "--port",
        str(free_port()),
        database_url=f"postgresql://dialgate:{PASSWORD}@127.0.0.1:{free_port()}/dialgate",
        redis_url=f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0",
        amqp_url=f"amqp://dialgate:{PASSWORD}@127.0.0.1:{free_port()}/%2F",
    )
    assert out.returncode == 1
    printed = out.stdout + out.stderr
    assert PASSWORD not in printed
    assert "the database at postgresql://dialgate:***@127.0.0.1:" in printed
    assert "Redis is not reachable at redis://:***@127.0.0.1:" in printed
    assert "RabbitMQ is not reachable at amqp://dialgate:***@127.0.0.1:" in printed


def test_a_refused_secret_setting_is_named_but_never_echoed() -> None:
    out = _dialgate("migrate", control_key=PASSWORD[:12], database_url="sqlite://")
    assert out.returncode == 2
    assert (
        out.stderr
        == "dialgate: DIALGATE_CONTROL_KEY: Value error, should have at least 16 characters\n"
    )
    assert PASSWORD[:12] not in out.stdout + out.stderr
    with pytest.raises(ValidationError) as refused:
        Settings(admin_token=PASSWORD)
    assert "admin_token" in str(refused.value) and PASSWORD not in str(refused.value)


def test_the_settings_repr_masks_every_password_and_token() -> None:
    s = Settings(
        database_url=f"postgresql://dialgate:{PASSWORD}@db/dialgate",
        amqp_url=f"amqp://dialgate:{PASSWORD}@mq/%2F",
        redis_url=f"redis://:{PASSWORD}@redis/0",
        admin_token=TOKEN,
        token=TOKEN,
        control_key=TOKEN,
    )
    assert PASSWORD not in repr(s) and TOKEN not in repr(s) and TOKEN not in str(s)
    assert "postgresql://dialgate:***@db/dialgate" in repr(s)
    assert s.secret("admin_token") == s.secret("control_key") == TOKEN  # for the code


def test_dialgate_up_prints_an_admin_token_only_when_it_made_it() -> None:
    url = "http://127.0.0.1:8000"
    given, lines = admin_token(Settings(admin_token=TOKEN), url)
    assert given == TOKEN and TOKEN not in lines
    assert "from DIALGATE_ADMIN_TOKEN in your environment (not shown)" in lines
    made, lines = admin_token(Settings(), url)
    assert made.startswith("dg_") and f"admin token {made}" in lines


def test_a_real_dialgate_up_with_an_admin_token_set_never_prints_it(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with log.open("wb") as sink:
        up = subprocess.Popen(
            [sys.executable, "-m", "control.cli", "up", "--workers", "1", "--threads", "1"],
            cwd=tmp_path,
            env=_env(
                admin_token=TOKEN,
                database_url=f"sqlite:///{tmp_path / 'up.db'}",
                redis_url=REDIS_URL,
                amqp_url=AMQP_URL,
                namespace="t" + uuid.uuid4().hex[:10],
                http_port=str(free_port()),
                worker_metrics_port="0",
                log_json="true",
            ),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: b"Ctrl-C stops everything" in log.read_bytes(), 60, "dialgate up")
        up.send_signal(signal.SIGINT)
        up.wait(60)
    finally:  # the whole group: a signal to `up` alone leaves its loops child running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGKILL)
        up.wait(10)
    printed = log.read_text()
    assert "from DIALGATE_ADMIN_TOKEN in your environment (not shown)" in printed
    assert TOKEN not in printed


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(stack: TestStack, role: str, org: str) -> str:
    body = {"name": f"{org}-{role}", "role": role, "org": org}
    return str(stack.api("POST", "/tokens", expect=201, json=body)["token"])


def test_an_organisation_sees_that_the_global_stop_is_in_force_and_since_when_not_who_or_why(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    org_tokens = [_token(stack, "viewer", "acme"), _token(stack, "admin", "acme")]
    assert stack.http.get("/api/v1/emergency-stop", headers=_bearer(org_tokens[0])).json() == {
        "active": False
    }
    stack.api(
        "POST",
        "/emergency-stop",
        json={"actor": "sre:kim", "reason": "fraud complaint against globex"},
    )
    full = stack.api("GET", "/emergency-stop")  # the platform admin
    assert full["reason"] == "fraud complaint against globex"
    assert full["by"] == "admin-token (sre:kim)"
    for token in org_tokens:
        seen = stack.http.get("/api/v1/emergency-stop", headers=_bearer(token))
        assert seen.status_code == 200
        assert seen.json() == {"active": True, "since": full["since"]}
    stack.api("DELETE", "/emergency-stop")  # the stop was this stack's namespace alone


def _documented_permissions() -> dict[str, list[str]]:
    """user -> [configure, write, read], from the ``rabbitmqctl set_permissions`` lines of
    docs/security.md (namespace ``dialgate``)."""
    text = (ROOT / "docs" / "security.md").read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line.startswith("rabbitmqctl set_permissions"):
            *_, user, configure, write, read = shlex.split(line)
            found[user] = [configure, write, read]
    return found


def _rabbitmqctl(node: PrivateRabbitMQ, *args: str) -> None:
    out = subprocess.run(
        ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", node.node, *args],
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _user(node: PrivateRabbitMQ, role: str, namespace: str) -> str:
    """A user of this node with the documented permissions of ``role``; its URL."""
    name = f"{namespace}-{role}"
    _rabbitmqctl(node, "add_user", name, PASSWORD)
    perms = [
        p.replace("dialgate\\.", f"{namespace}\\.")
        for p in _documented_permissions()[f"dialgate-{role}"]
    ]
    _rabbitmqctl(node, "set_permissions", "-p", "/", name, *perms)
    return f"amqp://{name}:{PASSWORD}@127.0.0.1:{node.port}/%2F"


def test_the_documented_rabbitmq_permissions_dial_and_refuse_a_worker_publishing_events(
    make_stack: Any, private_rabbitmq: PrivateRabbitMQ
) -> None:
    assert set(_documented_permissions()) == {"dialgate-control", "dialgate-worker"}
    namespace = "t" + uuid.uuid4().hex[:10]
    control_url = _user(private_rabbitmq, "control", namespace)
    worker_url = _user(private_rabbitmq, "worker", namespace)
    stack = make_stack(namespace=namespace, amqp_url=control_url).start()
    control_settings = stack.settings  # the worker alone gets the workers' user
    stack.settings = control_settings.model_copy(update={"amqp_url": worker_url})
    try:
        stack.start_worker(threads=2)
    finally:
        stack.settings = control_settings
    stack.wait_workers(1)
    cid = stack.make_campaign(contacts=20, max_concurrency=2)
    stack.wait_calls(2)
    version = stack.act(cid, "pause")["version"]
    wait_for(  # through the relay, <ns>.control and the worker's own queue
        lambda: set(stack.redis.hgetall(stack.keys.acks(cid)).values()) == {str(version)},
        20,
        "the worker to apply the pause",
    )
    stack.act(cid, "resume")
    assert stack.wait_status(cid, "completed", timeout=60)["counts"]["done"] == 20
    logs = "".join(p.read_text(errors="replace") for p in stack.tmp.glob("*.log"))
    assert "ACCESS_REFUSED" not in logs

    conn = pika.BlockingConnection(pika.URLParameters(control_url))
    try:  # the queue depth /metrics reads: a passive declare needs no right
        assert conn.channel().queue_declare(stack.keys.dial_queue, passive=True)
    finally:
        conn.close()
    conn = pika.BlockingConnection(pika.URLParameters(worker_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            ch.basic_publish(stack.keys.control_exchange, f"campaign.{cid}.resume", b"{}")
        assert refused.value.reply_code == 403
    finally:
        conn.close()
