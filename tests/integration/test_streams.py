"""The campaign page's event streams: a cap per token, the credential checked again while
streaming, one render per campaign for all its streams, one broker probe for many
diagnoses."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from control.web.streams import ACTIVITY_EVERY, CREDENTIAL_EVERY_S, EVENT_TICK_S, Streams
from shared.clients import broker_probe
from tests.conftest import AMQP_URL
from tests.support.stack import TestStack, wait_for


def _token(stack: TestStack, name: str, role: str = "viewer") -> tuple[int, dict[str, str]]:
    t = stack.api("POST", "/tokens", expect=201, json={"name": name, "role": role})
    return int(t["id"]), {"Authorization": f"Bearer {t['token']}"}


class Watcher(threading.Thread):
    """One event stream read in the background: its status, its lines, when it ended."""

    def __init__(self, stack: TestStack, cid: int, headers: dict[str, str], read_s: float):
        super().__init__(daemon=True)
        self.url = f"{stack.settings.url}/campaigns/{cid}/events"
        self.headers = headers
        self.timeout = httpx.Timeout(5.0, read=read_s)
        self.status: int | None = None
        self.lines: list[str] = []
        self.ended_at: float | None = None
        self.closed = False
        self.sock: socket.socket | None = None
        self.start()

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=self.timeout) as r:
                self.sock = r.extensions["network_stream"].get_extra_info("socket")
                self.status = r.status_code
                for line in r.iter_lines():
                    self.lines.append(line)
                self.ended_at = time.monotonic()
        except httpx.HTTPError:
            if not self.closed:
                raise

    def close(self) -> None:
        """Hang up, as a browser leaving the page does."""
        self.closed = True
        if self.sock is not None:
            with contextlib.suppress(OSError):  # already closed: it ended by itself
                self.sock.shutdown(socket.SHUT_RDWR)
        self.join(5)

    def events(self) -> list[str]:
        return [line.removeprefix("event: ") for line in self.lines if line.startswith("event:")]


def _streams(stack: TestStack) -> Streams:
    assert stack.stack is not None
    streams: Streams = stack.stack.app.state.streams
    return streams


def test_a_revoked_tokens_stream_ends_within_a_few_seconds(make_stack: Any) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    token_id, viewer = _token(stack, "viewer-1")
    w = Watcher(stack, cid, viewer, read_s=20)
    wait_for(lambda: "live" in w.events(), 10, "the first live event")
    stack.api("DELETE", f"/tokens/{token_id}")
    revoked = time.monotonic()
    w.join(15)
    assert w.ended_at is not None, "the stream of a revoked token is still open"
    assert w.ended_at - revoked <= CREDENTIAL_EVERY_S + 2 * EVENT_TICK_S + 1
    assert any("stream ended" in line and "revoked" in line for line in w.lines), w.lines


def test_one_stream_more_than_the_limit_per_token_is_refused_with_429(make_stack: Any) -> None:
    stack = make_stack(max_streams_per_caller=2).start(loops=False)
    cid = stack.make_campaign(contacts=1)
    _, viewer = _token(stack, "viewer-1")
    _, other = _token(stack, "viewer-2")
    open_ = [Watcher(stack, cid, viewer, read_s=30) for _ in range(2)]
    wait_for(lambda: all("live" in w.events() for w in open_), 10, "two streams")
    with httpx.stream("GET", f"{stack.settings.url}/campaigns/{cid}/events", headers=viewer) as r:
        assert r.status_code == 429, r.status_code
        message = json.loads(r.read())["error"]["message"]
    assert "DIALGATE_MAX_STREAMS_PER_CALLER=2" in message and "'viewer-1'" in message
    theirs = Watcher(stack, cid, other, read_s=30)  # another token has its own streams
    wait_for(lambda: theirs.status is not None, 10, "another token's stream")
    assert theirs.status == 200
    open_[0].close()  # a closed stream gives its slot back

    def status() -> int:
        url = f"{stack.settings.url}/campaigns/{cid}/events"
        with httpx.stream("GET", url, headers=viewer) as r:  # its status only
            return r.status_code

    assert wait_for(lambda: status() == 200, 10, "the slot to be free", every=0.2)
    for w in (*open_, theirs):
        w.close()


def test_every_stream_of_a_campaign_shares_one_read_and_one_render_per_tick(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.make_campaign(contacts=1)
    viewers = [_token(stack, f"viewer-{i}")[1] for i in range(3)]
    _, operator = _token(stack, "operator-1", role="operator")
    first = Watcher(stack, cid, viewers[0], read_s=10)
    wait_for(lambda: "diagnosis" in first.events(), 10, "the first stream")
    streams = _streams(stack)
    before, started = dict(streams.shared.computed), time.monotonic()
    watchers = [Watcher(stack, cid, h, read_s=10) for h in (*viewers, viewers[0], operator)]
    every = {"live", "diagnosis", "activity"}
    wait_for(lambda: all(every <= set(w.events()) for w in watchers), 10, "all")
    time.sleep(2.0)
    elapsed = time.monotonic() - started
    made = {k: v - before.get(k, 0) for k, v in streams.shared.computed.items()}
    ticks = elapsed / EVENT_TICK_S + 2
    # Six streams: unshared, each would have read the facts once per tick.
    assert made.get("facts", 0) <= ticks, (made, elapsed)
    # One rendering per set of offered actions (viewers: none; the operator: pause).
    assert made.get("live", 0) <= 2 * ticks, (made, elapsed)
    assert made.get("diagnosis", 0) <= elapsed / (6 * EVENT_TICK_S) + 2, (made, elapsed)
    assert made.get("activity", 0) <= elapsed / (ACTIVITY_EVERY * EVENT_TICK_S) + 2, made
    chart = {w.lines[w.lines.index("event: activity") + 1] for w in watchers}
    assert len(chart) == 1  # one reading for every caller, sent as JSON
    assert len(json.loads(chart.pop().removeprefix("data: "))["started"]) == 360
    live = {w.lines[w.lines.index("event: live") + 1] for w in watchers[:3]}
    assert len(live) == 1  # the viewers got the same fragment
    op = watchers[-1].lines[watchers[-1].lines.index("event: live") + 1]
    assert "act-pause" in op and all("act-pause" not in x for x in live)
    for w in (first, *watchers):
        w.close()


def test_many_diagnoses_at_once_make_one_broker_connection(make_stack: Any) -> None:
    # The same broker under a URL of its own: a probe no other test has made yet.
    stack = make_stack(amqp_url=f"{AMQP_URL}?locale=en_US")
    stack.start(loops=False)
    cid = stack.make_campaign(contacts=1)
    probe = broker_probe(stack.settings)
    before = probe.connections

    def diagnose(_: int) -> int:
        return stack.http.get(f"/api/v1/campaigns/{cid}/diagnosis").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(diagnose, range(16))) == {200}
    assert probe.connections - before == 1
