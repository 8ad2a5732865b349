"""The Twilio back end end to end: ``TwilioProvider`` places calls at a local Twilio
(:mod:`tests.support.twilio_fake`, every request checked against Twilio's OpenAPI
description), the fake plays each call's life and posts signed status callbacks to the real
control API, which writes them through ``record_events``.

One control API (PostgreSQL, no loops) and one fake serve the whole module; each test
makes its own campaign, with its own numbers (the fake's scripts are chosen by number).
The attempts are put in ``dialing`` directly, as the worker's dial path leaves them just
before it places the call.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import insert, select, update

from shared.callbacks import TWILIO_STATUS_PATH
from shared.calls import CallEvent
from shared.models import Attempt, Contact, utcnow
from shared.states import CallOutcome, Hangup
from tests.support.stack import TestStack, free_port, phones, wait_for
from tests.support.twilio_fake import DescriptionUnavailable, Life, TwilioFake
from worker.provider import CallRequest, Placed
from worker.twilio import TWIML, TwilioProvider, call_bounds

SID = "AC" + "5" * 32
TOKEN = "twilio-test-auth-token-0123456789"
CALLER_ID = "+15005550006"
RING_TIMEOUT = 5.0
MAX_SECONDS = 60.0


class Env:
    def __init__(self, stack: TestStack, fake: TwilioFake) -> None:
        self.stack = stack
        self.fake = fake
        self.reported: list[CallEvent] = []
        self.provider = TwilioProvider(stack.settings, self.reported.append)
        assert stack.settings.twilio_callback_url is not None
        self.callback = stack.settings.twilio_callback_url

    @property
    def sessions(self) -> Any:
        assert self.stack.stack is not None
        return self.stack.stack.control.sessions

    def dialing(self, phones: list[str]) -> tuple[int, list[tuple[int, int, str]]]:
        """A running campaign calling ``phones``: its id and, per number, an attempt in
        ``dialing`` (attempt id, contact id, phone)."""
        c = self.stack.api("POST", "/campaigns", expect=201, json={"name": "twilio"})
        cid = int(c["id"])
        rows = [{"phone": p} for p in phones]
        self.stack.api("POST", f"/campaigns/{cid}/contacts", json={"contacts": rows})
        self.stack.act(cid, "start")
        made = []
        with self.sessions.begin() as s:
            for contact_id, phone in s.execute(
                select(Contact.id, Contact.phone).where(Contact.campaign_id == cid)
            ):
                s.execute(update(Contact).where(Contact.id == contact_id).values(state="dialing"))
                attempt_id = s.scalar(
                    insert(Attempt)
                    .values(
                        campaign_id=cid,
                        contact_id=contact_id,
                        state="dialing",
                        worker_id="test",
                        started_at=utcnow(),
                    )
                    .returning(Attempt.id)
                )
                made.append((int(attempt_id), int(contact_id), str(phone)))
        return cid, sorted(made, key=lambda m: phones.index(m[2]))

    def place(self, cid: int, attempt: tuple[int, int, str], detect: bool = False) -> Placed:
        attempt_id, contact_id, phone = attempt
        return self.provider.place(
            CallRequest(
                campaign_id=cid,
                contact_id=contact_id,
                attempt_id=attempt_id,
                phone=phone,
                worker_id="test",
                gate_version=1,
                max_seconds=MAX_SECONDS,
                machine_detection=detect,
            )
        )

    def row(self, attempt_id: int) -> dict[str, Any]:
        with self.sessions() as s:
            a = s.get(Attempt, attempt_id)
            assert a is not None
            contact = s.get(Contact, a.contact_id)
            assert contact is not None
            cols = [c.key for c in Attempt.__table__.columns]
            return {**{k: getattr(a, k) for k in cols}, "contact": contact.state}

    def ended(self, attempt_id: int, timeout: float = 5.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            r = self.row(attempt_id)
            return r if r["state"] == "ended" else None

        found: dict[str, Any] = wait_for(done, timeout, f"attempt {attempt_id} to end")
        return found

    def created(self, phone: str) -> dict[str, Any]:
        """The create-call request the fake received for ``phone``."""
        (call,) = [c for c in self.fake.calls.values() if c.params["To"] == phone]
        return call.params

    def callbacks_of(self, attempt_id: int) -> list[Any]:
        url = f"{self.callback}?attempt={attempt_id}"
        return [cb for cb in self.fake.callbacks if cb.url == url]

    def post(self, attempt_id: int, params: dict[str, str], headers: dict[str, str]) -> Any:
        return httpx.post(
            f"{self.callback}?attempt={attempt_id}", data=params, headers=headers, timeout=10
        )

    def assert_clean(self) -> None:
        """The fake refused nothing, and the back end reported nothing itself."""
        assert self.fake.errors == []
        assert self.reported == []


@pytest.fixture(scope="module")
def env(services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    try:
        fake = TwilioFake(SID, TOKEN).start()
    except DescriptionUnavailable as exc:
        pytest.skip(str(exc))
    port = free_port()
    stack = TestStack(
        Path(tmp_path_factory.mktemp("twilio")),
        "postgres",
        http_port=port,
        url=f"http://127.0.0.1:{port}",
        provider="twilio",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from=CALLER_ID,
        twilio_callback_url=f"http://127.0.0.1:{port}{TWILIO_STATUS_PATH}",
        twilio_api_url=fake.url,
        sip_ring_timeout=RING_TIMEOUT,
        max_call_seconds=MAX_SECONDS,
    )
    e: Env | None = None
    try:
        stack.start(loops=False)
        e = Env(stack, fake)
        yield e
    finally:
        if e is not None:
            e.provider.close()
        fake.close()
        stack.close()


def test_an_answered_call_lives_its_whole_life_and_a_repeated_callback_changes_nothing(env):
    phone = "+33620000001"
    env.fake.script(phone, Life.ANSWERED, ring_s=0.3, talk_s=0.6)
    cid, [attempt] = env.dialing([phone])
    placed = env.place(cid, attempt)
    assert placed.accepted and placed.outcome == CallOutcome.ACCEPTED
    assert placed.provider_call_id in env.fake.calls
    assert env.provider.live() == 1

    row = env.ended(attempt[0])
    assert (row["disposition"], row["contact"]) == ("answered", "done")
    assert row["provider_call_id"] == placed.provider_call_id
    assert row["outcome"] == "accepted"  # from the initiated callback
    assert row["sip_code"] == 200
    assert 250 <= row["ring_ms"] < 3000, row
    assert 550 <= row["talk_ms"] < 3000, row

    ring, limit = call_bounds(MAX_SECONDS, RING_TIMEOUT)
    sent = env.created(phone)
    assert sent["To"] == phone and sent["From"] == CALLER_ID and sent["Twiml"] == TWIML
    assert sent["StatusCallback"] == f"{env.callback}?attempt={attempt[0]}"
    assert sent["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert sent["StatusCallbackMethod"] == "POST"
    assert (int(sent["Timeout"]), int(sent["TimeLimit"])) == (ring, limit) == (5, 55)
    assert "MachineDetection" not in sent
    callbacks = env.callbacks_of(attempt[0])
    statuses = [cb.params["CallStatus"] for cb in callbacks]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert [cb.status_code for cb in callbacks] == [200] * 4

    # Twilio retries and duplicates: every callback again, in any order, changes nothing.
    for cb in reversed(callbacks):
        again = env.post(attempt[0], cb.params, {"X-Twilio-Signature": cb.signature})
        assert again.status_code == 200, again.text
        assert [a["applied"] for a in again.json()["applied"]] == [False]
    assert env.row(attempt[0]) == row
    env.assert_clean()


def test_busy_no_answer_and_failed_calls_end_so_with_their_sip_codes(env):
    phones = ["+33620000011", "+33620000012", "+33620000013"]
    env.fake.script(phones[0], Life.BUSY, ring_s=0.1)
    env.fake.script(phones[1], Life.NO_ANSWER, ring_s=0.2)
    env.fake.script(phones[2], Life.FAILED, sip=404, error="13224")
    cid, attempts = env.dialing(phones)
    for a in attempts:
        assert env.place(cid, a).accepted
    busy, no_answer, failed = (env.ended(a[0]) for a in attempts)
    assert (busy["disposition"], busy["sip_code"], busy["contact"]) == ("busy", 486, "failed")
    assert (no_answer["disposition"], no_answer["contact"]) == ("no_answer", "failed")
    assert no_answer["answered_at"] is None and no_answer["talk_ms"] is None
    assert (failed["disposition"], failed["sip_code"], failed["error_code"]) == (
        "failed",
        404,
        "13224",
    )
    assert failed["ringing_at"] is None
    env.assert_clean()


def test_machine_detection_is_asked_for_and_a_machine_ends_the_call_as_machine(env):
    phones = ["+33620000021", "+33620000022"]
    env.fake.script(phones[0], Life.MACHINE, ring_s=0.1, talk_s=0.1)
    env.fake.script(phones[1], Life.ANSWERED, ring_s=0.1, talk_s=0.1)
    cid, attempts = env.dialing(phones)
    for a in attempts:
        assert env.place(cid, a, detect=True).accepted
    machine, person = (env.ended(a[0]) for a in attempts)
    assert all(env.created(p)["MachineDetection"] == "Enable" for p in phones)
    assert (machine["disposition"], machine["contact"]) == ("machine", "done")
    assert person["disposition"] == "answered"
    env.assert_clean()


def test_a_ringing_hang_up_cancels_the_campaigns_calls_and_all_ends_the_rest(env):
    ours, theirs = "+33620000031", "+33620000032"
    for p in (ours, theirs):
        env.fake.script(p, Life.RING)
    cid, [mine] = env.dialing([ours])
    other, [their] = env.dialing([theirs])
    assert env.place(cid, mine).accepted and env.place(other, their).accepted
    wait_for(lambda: env.row(mine[0])["state"] == "ringing", 5, "our call to ring")
    before = env.provider.live()

    assert env.provider.hang_up(cid, Hangup.RINGING) == 1
    row = env.ended(mine[0])
    assert (row["disposition"], row["contact"]) == ("canceled", "failed")
    assert env.fake.calls[str(row["provider_call_id"])].status == "canceled"
    assert env.row(their[0])["state"] in ("dialing", "ringing")  # another campaign's: alive
    assert env.provider.live() == before  # a cancel may leave a call up: still remembered

    asked = env.provider.hang_up(None, Hangup.ALL)
    assert asked == before
    assert env.ended(their[0])["disposition"] == "canceled"  # not answered yet: canceled
    assert env.provider.live() == 0
    assert env.provider.hang_up(None, Hangup.ALL) == 0
    sids = {env.row(a[0])["provider_call_id"] for a in (mine, their)}
    updates = [
        (path.rsplit("/", 1)[1].removesuffix(".json"), dict(form)["Status"])
        for _, path, form in env.fake.requests
        if "/Calls/" in path and path.rsplit("/", 1)[1].removesuffix(".json") in sids
    ]
    assert sorted(s for _, s in updates) == ["canceled", "completed", "completed"], updates
    env.assert_clean()


def test_a_callback_without_twilios_signature_is_refused_and_changes_nothing(env):
    _, [attempt] = env.dialing(["+33620000041"])
    url = f"{env.callback}?attempt={attempt[0]}"
    params = {"AccountSid": SID, "CallSid": "CA" + "1" * 32, "CallStatus": "busy"}
    before = env.row(attempt[0])
    signed = env.fake.sign(url, params)
    # Signed for the URL the request arrives on rather than the configured one (a proxy in
    # front of the API, a forger guessing): the same request is refused.
    local = f"http://localhost:{env.stack.settings.http_port}{TWILIO_STATUS_PATH}"
    elsewhere = env.fake.sign(f"{local}?attempt={attempt[0]}", params)
    for headers in (
        {},
        {"X-Twilio-Signature": ""},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"X-Twilio-Signature": elsewhere},
        {"X-Twilio-Signature": env.fake.sign(url, {**params, "CallStatus": "completed"})},
    ):
        r = env.post(attempt[0], params, headers)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["message"].startswith("missing or wrong X-Twilio-Signature")
    # A control service without the auth token takes no callback at all, signed or not.
    assert env.stack.stack is not None
    settings = env.stack.stack.control.settings
    token, settings.twilio_auth_token = settings.twilio_auth_token, None
    try:
        r = env.post(attempt[0], params, {"X-Twilio-Signature": signed})
    finally:
        settings.twilio_auth_token = token
    assert r.status_code == 403, r.text
    assert "set DIALGATE_TWILIO_AUTH_TOKEN" in r.json()["error"]["message"]
    assert env.row(attempt[0]) == before
    # The same callback, signed as Twilio signs it, is taken.
    ok = env.post(attempt[0], params, {"X-Twilio-Signature": signed})
    assert ok.status_code == 200, ok.text
    assert env.row(attempt[0])["disposition"] == "busy"
    env.assert_clean()


def test_a_callback_for_an_attempt_that_does_not_exist_is_404_and_stores_nothing(env):
    missing = 2**62
    url = f"{env.callback}?attempt={missing}"
    params = {"AccountSid": SID, "CallSid": "CA" + "2" * 32, "CallStatus": "completed"}
    r = env.post(missing, params, {"X-Twilio-Signature": env.fake.sign(url, params)})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["message"] == f"attempt {missing} does not exist"
    with env.sessions() as s:
        assert s.get(Attempt, missing) is None
    env.assert_clean()


def test_refused_credentials_are_an_auth_error_and_an_unreachable_twilio_a_provider_error(
    env,
):
    cid, [attempt] = env.dialing(["+33620000051"])
    wrong = env.stack.settings.model_copy(update={"twilio_auth_token": SecretStr("not-it")})
    provider = TwilioProvider(wrong, env.reported.append)
    try:
        refused = provider.place(_request(cid, attempt))
    finally:
        provider.close()
    assert (refused.accepted, refused.outcome) == (False, CallOutcome.AUTH_ERROR)
    assert refused.error is not None and refused.error.startswith("20003 ")
    assert provider.live() == 0

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    away = TwilioProvider(
        env.stack.settings.model_copy(update={"twilio_api_url": dead}), env.reported.append
    )
    try:
        started = time.monotonic()
        unreachable = away.place(_request(cid, attempt))
    finally:
        away.close()
    assert (unreachable.accepted, unreachable.outcome) == (False, CallOutcome.PROVIDER_ERROR)
    assert unreachable.error is not None and unreachable.error.startswith("Twilio unreachable")
    assert time.monotonic() - started < 5
    assert env.row(attempt[0])["state"] == "dialing"  # nothing was called
    env.assert_clean()


def _request(cid: int, attempt: tuple[int, int, str]) -> CallRequest:
    attempt_id, contact_id, phone = attempt
    return CallRequest(cid, contact_id, attempt_id, phone, "test", 1, MAX_SECONDS)


def test_a_real_worker_dials_through_twilio_and_the_callbacks_settle_each_contact(env, make_stack):
    """The whole path: feeder, a ``python -m worker`` with ``DIALGATE_PROVIDER=twilio``,
    the fake, the status callbacks, the campaign completed."""
    port = free_port()
    stack: TestStack = make_stack(
        http_port=port,
        url=f"http://127.0.0.1:{port}",
        provider="twilio",
        twilio_account_sid=SID,
        twilio_auth_token=TOKEN,
        twilio_from=CALLER_ID,
        twilio_callback_url=f"http://127.0.0.1:{port}{TWILIO_STATUS_PATH}",
        twilio_api_url=env.fake.url,
        sip_ring_timeout=RING_TIMEOUT,
        max_call_seconds=MAX_SECONDS,
    ).start()
    answered, busy = phones(2)  # numbers no other test of this module calls
    env.fake.script(answered, Life.ANSWERED, ring_s=0.1, talk_s=0.2)
    env.fake.script(busy, Life.BUSY, ring_s=0.1)
    stack.start_worker(threads=2)
    cid = stack.make_campaign(contacts=2, max_concurrency=2)
    stack.wait_status(cid, "completed", timeout=30)

    got = {a["phone"]: a for a in stack.api("GET", f"/campaigns/{cid}/attempts")["attempts"]}
    assert set(got) == {answered, busy}
    assert got[answered]["disposition"] == "answered" and got[busy]["disposition"] == "busy"
    assert {a["outcome"] for a in got.values()} == {"accepted"}
    assert got[busy]["sip_code"] == 486 and got[answered]["talk_ms"] is not None
    assert stack.calls() == []  # the simulated provider's witness: it placed nothing
    sids = {c.sid for c in env.fake.calls.values() if c.params["To"] in (answered, busy)}
    assert len(sids) == 2  # one create-call request per contact, never repeated
    assert env.fake.errors == []
