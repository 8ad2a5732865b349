"""Webhooks end to end: a real HTTP receiver verifies every delivery with the
standardwebhooks library; it goes down for a while and still gets every event
afterwards, in order per campaign, none twice per webhook-id; a subscription that keeps
failing is disabled and says why."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from tests.support.stack import free_port, wait_for


class Receiver:
    """An HTTP server on 127.0.0.1: ``/ok`` answers 204, ``/fail`` 500, each after checking
    the signature with the secret of its path (a bad one: 400, kept in ``bad``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.secrets: dict[str, str] = {}
        self.got: list[tuple[str, str, dict[str, Any]]] = []  # (path, webhook-id, body)
        self.bad: list[str] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    payload = Webhook(rx.secrets[self.path]).verify(body, dict(self.headers))
                except Exception as exc:
                    rx.bad.append(f"{self.path}: {exc!r}")
                    self.send_response(400)
                else:
                    with rx.lock:
                        rx.got.append((self.path, self.headers["webhook-id"], payload))
                    self.send_response(204 if self.path == "/ok" else 500)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, path: str = "/ok") -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, _, body in self.got if p == path]


def test_deliveries_are_signed_in_order_and_once_after_the_receiver_was_down(make_stack):
    rx = Receiver().start()
    stack = make_stack(
        webhook_interval=0.05,
        webhook_backoff=0.05,
        webhook_backoff_max=0.25,
        webhook_retry_for=5.0,
    ).start()
    try:
        # Bad input names the field and what is allowed; nothing is made.
        body = {"url": rx.url("/ok"), "events": ["campaign.paused", "campaign.exploded"]}
        refused = stack.api("POST", "/webhooks", expect=422, json=body)["error"]["message"]
        assert refused.startswith("events[1]:") and "emergency_stop.*" in refused
        body = {"url": "ftp://127.0.0.1/in", "events": ["campaign.paused"]}
        assert "url" in stack.api("POST", "/webhooks", expect=422, json=body)["error"]["message"]
        assert stack.api("GET", "/webhooks") == {"webhooks": []}

        ok = stack.api(
            "POST",
            "/webhooks",
            expect=201,
            json={"url": rx.url("/ok"), "events": ["campaign.*", "emergency_stop.*"]},
        )
        fail = stack.api(
            "POST",
            "/webhooks",
            expect=201,
            json={"url": rx.url("/fail"), "events": ["campaign.paused"]},
        )
        rx.secrets = {"/ok": ok["secret"], "/fail": fail["secret"]}
        listed = stack.api("GET", "/webhooks")["webhooks"]
        assert [w["id"] for w in listed] == [ok["id"], fail["id"]]
        assert all("secret" not in w for w in listed)  # shown once, at creation

        a = stack.make_campaign(1, max_concurrency=1)
        b = stack.make_campaign(1, max_concurrency=1)
        stack.act(a, "pause", reason="one")
        stack.act(b, "pause")
        stack.act(a, "resume")
        wait_for(lambda: len(rx.events()) >= 5, 15, "the first five events")

        rx.stop()  # the receiver goes away: deliveries fail and are retried
        stack.act(a, "pause", reason="two")
        stack.act(b, "resume")
        stack.act(a, "resume")

        def retried() -> bool:
            log = stack.api("GET", f"/webhooks/{ok['id']}/deliveries")["deliveries"]
            return any(d["state"] == "pending" and d["attempts"] >= 3 for d in log)

        wait_for(retried, 15, "a delivery retried while the receiver is down")
        rx.start()  # back, on the same port
        stack.act(a, "cancel", confirm=True)
        stack.api("POST", "/emergency-stop", json={"reason": "drill of org x"})
        stack.api("DELETE", "/emergency-stop", json={})
        wait_for(lambda: len(rx.events()) >= 11, 20, "every event after the receiver is back")

        assert rx.bad == []
        # None twice per webhook-id where it was taken (2xx); /fail's 500s are retried.
        ids = Counter(msg_id for path, msg_id, _ in rx.got if path == "/ok")
        assert [i for i, n in ids.items() if n > 1] == []
        got = rx.events()
        assert len(got) == 11, [e["type"] for e in got]

        def lane(cid: int) -> list[tuple[str, int]]:
            return [
                (e["type"], e["data"]["version"])
                for e in got
                if e["type"].startswith("campaign.") and e["data"]["campaign"]["id"] == cid
            ]

        assert lane(a) == [
            ("campaign.started", 1),
            ("campaign.paused", 2),
            ("campaign.resumed", 3),
            ("campaign.paused", 4),
            ("campaign.resumed", 5),
            ("campaign.cancelled", 6),
        ]
        assert lane(b) == [("campaign.started", 1), ("campaign.paused", 2), ("campaign.resumed", 3)]
        paused = next(
            e["data"]
            for e in got
            if e["type"] == "campaign.paused" and e["data"]["campaign"]["id"] == a
        )
        assert paused["from"] == "running" and paused["to"] == "paused"
        assert paused["reason"] == "one" and paused["campaign"]["org"] == "default"
        stops = [e for e in got if e["type"].startswith("emergency_stop.")]
        assert [e["type"] for e in stops] == ["emergency_stop.stop", "emergency_stop.lift"]
        assert "drill" not in json.dumps(stops)  # who stopped everything, and why, stays hidden

        log = stack.api("GET", f"/webhooks/{ok['id']}/deliveries")["deliveries"]
        assert [d["id"] for d in log] == sorted((d["id"] for d in log), reverse=True)
        assert {d["state"] for d in log} == {"delivered"}
        assert {d["last_status"] for d in log} == {204}
        assert max(d["attempts"] for d in log) >= 3

        # The failing subscription: retried, given up, disabled, saying since when and why.
        def disabled() -> dict[str, Any] | None:
            hooks = {w["id"]: w for w in stack.api("GET", "/webhooks")["webhooks"]}
            return None if hooks[fail["id"]]["enabled"] else hooks[fail["id"]]

        off = wait_for(disabled, 20, "the failing subscription disabled")
        assert off["disabled_reason"].startswith("failing since ")
        assert off["disabled_reason"].endswith("(last: HTTP 500)")
        failed = stack.api("GET", f"/webhooks/{fail['id']}/deliveries")["deliveries"]
        assert {d["state"] for d in failed} == {"gave_up"}
        assert all(d["last_status"] in (500, None) for d in failed)
        assert len(rx.events("/fail")) >= 2  # it was tried, more than once

        # The CLI's test delivery reaches the receiver too.
        done = stack.cli("webhooks", "test", str(ok["id"]))
        assert done.returncode == 0, done.stderr
        wait_for(lambda: rx.events()[-1]["type"] == "webhook.test", 10, "the test delivery")
        assert stack.api("DELETE", f"/webhooks/{fail['id']}")["id"] == fail["id"]
        assert [w["id"] for w in stack.api("GET", "/webhooks")["webhooks"]] == [ok["id"]]
    finally:
        rx.stop()
