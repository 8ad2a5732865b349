"""Credentials served from memory (:mod:`control.auth.memory`): a revocation through one
API process is refused by another that remembered the credential as soon as it hears of
it, and a
process that is not listening for revocations remembers nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from control.auth.memory import Remembered
from control.auth.tokens import Tokens
from control.server import build, http_config
from tests.support.stack import REDIS_URL, TestStack, free_port, wait_for


@pytest.fixture
def two_apis(make_stack: Any) -> Iterator[tuple[TestStack, httpx.Client, Tokens]]:
    """A stack and a second API process's app on the same database and Redis."""
    stack = make_stack().start(loops=False)
    port = free_port()
    other = build(stack.settings.model_copy(update={"http_port": port}))
    server = uvicorn.Server(http_config(other.app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 15, "the second API")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield stack, client, other.app.state.tokens
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_token_revoked_through_one_api_process_is_refused_by_another_once_it_hears(
    two_apis: tuple[TestStack, httpx.Client, Tokens],
) -> None:
    stack, other, tokens = two_apis
    made = stack.api("POST", "/tokens", expect=201, json={"name": "ops", "role": "operator"})
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert other.get("/api/v1/campaigns", headers=headers).status_code == 200
    wait_for(lambda: tokens.remembers("token", made["token"]), 5, "the token remembered")
    assert other.get("/api/v1/campaigns", headers=headers).status_code == 200  # from memory

    stack.api("DELETE", f"/tokens/{made['id']}")  # through the first process
    # Refused as soon as the other process hears the revocation (milliseconds; on a
    # loaded machine its listener thread may take a little longer than one request).
    refused = wait_for(
        lambda: (r := other.get("/api/v1/campaigns", headers=headers)).status_code == 401 and r,
        2,
        "the other process to hear the revocation",
        every=0.01,
    )
    assert "revoked" in refused.json()["error"]["message"]
    assert not tokens.remembers("token", made["token"])


def test_nothing_is_remembered_unless_revocations_are_heard_nor_past_one() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    channel = f"t{uuid.uuid4().hex[:10]}:credentials-changed"
    memory: Remembered[str] = Remembered(client, channel)
    memory.put("a", "principal", memory.generation(), None)
    assert memory.get("a") is None  # not subscribed yet: every check goes to the database
    memory.start()
    try:
        wait_for(lambda: _remembers(memory), 5, "the subscription")
        raced = memory.generation()  # a check that began before a revocation elsewhere
        Remembered(client, channel).changed()
        wait_for(lambda: memory.get("probe") is None, 5, "the revocation heard")
        memory.put("b", "principal", raced, None)
        assert memory.get("b") is None
    finally:
        memory.stop()
    memory.put("c", "principal", memory.generation(), None)
    assert memory.get("c") is None  # stopped listening: nothing is remembered


def _remembers(memory: Remembered[str]) -> bool:
    memory.put("probe", "principal", memory.generation(), None)
    return memory.get("probe") is not None
