"""Authentication, roles, organisations and the audit trail, against a real stack.

The role × route matrix is generated from :data:`control.auth.roles.ROUTES`, the table the
code enforces, so a route cannot be added without being classified and tested here.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.routing import APIRoute
from pydantic import ValidationError

from control.auth.roles import GRANTS, ROUTES, Can, Role
from shared.settings import Settings
from tests.support.stack import TestStack

ROLES = [r.value for r in Role]


def pg(stack: TestStack) -> str:
    return stack.settings.database_url.replace("+psycopg", "")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_token(stack: TestStack, role: str, org: str, **extra: Any) -> str:
    body = {"name": f"{org}-{role}", "role": role, "org": org, **extra}
    return str(stack.api("POST", "/tokens", expect=201, json=body)["token"])


@pytest.fixture
def org_stack(make_stack: Any) -> tuple[TestStack, dict[str, str], int]:
    """A stack, one token per role in org ``acme``, and a running acme campaign."""
    stack = make_stack().start(loops=False)
    tokens = {role: make_token(stack, role, "acme") for role in ROLES}
    acme_admin = bearer(tokens["admin"])
    c = stack.http.post("/api/v1/campaigns", json={"name": "acme one"}, headers=acme_admin)
    assert c.status_code == 201, c.text
    cid = int(c.json()["id"])
    r = stack.http.post(
        f"/api/v1/campaigns/{cid}/contacts",
        json={"contacts": [{"phone": "+33612345678"}]},
        headers=acme_admin,
    )
    assert r.status_code == 200, r.text
    return stack, tokens, cid


def test_every_route_of_the_app_is_in_the_permission_table(make_stack: Any) -> None:
    stack = make_stack().start(loops=False)
    assert stack.stack is not None
    app = stack.stack.app
    missing = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods - {"HEAD"}:
            path = route.path
            if path.endswith("/{action}"):
                continue  # listed once per action
            if (method, path) not in ROUTES:
                missing.append(f"{method} {path}")
    assert not missing, f"classify these routes in control/auth/roles.py ROUTES: {missing}"


def _fill(path: str, cid: int) -> str:
    for name in ("{token_id}", "{webhook_id}"):
        path = path.replace(name, "999999")
    return path.replace("{campaign_id}", str(cid))


@pytest.mark.parametrize("role", [*ROLES, None])
def test_the_role_matrix_is_what_the_table_says(
    org_stack: tuple[TestStack, dict[str, str], int], role: str | None
) -> None:
    stack, tokens, cid = org_stack
    headers = bearer(tokens[role]) if role else {"Authorization": ""}
    for (method, path), cap in sorted(ROUTES.items()):
        if path in ("/logout", "/login", "/docs") or (cap is Can.PUBLIC and path != "/healthz"):
            continue
        body: dict[str, Any] | None = None
        if method == "POST" and path.endswith("/cancel"):
            body = {"confirm": False}  # allowed roles get 422, not a cancelled campaign
        if method == "POST" and path.endswith("/pause"):
            body = {"reason": "matrix"}
        if method == "POST" and path == "/api/v1/emergency-stop":
            body = {"scope": "all"}  # allowed only for a platform admin: 403 for everyone
        if path.endswith("/events"):  # a server-sent event stream: read its status only
            with stack.http.stream(method, _fill(path, cid), headers=headers) as streamed:
                status = streamed.status_code
                body_text = "" if status == 200 else streamed.read().decode()
            resp = httpx.Response(status, text=body_text or "(event stream)")
        else:
            resp = stack.http.request(method, _fill(path, cid), json=body, headers=headers)
        allowed = cap is Can.PUBLIC or (role is not None and cap in GRANTS[Role(role)])
        if cap is Can.PUBLIC:
            assert resp.status_code == 200, (method, path)
        elif role is None:  # pages send the visitor to sign in; the API answers 401
            expected = 303 if not path.startswith("/api/") else 401
            assert resp.status_code == expected, (method, path, resp.text)
        elif path == "/api/v1/emergency-stop" and method == "POST":
            assert resp.status_code == 403, (role, resp.text)
        elif allowed:
            assert resp.status_code not in (401, 403), (role, method, path, resp.text)
        else:
            assert resp.status_code == 403, (role, method, path, resp.text)
            assert "role" in resp.json()["error"]["message"]
        if method == "POST" and path.endswith("/pause") and resp.status_code == 200:
            # Put it back for the next routes (as the admin).
            r = stack.http.post(f"/api/v1/campaigns/{cid}/resume", headers=bearer(tokens["admin"]))
            assert r.status_code == 200, r.text


def test_another_organisation_sees_nothing_of_ours(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack, tokens, cid = org_stack
    theirs = bearer(make_token(stack, "admin", "globex"))
    ours = bearer(tokens["admin"])
    stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=ours).raise_for_status()
    for method, path, body in [
        ("GET", f"/api/v1/campaigns/{cid}", None),
        ("GET", f"/api/v1/campaigns/{cid}/transitions", None),
        ("POST", f"/api/v1/campaigns/{cid}/pause", {"reason": "x"}),
        ("POST", f"/api/v1/campaigns/{cid}/cancel", {"confirm": True}),
        ("POST", f"/api/v1/campaigns/{cid}/contacts", {"contacts": [{"phone": "+33612345679"}]}),
    ]:
        resp = stack.http.request(method, path, json=body, headers=theirs)
        assert resp.status_code == 404, (method, path, resp.text)
        assert resp.json()["error"]["message"] == f"campaign {cid} does not exist"
    missing = stack.http.get("/api/v1/campaigns/987654", headers=theirs)
    assert missing.status_code == 404  # the same answer as for a campaign of another org
    assert stack.http.get("/api/v1/campaigns", headers=theirs).json()["campaigns"] == []
    assert stack.api("GET", f"/campaigns/{cid}")["status"] == "running"  # nothing changed
    # Tokens and audit events of acme are not theirs either.
    acme_tokens = stack.http.get("/api/v1/tokens", headers=ours).json()["tokens"]
    victim = next(t for t in acme_tokens if t["role"] == "viewer")
    assert stack.http.delete(f"/api/v1/tokens/{victim['id']}", headers=theirs).status_code == 404
    listed = stack.http.get("/api/v1/tokens", headers=theirs).json()["tokens"]
    assert {t["org"] for t in listed} == {"globex"}
    events = stack.http.get("/api/v1/audit", headers=theirs).json()["events"]
    assert events and {e["org"] for e in events} == {"globex"}
    # Creating a token in another organisation needs a platform admin.
    r = stack.http.post(
        "/api/v1/tokens", json={"name": "x", "role": "admin", "org": "acme"}, headers=theirs
    )
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("org:")


def test_a_token_is_shown_once_stored_as_a_hash_and_stops_working_when_revoked_or_expired(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack = org_stack[0]
    created = stack.api("POST", "/tokens", expect=201, json={"name": "ci", "role": "viewer"})
    secret = created["token"]
    assert secret.startswith("dg_") and len(secret) > 40
    listed = stack.api("GET", "/tokens")["tokens"]
    assert all("token" not in t for t in listed)
    assert secret not in httpx.Response(200, json=listed).text
    with psycopg.connect(pg(stack)) as conn:
        stored = conn.execute(
            "SELECT secret_hash FROM api_tokens WHERE id = %s", (created["id"],)
        ).fetchone()
    assert stored == (hashlib.sha256(secret.encode()).hexdigest(),)
    assert stack.http.get("/api/v1/campaigns", headers=bearer(secret)).status_code == 200
    stack.api("DELETE", f"/tokens/{created['id']}")
    refused = stack.http.get("/api/v1/campaigns", headers=bearer(secret))
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    short = stack.api(
        "POST",
        "/tokens",
        expect=201,
        json={"name": "brief", "role": "viewer", "expires_in_days": 1},
    )
    with psycopg.connect(pg(stack)) as conn:
        conn.execute(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = %s",
            (short["id"],),
        )
    expired = stack.http.get("/api/v1/campaigns", headers=bearer(short["token"]))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
    bad = stack.http.post("/api/v1/tokens", json={"name": "x", "role": "root"})
    assert bad.status_code == 422 and "role" in bad.json()["error"]["message"]


def test_a_burst_of_bad_tokens_never_refuses_a_valid_credential(make_stack: Any) -> None:
    stack = make_stack(auth_failures_per_minute=3).start(loops=False)
    supervisor = make_token(stack, "supervisor", "default")
    cid = stack.api("POST", "/campaigns", expect=201, json={"name": "burst"})["id"]
    stack.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": [{"phone": "+33612345678"}]})
    stack.api("POST", f"/campaigns/{cid}/start")
    guesses = [
        stack.http.get("/api/v1/campaigns", headers=bearer(f"dg_guessing_{i}")).status_code
        for i in range(5)
    ]
    assert guesses == [401, 401, 401, 429, 429]
    # Everyone at this address with a valid credential goes on: the pause above all.
    assert stack.http.get("/api/v1/whoami").json()["platform"] is True
    paused = stack.http.post(
        f"/api/v1/campaigns/{cid}/pause", json={"reason": "burst"}, headers=bearer(supervisor)
    )
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    signed_in = httpx.post(f"{stack.settings.url}/login", data={"token": supervisor}, timeout=10)
    assert signed_in.status_code == 303
    # Failures are also counted per presented credential: a fresh address does not reset it.
    stack.redis.delete(stack.keys.auth_failures("ip:127.0.0.1"))
    again = stack.http.get("/api/v1/campaigns", headers=bearer("dg_guessing_9"))  # same prefix
    assert again.status_code == 429 and "wait" in again.json()["error"]["message"]
    other = stack.http.get("/api/v1/campaigns", headers=bearer("dg_other_guess"))
    assert other.status_code == 401


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


def _answer_before_body(stack: TestStack, path: str, length: int, auth: str = "") -> str:
    """Send a request's headers only, claiming a body of ``length`` bytes; the status line
    the server answers before any of the body was sent (or '' if it waits for the body)."""
    port = stack.settings.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{auth}\r\n"
        )
        sock.sendall(head.encode())
        try:
            status = sock.recv(4096).decode().split("\r\n", 1)[0]
        except TimeoutError:
            return ""
        try:  # the rest of the claimed body, as an attacker would send it
            for _ in range(length // 65536):
                sock.sendall(b"{}," * 21845)
        except OSError:
            pass  # the server closed the connection: what it should do
        return status


def test_no_request_body_is_read_before_its_credential_is_known(make_stack: Any) -> None:
    stack = make_stack().start(loops=False)
    cid = stack.api("POST", "/campaigns", expect=201, json={"name": "big"})["id"]
    before = _rss()
    anonymous = _answer_before_body(stack, f"/api/v1/campaigns/{cid}/contacts", 24 << 20)
    assert anonymous.endswith("401 Unauthorized"), anonymous
    forged = "Authorization: Bearer dg_not_a_token\r\n"
    wrong = _answer_before_body(stack, "/api/v1/dnc", 900_000, forged)
    assert wrong.endswith("401 Unauthorized"), wrong
    # The import limit belongs to the contact import alone: a DNC body over 1 MiB is 413.
    assert " 413 " in _answer_before_body(stack, "/api/v1/dnc", 24 << 20)
    assert _rss() - before < 32 << 20  # the 24 MiB sent were never read, let alone parsed
    assert stack.api("GET", "/dnc")["phones"] == []


def test_a_monitor_pauses_only_with_a_reason_and_never_resumes(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack, tokens, cid = org_stack
    monitor = bearer(tokens["monitor"])
    stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=bearer(tokens["admin"]))
    r = stack.http.post(f"/api/v1/campaigns/{cid}/pause", headers=monitor)
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("reason:")
    r = stack.http.post(
        f"/api/v1/campaigns/{cid}/pause", json={"reason": "failure rate 40%"}, headers=monitor
    )
    assert r.status_code == 200, r.text
    assert r.json()["pause_source"] == "system" and r.json()["allowed_actions"] == []
    assert stack.http.post(f"/api/v1/campaigns/{cid}/resume", headers=monitor).status_code == 403
    supervisor = bearer(tokens["supervisor"])
    seen = stack.http.get(f"/api/v1/campaigns/{cid}", headers=supervisor).json()
    assert seen["allowed_actions"] == ["resume"]  # cancel is the admin's
    history = stack.http.get(f"/api/v1/campaigns/{cid}/transitions", headers=supervisor).json()
    latest = history["transitions"][0]
    assert (latest["actor"], latest["role"], latest["source"]) == (
        "acme-monitor",
        "monitor",
        "system",
    )


def test_every_change_is_in_the_audit_trail_with_who_and_from_where(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack, tokens, cid = org_stack
    admin = bearer(tokens["admin"])
    stack.http.post(
        f"/api/v1/campaigns/{cid}/start", headers={**admin, "X-Request-ID": "req-audit-1"}
    )
    t = stack.http.post("/api/v1/tokens", json={"name": "tmp", "role": "viewer"}, headers=admin)
    stack.http.delete(f"/api/v1/tokens/{t.json()['id']}", headers=admin)
    stop = stack.http.post("/api/v1/emergency-stop", json={"reason": "drill"}, headers=admin)
    assert stop.status_code == 200 and stop.json()["scope"] == "org", stop.text
    assert [p["id"] for p in stop.json()["paused"]] == [cid]
    again = stack.cli("estop", token=tokens["admin"])  # nothing left running to pause
    assert again.returncode == 0, again.stderr
    assert "emergency stop of acme: paused campaigns none was running" in again.stdout
    patched = stack.http.patch(
        f"/api/v1/campaigns/{cid}", json={"timezone": "Europe/Paris"}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    listed = stack.http.post("/api/v1/dnc", json={"phones": ["+33612345679"]}, headers=admin)
    assert listed.status_code == 200, listed.text
    events = stack.http.get("/api/v1/audit", headers=admin).json()["events"]
    kinds = [e["kind"] for e in events]
    for kind in (
        "campaign.created",
        "contacts.imported",  # the fixture's import
        "campaign.updated",
        "dnc.added",
        "campaign.start",
        "token.created",
        "token.revoked",
    ):
        assert kind in kinds, kinds
    updated = next(e for e in events if e["kind"] == "campaign.updated")
    assert updated["details"] == {"timezone": "Europe/Paris"} and updated["org"] == "acme"
    imported = next(e for e in events if e["kind"] == "contacts.imported")
    assert imported["details"] == {"accepted": 1, "rejected": 0}
    assert kinds.count("campaign.pause") == 1  # the organisation's emergency stop
    start = next(e for e in events if e["kind"] == "campaign.start")
    assert (start["actor"], start["org"], start["role"], start["source_ip"]) == (
        "acme-admin",
        "acme",
        "admin",
        "127.0.0.1",
    )
    assert start["request_id"] == "req-audit-1"
    # The platform admin's emergency stop covers everyone and is recorded too.
    stack.api("POST", "/emergency-stop", json={"reason": "drill"})
    stack.api("DELETE", "/emergency-stop")
    platform = stack.api("GET", "/audit")["events"]
    assert {"emergency_stop.stop", "emergency_stop.lift"} <= {e["kind"] for e in platform}
    assert stack.http.delete("/api/v1/emergency-stop", headers=admin).status_code == 422


def test_oversized_bodies_are_refused_before_they_are_read(make_stack: Any) -> None:
    stack = make_stack(max_body_bytes=4096).start(loops=False)
    big = {"name": "x" * 10_000}
    r = stack.http.post("/api/v1/campaigns", json=big)
    assert r.status_code == 413 and "4096" in r.json()["error"]["message"]

    def chunks() -> Any:  # no Content-Length: counted as it streams
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = stack.http.post(
        "/api/v1/campaigns", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert stack.api("GET", "/campaigns")["campaigns"] == []


def test_the_page_sends_visitors_to_sign_in_and_its_changes_need_the_csrf_token(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack, tokens, cid = org_stack
    browser = httpx.Client(base_url=stack.settings.url, timeout=10)
    r = browser.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
    assert "Sign in" in browser.get("/login").text
    wrong = browser.post("/login", data={"token": "dg_nope", "next": "/"})
    assert wrong.status_code == 401 and "not valid" in wrong.text
    ok = browser.post("/login", data={"token": tokens["operator"], "next": "//evil.example/"})
    assert ok.status_code == 303 and ok.headers["location"] == "/"  # never off-site
    cookies = ok.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("dialgate_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session
    assert browser.get("/").status_code == 200
    stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=bearer(tokens["admin"]))
    no_csrf = browser.post(f"/api/v1/campaigns/{cid}/pause")
    assert no_csrf.status_code == 403 and "csrf" in no_csrf.text.lower()
    csrf = browser.cookies["dialgate_csrf"]
    paused = browser.post(f"/api/v1/campaigns/{cid}/pause", headers={"x-csrf-token": csrf})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert (
        browser.post(f"/api/v1/campaigns/{cid}/resume", headers={"x-csrf-token": csrf}).status_code
        == 403
    )
    sid = browser.cookies["dialgate_session"]
    browser.post("/logout")
    again = httpx.get(
        f"{stack.settings.url}/api/v1/campaigns", cookies={"dialgate_session": sid}, timeout=10
    )
    assert again.status_code == 401 and "sign in again" in again.json()["error"]["message"]
    assert re.search(r"acme-operator", str(stack.api("GET", f"/campaigns/{cid}/transitions")))


def _event(stack: TestStack, kind: str) -> dict[str, Any]:
    return next(e for e in stack.api("GET", "/audit")["events"] if e["kind"] == kind)


def _failures(stack: TestStack, address: str) -> int:
    return int(stack.redis.get(stack.keys.auth_failures(f"ip:{address}")) or 0)


def test_a_forwarded_address_from_an_untrusted_peer_is_ignored_by_the_audit_and_the_limiter(
    make_stack: Any,
) -> None:
    stack = make_stack(auth_failures_per_minute=3).start(loops=False)
    forged = {
        "X-Forwarded-For": "203.0.113.9",
        "X-Real-IP": "203.0.113.9",
        "Forwarded": "for=203.0.113.9",
    }
    stack.api("POST", "/campaigns", expect=201, json={"name": "forged"}, headers=forged)
    created = _event(stack, "campaign.created")
    assert (created["source_ip"], created["peer_ip"]) == ("127.0.0.1", "127.0.0.1")
    # A new address per guess neither dodges the limiter nor charges the named address.
    guesses = [
        stack.http.get(
            "/api/v1/campaigns",
            headers={"Authorization": f"Bearer dg_{i}_guess", "X-Forwarded-For": f"198.51.100.{i}"},
        ).status_code
        for i in range(5)
    ]
    assert guesses == [401, 401, 401, 429, 429]
    assert _failures(stack, "127.0.0.1") == 5
    assert [_failures(stack, f"198.51.100.{i}") for i in range(5)] == [0] * 5


def test_a_trusted_proxy_names_the_client_and_the_peer_is_recorded_beside_it(
    make_stack: Any,
) -> None:
    stack = make_stack(trusted_proxies="127.0.0.1, 10.0.0.0/8").start(loops=False)
    cid = stack.make_campaign(1, start=False)
    # What the client wrote before the first proxy (203.0.113.9) is not believed: the
    # client is the rightmost address no trusted proxy sits behind.
    chain = {"X-Forwarded-For": "203.0.113.9, 198.51.100.20", "X-Real-IP": "192.0.2.1"}
    # Two headers, as two proxies may leave them: read as one list, the second one last.
    two = [*chain.items(), ("X-Forwarded-For", "10.1.2.3")]
    r = stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=two)
    assert r.status_code == 200, r.text
    r = stack.http.post(f"/api/v1/campaigns/{cid}/pause", headers=chain)
    assert r.status_code == 200, r.text
    started = _event(stack, "campaign.start")
    assert (started["source_ip"], started["peer_ip"]) == ("198.51.100.20", "127.0.0.1")
    history = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
    assert [(t["action"], t["source_ip"], t["peer_ip"]) for t in history[:2]] == [
        ("pause", "198.51.100.20", "127.0.0.1"),
        ("start", "198.51.100.20", "127.0.0.1"),
    ]
    # The limiter counts the client the proxy named, not the proxy everyone shares.
    bad = stack.http.get("/api/v1/campaigns", headers={"Authorization": "Bearer dg_nope", **chain})
    assert bad.status_code == 401
    assert (_failures(stack, "198.51.100.20"), _failures(stack, "127.0.0.1")) == (1, 0)
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, proxy.internal")


def _sign_in(stack: TestStack, token: str) -> httpx.Client:
    browser = httpx.Client(base_url=stack.settings.url, timeout=10)
    assert browser.post("/login", data={"token": token}).status_code == 303
    return browser


def test_a_web_session_ends_when_the_credential_that_opened_it_is_replaced_or_revoked(
    make_stack: Any,
) -> None:
    stack = make_stack().start(loops=False)
    admin = stack.settings.secret("admin_token")
    assert admin is not None
    cookie = _sign_in(stack, admin).cookies["dialgate_session"]
    session = {"dialgate_session": cookie}
    # The same database, served again with a new admin token: the old token's session ends.
    replaced = make_stack(database_url=stack.settings.database_url).start(loops=False)
    assert replaced.settings.secret("admin_token") != admin
    refused = httpx.get(f"{replaced.settings.url}/api/v1/whoami", cookies=session, timeout=10)
    assert refused.status_code == 401, refused.text
    assert "no longer the one configured" in refused.json()["error"]["message"]
    kept = httpx.get(f"{stack.settings.url}/api/v1/whoami", cookies=session, timeout=10)
    assert kept.status_code == 200 and kept.json()["platform"] is True
    # A token's session ends with the token's revocation.
    viewer = stack.api("POST", "/tokens", expect=201, json={"name": "eve", "role": "viewer"})
    browser = _sign_in(stack, viewer["token"])
    assert browser.get("/api/v1/whoami").status_code == 200
    stack.api("DELETE", f"/tokens/{viewer['id']}")
    after = browser.get("/api/v1/whoami")
    assert after.status_code == 401 and "sign in again" in after.json()["error"]["message"]


def test_only_automation_may_record_a_transition_as_system(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack, tokens, cid = org_stack
    stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=bearer(tokens["admin"]))

    def act(role: str, action: str, **body: Any) -> httpx.Response:
        path = f"/api/v1/campaigns/{cid}/{action}"
        return stack.http.post(path, json={"reason": "x", **body}, headers=bearer(tokens[role]))

    def history() -> list[tuple[str, str, str]]:
        rows = stack.api("GET", f"/campaigns/{cid}/transitions")["transitions"]
        return [(t["action"], t["role"], t["source"]) for t in rows]

    before = history()
    for role, action in (("operator", "pause"), ("supervisor", "pause")):
        r = act(role, action, source="system")
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert message.startswith("source:") and "'operator' or 'api'" in message
    assert stack.campaign(cid)["status"] == "running" and history() == before
    assert act("operator", "pause", source="operator").json()["pause_source"] == "operator"
    assert act("supervisor", "resume", source="system").status_code == 422
    assert act("supervisor", "resume").status_code == 200  # the default: api
    assert act("monitor", "pause", source="operator").json()["pause_source"] == "system"
    assert act("admin", "resume").status_code == 409  # the monitor's hold: acknowledged
    assert act("admin", "resume", acknowledge=["acme-monitor"]).status_code == 200
    assert act("admin", "pause", source="system").json()["pause_source"] == "system"
    assert history()[:5] == [
        ("pause", "admin", "system"),
        ("resume", "admin", "api"),
        ("pause", "monitor", "system"),
        ("resume", "supervisor", "api"),
        ("pause", "operator", "operator"),
    ]


def test_an_actor_label_that_would_not_fit_and_a_strange_request_id_change_nothing(
    org_stack: tuple[TestStack, dict[str, str], int],
) -> None:
    stack, tokens, cid = org_stack
    admin, operator = bearer(tokens["admin"]), bearer(tokens["operator"])
    stack.http.post(f"/api/v1/campaigns/{cid}/start", headers=admin)
    long = stack.http.post(
        f"/api/v1/campaigns/{cid}/pause", json={"actor": "x" * 199}, headers=operator
    )
    assert long.status_code == 422 and long.json()["error"]["message"].startswith("actor:")
    assert stack.campaign(cid)["status"] == "running"  # the label is refused, never cut
    labels = {"alertname": "a" * 190, "campaign_id": str(cid)}
    alert = {"alerts": [{"status": "firing", "labels": labels}]}
    monitor = bearer(tokens["monitor"])
    named = stack.http.post("/api/v1/alerts/alertmanager", json=alert, headers=monitor)
    assert named.status_code == 422 and "alertname" in named.text
    assert stack.campaign(cid)["status"] == "running"
    strange = "id with spaces <b>;" + "x" * 80
    odd = stack.http.get("/api/v1/whoami", headers={**admin, "X-Request-ID": strange})
    assert odd.headers["x-request-id"] != strange and len(odd.headers["x-request-id"]) == 32
