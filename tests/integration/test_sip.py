"""The SIP back end (worker/sip.py) against a real far end: SIPp running tests/sipp/uas.xml.

Every outcome the far end can give (answer, busy, decline, errors, ringing until
cancelled, a digest challenge, silence), our own hang-ups (ring timeout, hang_up, the
call's bound), and what reached the far end, read from SIPp's own message trace. Short
timers (T1 of 0.05-0.1 s) keep the file quick.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.calls import CallEvent
from shared.settings import Settings
from shared.states import CallEventKind, CallOutcome, Disposition, Hangup
from tests.support.sipp import PASSWORD, USER, Call, Sipp, available, number, running_sipp
from worker import sip_messages as sm
from worker.provider import CallRequest, Placed
from worker.sip import SipProvider

pytestmark = pytest.mark.skipif(
    not available(), reason="/usr/bin/sipp is missing (apt-get install sip-tester)"
)

TALK_MS, RING_MS, SLOW_MS = 200, 50, 400


@pytest.fixture(scope="module")
def far_end(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipp]:
    with running_sipp(
        tmp_path_factory.mktemp("sipp"), talk_ms=TALK_MS, ring_ms=RING_MS, slow_ms=SLOW_MS
    ) as sipp:
        yield sipp


class Events:
    """What the provider reported, by attempt, with the monotonic time it arrived."""

    def __init__(self) -> None:
        self.seen: dict[int, list[tuple[float, CallEvent]]] = {}
        self.cond = threading.Condition()
        self.threads: set[str] = set()

    def __call__(self, event: CallEvent) -> None:
        with self.cond:
            self.seen.setdefault(event.attempt_id, []).append((time.monotonic(), event))
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def kinds(self, attempt: int) -> list[str]:
        with self.cond:
            return [e.kind.value for _, e in self.seen.get(attempt, [])]

    def wait(self, attempt: int, kind: CallEventKind, timeout: float = 5.0) -> CallEvent:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for _, e in self.seen.get(attempt, []):
                    if e.kind == kind:
                        return e
                left = deadline - time.monotonic()
                assert left > 0, f"attempt {attempt}: no {kind.value} in {timeout}s: {self.seen}"
                self.cond.wait(left)

    def at(self, attempt: int, kind: CallEventKind) -> float:
        with self.cond:
            return next(t for t, e in self.seen[attempt] if e.kind == kind)


def settings(far_end: Sipp | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "provider": "sip",
        "sip_target": far_end.target if far_end else "sip:{phone}@127.0.0.1:9",
        "sip_bind": "127.0.0.1:0",
        "sip_ring_timeout": 5.0,
    }
    return Settings(**(values | overrides))


def call(attempt: int, phone: str, campaign: int = 7, max_seconds: float = 10.0) -> CallRequest:
    return CallRequest(campaign, attempt, attempt, phone, "w1", 3, max_seconds)


def far_call(far_end: Sipp, placed: Placed) -> Call:
    """The far end's record of a placed call, once it is done with it."""
    call_id = placed.provider_call_id or ""
    return far_end.log.settled([call_id])[call_id]


@pytest.fixture
def events() -> Events:
    return Events()


def test_every_far_end_outcome_ends_once_with_its_disposition_and_code(
    far_end: Sipp, events: Events
) -> None:
    provider = SipProvider(settings(far_end), events, t1=0.1)
    cases = {
        1001: ("answer", Disposition.ANSWERED, 200),
        1002: ("busy", Disposition.BUSY, 486),
        1003: ("busy_everywhere", Disposition.BUSY, 600),
        1004: ("decline", Disposition.DECLINED, 603),
        1005: ("error", Disposition.FAILED, 500),
        1006: ("unknown", Disposition.FAILED, 404),
        1007: ("auth", Disposition.FAILED, 401),  # no credentials set
    }
    try:
        placed = {a: provider.place(call(a, number(o, a))) for a, (o, _, _) in cases.items()}
        assert all(p.accepted and p.outcome == CallOutcome.ACCEPTED for p in placed.values())
        ended = {a: events.wait(a, CallEventKind.ENDED) for a in cases}
        assert provider.live() == 0
    finally:
        provider.close()
    for attempt, (_, disposition, code) in cases.items():
        assert (ended[attempt].disposition, ended[attempt].sip_code) == (disposition, code)
    assert events.kinds(1001) == ["ringing", "answered", "ended"]
    ring = events.at(1001, CallEventKind.ANSWERED) - events.at(1001, CallEventKind.RINGING)
    talk = events.at(1001, CallEventKind.ENDED) - events.at(1001, CallEventKind.ANSWERED)
    assert ring >= RING_MS / 1000 * 0.8 and talk >= TALK_MS / 1000 * 0.8
    assert all(events.kinds(a) == ["ended"] for a in (1002, 1003, 1004, 1005, 1006, 1007))
    assert events.threads == {"sip-engine"}

    calls = far_end.log.settled([p.provider_call_id or "" for p in placed.values()])
    invites = {i.attempt: i for i in far_end.log.invites() if i.attempt in cases}
    assert set(invites) == set(cases)
    for attempt, invite in invites.items():
        assert placed[attempt].provider_call_id == invite.call_id
        assert invite.campaign == 7
        assert invite.number == number(cases[attempt][0], attempt)  # the + kept
        for name, value in [("user-agent", "dialgate"), ("max-forwards", "70")]:
            assert invite.headers[name] == [value]
        assert invite.headers["contact"][0].startswith("<sip:dialgate@127.0.0.1:")
        assert invite.headers["content-type"] == ["application/sdp"]
        # the far end had its ACK: for a refusal in the INVITE's transaction (its branch)
        inv, ack = calls[invite.call_id].starts("INVITE")[0], calls[invite.call_id].starts("ACK")
        assert len(ack) == 1
        assert (ack[0].branch == inv.branch) == (attempt != 1001)
    # the far end's BYE was answered
    answered = calls[invites[1001].call_id]
    assert [m.sent for m in answered.starts("BYE")] == [True]
    assert answered.messages[-1].start == "SIP/2.0 200 OK" and not answered.messages[-1].sent


def test_ring_timeout_cancels_at_a_fraction_of_a_second(far_end: Sipp, events: Events) -> None:
    provider = SipProvider(settings(far_end, sip_ring_timeout=0.3), events, t1=0.1)
    try:
        start = time.monotonic()
        placed = provider.place(call(2001, number("ring", 2001)))
        ended = events.wait(2001, CallEventKind.ENDED)
        took = events.at(2001, CallEventKind.ENDED) - start
    finally:
        provider.close()
    assert (ended.disposition, ended.sip_code) == (Disposition.NO_ANSWER, 487)
    assert 0.3 <= took < 0.8
    assert events.kinds(2001) == ["ringing", "ended"]
    far = far_call(far_end, placed)
    assert [m.start.split()[0] for m in far.messages if not m.sent] == ["INVITE", "CANCEL", "ACK"]
    assert far.starts("SIP/2.0 487")[0].time < far.starts("ACK")[0].time


def test_hang_up_ringing_then_all(far_end: Sipp, events: Events) -> None:
    provider = SipProvider(settings(far_end), events, t1=0.1)
    try:
        provider.place(call(3001, number("ring", 3001), campaign=1))
        provider.place(call(3002, number("ring", 3002), campaign=2))
        answered = provider.place(call(3003, number("answer_wait", 3003), campaign=1))
        events.wait(3001, CallEventKind.RINGING)
        events.wait(3002, CallEventKind.RINGING)
        events.wait(3003, CallEventKind.ANSWERED)
        assert provider.live() == 3
        assert provider.hang_up(1, Hangup.NONE) == 0
        assert provider.hang_up(1, Hangup.RINGING) == 1
        first = events.wait(3001, CallEventKind.ENDED)
        assert (first.disposition, first.sip_code) == (Disposition.CANCELED, 487)
        time.sleep(0.1)
        assert events.kinds(3003) == ["ringing", "answered"] and provider.live() == 2
        assert provider.hang_up(None, Hangup.ALL) == 2
        second = events.wait(3002, CallEventKind.ENDED)
        third = events.wait(3003, CallEventKind.ENDED)
        assert provider.live() == 0
    finally:
        provider.close()
    assert second.disposition == Disposition.CANCELED
    assert (third.disposition, third.sip_code) == (Disposition.ANSWERED, 200)
    far = far_call(far_end, answered)
    bye = far.starts("BYE")
    assert len(bye) == 1 and not bye[0].sent and bye[0].cseq == (2, "BYE")
    assert far.messages[-1].start == "SIP/2.0 200 OK" and far.messages[-1].sent


def test_the_calls_bound_ends_it_answered_or_not(far_end: Sipp, events: Events) -> None:
    provider = SipProvider(settings(far_end), events, t1=0.1)
    try:
        start = time.monotonic()
        provider.place(call(4001, number("answer_wait", 4001), max_seconds=0.4))
        provider.place(call(4002, number("ring", 4002), max_seconds=0.3))
        up = events.wait(4001, CallEventKind.ENDED)
        rang = events.wait(4002, CallEventKind.ENDED)
    finally:
        provider.close()
    assert (up.disposition, up.sip_code) == (Disposition.ANSWERED, 200)
    assert (rang.disposition, rang.sip_code) == (Disposition.NO_ANSWER, 487)
    assert 0.4 <= events.at(4001, CallEventKind.ENDED) - start < 0.9
    assert 0.3 <= events.at(4002, CallEventKind.ENDED) - start < 0.8


def test_digest_challenge_is_answered_once(far_end: Sipp, events: Events) -> None:
    good = SipProvider(settings(far_end, sip_username=USER, sip_password=PASSWORD), events)
    bad = SipProvider(settings(far_end, sip_username=USER, sip_password="wrong"), events)
    try:
        placed = good.place(call(5001, number("auth", 5001)))
        bad.place(call(5002, number("auth", 5002)))
        events.wait(5001, CallEventKind.ANSWERED)
        refused = events.wait(5002, CallEventKind.ENDED)
        assert good.hang_up(None, Hangup.ALL) == 1
        ended = events.wait(5001, CallEventKind.ENDED)
    finally:
        good.close()
        bad.close()
    assert (ended.disposition, ended.sip_code) == (Disposition.ANSWERED, 200)
    assert (refused.disposition, refused.sip_code) == (Disposition.FAILED, 403)
    far = far_call(far_end, placed)
    first, second = far.starts("INVITE")
    assert (first.cseq, second.cseq) == ((1, "INVITE"), (2, "INVITE"))
    assert first.header("from") == second.header("from") and first.branch != second.branch
    auth = second.header("authorization") or ""
    assert auth.startswith("Digest ") and "qop=auth" in auth and "nc=00000001" in auth
    assert f'username="{USER}"' in auth and 'opaque="op4"' in auth


def test_silence_is_retransmitted_and_times_out(far_end: Sipp, events: Events) -> None:
    provider = SipProvider(settings(far_end), events, t1=0.05)
    dead = SipProvider(
        settings(None, sip_target=f"sip:{{phone}}@127.0.0.1:{_dead_port()}"), events, t1=0.02
    )
    try:
        placed = provider.place(call(6001, number("slow", 6001)))
        start = time.monotonic()
        dead.place(call(6002, "+4930999000001"))
        events.wait(6001, CallEventKind.ANSWERED)
        timeout = events.wait(6002, CallEventKind.ENDED)
        took = events.at(6002, CallEventKind.ENDED) - start
        provider.hang_up(None, Hangup.ALL)
        events.wait(6001, CallEventKind.ENDED)
    finally:
        provider.close()
        dead.close()
    (invite,) = [i for i in far_end.log.invites() if i.call_id == placed.provider_call_id]
    # T1 = 50 ms: sent at 0, 0.05, 0.15, 0.35 s before the far end's 400 ms of silence end
    assert 3 <= invite.copies <= 5
    assert (timeout.disposition, timeout.sip_code, timeout.error) == (
        Disposition.FAILED,
        None,
        "timeout",
    )
    assert 64 * 0.02 <= took < 64 * 0.02 + 0.5


def test_cancel_waits_for_a_provisional_and_a_crossing_200_is_byed(
    far_end: Sipp, events: Events
) -> None:
    provider = SipProvider(settings(far_end), events, t1=0.1)
    try:
        placed = provider.place(call(7001, number("race", 7001)))
        assert provider.hang_up(7, Hangup.RINGING) == 1  # nothing heard yet: CANCEL waits
        ended = events.wait(7001, CallEventKind.ENDED)
    finally:
        provider.close()
    assert ended.disposition == Disposition.CANCELED and ended.sip_code == 200
    assert events.kinds(7001) == ["ended"]
    far = far_call(far_end, placed)
    assert far.starts("CANCEL")[0].time >= far.starts("SIP/2.0 180")[0].time
    received = [m.start.split()[0] for m in far.messages if not m.sent and "INVITE" not in m.start]
    assert received == ["CANCEL", "ACK", "BYE"]


def test_requests_outside_our_calls_are_answered(events: Events) -> None:
    provider = SipProvider(settings(None), events, t1=0.1)
    host, port = provider.bound
    answers = {}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.settimeout(2)
            for method in ("OPTIONS", "BYE", "INVITE", "ACK"):
                headers = [
                    ("Via", f"SIP/2.0/UDP 127.0.0.1:{peer.getsockname()[1]};branch={sm.branch()}"),
                    ("From", f"<sip:peer@127.0.0.1>;tag={sm.tag()}"),
                    ("To", "<sip:dialgate@127.0.0.1>" + (";tag=x1" if method == "BYE" else "")),
                    ("Call-ID", sm.call_id("peer")),
                    ("CSeq", f"1 {method}"),
                ]
                peer.sendto(
                    sm.request(method, f"sip:dialgate@{host}:{port}", headers), (host, port)
                )
                if method != "ACK":
                    answers[method] = sm.parse(peer.recv(65535))
            with pytest.raises(socket.timeout):
                peer.settimeout(0.2)
                peer.recv(65535)  # nothing answers an ACK
    finally:
        provider.close()
    assert answers["OPTIONS"].code == 200 and "BYE" in answers["OPTIONS"].get_all("Allow")
    assert answers["BYE"].code == 481
    assert answers["INVITE"].code == 603


def test_fifty_calls_live_on_one_thread(far_end: Sipp, events: Events) -> None:
    provider = SipProvider(settings(far_end), events, t1=0.1)
    threads = threading.active_count()
    attempts = range(8000, 8050)
    since = time.time()
    try:
        placed = [provider.place(call(a, number("answer", a))) for a in attempts]
        assert all(p.accepted for p in placed)
        assert threading.active_count() == threads
        for a in attempts:
            events.wait(a, CallEventKind.ANSWERED)
        assert provider.live() == 50 and threading.active_count() == threads
        ended = [events.wait(a, CallEventKind.ENDED) for a in attempts]
    finally:
        provider.close()
    assert all(e.disposition == Disposition.ANSWERED for e in ended)
    assert all(events.kinds(a) == ["ringing", "answered", "ended"] for a in attempts)
    log = far_end.log
    log.settled([p.provider_call_id or "" for p in placed])
    invites = log.invites_after(since)
    assert sorted(i.attempt or 0 for i in invites) == list(attempts)
    assert all(len(v) == 1 for v in log.invites_by_number().values())
    assert log.max_invites_per_second() >= 50
    assert log.max_concurrent_calls() >= 50


def test_a_bad_target_is_refused_at_placement(events: Events) -> None:
    provider = SipProvider(settings(None, sip_target="sip:{phone}@127.0.0.1:70000"), events)
    try:
        refused = provider.place(call(9001, "+4930200000001"))
        odd = provider.place(call(9002, "+49 30\r\nX: 1"))
    finally:
        provider.close()
    tls = SipProvider(settings(None, sip_target="sips:{phone}@127.0.0.1"), events)
    try:
        secure = tls.place(call(9003, "+4930200000001"))
    finally:
        tls.close()
    assert not secure.accepted and "TLS" in (secure.error or "")
    assert not refused.accepted and refused.outcome == CallOutcome.PROVIDER_ERROR
    assert "DIALGATE_SIP_TARGET" in (refused.error or "")
    assert not odd.accepted and "E.164" in (odd.error or "")
    assert events.seen == {}


def _dead_port() -> int:
    """A loopback UDP port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Peer:
    """A scripted far end on a plain UDP socket, for what SIPp's scenario does not do:
    challenge twice, retransmit its final responses, send requests inside the dialog."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2)
        self.port = int(self.sock.getsockname()[1])
        self.target = f"sip:{{phone}}@127.0.0.1:{self.port}"
        self.uac: tuple[str, int] = ("", 0)

    def recv(self, method: str) -> sm.SipMessage:
        """The next request of ``method`` (anything else, e.g. a retransmission, skipped)."""
        while True:
            data, self.uac = self.sock.recvfrom(65535)
            msg = sm.parse(data)
            if msg.method == method:
                return msg

    def answer(self, data: bytes) -> sm.SipMessage:
        """Send a request to the UAC and read its response."""
        self.sock.sendto(data, self.uac)
        while True:
            msg = sm.parse(self.sock.recv(65535))
            if not msg.is_request:
                return msg

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.uac)

    def close(self) -> None:
        self.sock.close()


def test_a_second_challenge_fails_and_a_retransmitted_refusal_is_acked_again(
    events: Events,
) -> None:
    peer = Peer()
    provider = SipProvider(
        settings(None, sip_target=peer.target, sip_username="u", sip_password="p"), events, t1=0.1
    )
    challenge = [("Proxy-Authenticate", 'Digest realm="trunk", nonce="n1"')]
    try:
        provider.place(call(9101, "+4930555000001"))
        first = peer.recv("INVITE")
        refusal = sm.response(first, 407, "Proxy Authentication Required", "pt", challenge)
        peer.send(refusal)
        ack = peer.recv("ACK")
        second = peer.recv("INVITE")
        peer.send(sm.response(second, 407, "Proxy Authentication Required", "pt", challenge))
        peer.recv("ACK")
        ended = events.wait(9101, CallEventKind.ENDED)
        peer.send(refusal)  # the first 407 again, as if our ACK was lost
        again = peer.recv("ACK")
    finally:
        provider.close()
        peer.close()
    assert (ended.disposition, ended.sip_code) == (Disposition.FAILED, 407)
    assert ack.cseq == (1, "ACK") and ack.uri == first.uri
    assert sm.param(ack.get("Via") or "", "branch") == sm.param(first.get("Via") or "", "branch")
    assert sm.param(ack.get("To") or "", "tag") == "pt"
    assert second.cseq == (2, "INVITE") and second.call_id == first.call_id
    assert second.get("From") == first.get("From") and second.get("Authorization") is None
    proof = second.get("Proxy-Authorization") or ""
    assert 'realm="trunk"' in proof and 'username="u"' in proof and "qop" not in proof
    assert again.cseq == (1, "ACK")


def test_the_dialog_acks_every_2xx_and_answers_the_far_ends_requests(events: Events) -> None:
    peer = Peer()
    provider = SipProvider(settings(None, sip_target=peer.target), events, t1=0.1)
    answers = {}
    try:
        provider.place(call(9201, "+4930555000002"))
        invite = peer.recv("INVITE")
        peer.send(sm.response(invite, 180, "Ringing", "pt"))
        contact = [("Contact", f"<sip:far@127.0.0.1:{peer.port}>")]
        ok = sm.response(invite, 200, "OK", "pt", contact)
        peer.send(ok)
        ack = peer.recv("ACK")
        peer.send(ok)  # a retransmitted 200: ACKed again
        ack_again = peer.recv("ACK")
        to = sm.parse(ok).get("To") or ""
        for n, method in enumerate(["OPTIONS", "INFO", "INVITE", "BYE", "BYE"], start=1):
            headers = [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{peer.port};branch={sm.branch()}"),
                ("From", to),
                ("To", invite.get("From") or ""),
                ("Call-ID", invite.call_id),
                ("CSeq", f"{n if n < 5 else 4} {method}"),
            ]
            answers[n] = peer.answer(sm.request(method, invite.get("Contact") or "", headers))
        ended = events.wait(9201, CallEventKind.ENDED)
    finally:
        provider.close()
        peer.close()
    assert events.kinds(9201) == ["ringing", "answered", "ended"]
    assert (ended.disposition, ended.sip_code) == (Disposition.ANSWERED, 200)
    assert ack.uri == f"sip:far@127.0.0.1:{peer.port}" and ack.cseq == (1, "ACK")
    assert sm.param(ack.get("Via") or "", "branch") != sm.param(invite.get("Via") or "", "branch")
    assert ack_again.cseq == (1, "ACK")
    assert [answers[n].code for n in range(1, 6)] == [200, 405, 488, 200, 200]
    assert "INVITE" in answers[2].get_all("Allow")


def test_close_ends_every_call_once_even_when_the_far_end_is_gone(
    far_end: Sipp, events: Events
) -> None:
    peer = Peer()  # takes the INVITE and never answers: no CANCEL can be sent
    provider = SipProvider(settings(far_end), events, t1=0.1)
    silent = SipProvider(settings(None, sip_target=peer.target), events, t1=0.1)
    try:
        provider.place(call(9301, number("ring", 9301)))
        provider.place(call(9302, number("answer_wait", 9302)))
        silent.place(call(9303, "+4930555000003"))
        events.wait(9301, CallEventKind.RINGING)
        events.wait(9302, CallEventKind.ANSWERED)
        peer.recv("INVITE")
        start = time.monotonic()
        provider.close()
        silent.close()
        took = time.monotonic() - start
    finally:
        peer.close()
    ended = {a: events.wait(a, CallEventKind.ENDED, 0) for a in (9301, 9302, 9303)}
    assert ended[9301].disposition == Disposition.CANCELED and ended[9301].sip_code == 487
    assert ended[9302].disposition == Disposition.ANSWERED
    assert (ended[9303].disposition, ended[9303].error) == (Disposition.CANCELED, "engine closed")
    assert all(events.kinds(a)[-1] == "ended" for a in ended) and took < 3
    assert provider.live() == silent.live() == 0
    late = silent.place(call(9304, "+4930555000004"))
    assert not late.accepted and "closed" in (late.error or "")
    assert silent.hang_up(None, Hangup.ALL) == 0


def test_answering_numbers_can_be_cancelled_while_they_ring(tmp_path: Path, events: Events) -> None:
    with running_sipp(tmp_path, ring_ms=2000) as slow_to_answer:
        provider = SipProvider(settings(slow_to_answer), events, t1=0.1)
        try:
            provider.place(call(9401, number("answer", 9401)))
            provider.place(call(9402, number("slow", 9402)))
            events.wait(9401, CallEventKind.RINGING)
            events.wait(9402, CallEventKind.RINGING)
            start = time.monotonic()
            assert provider.hang_up(None, Hangup.RINGING) == 2
            ended = [events.wait(a, CallEventKind.ENDED) for a in (9401, 9402)]
            took = time.monotonic() - start
        finally:
            provider.close()
    assert [(e.disposition, e.sip_code) for e in ended] == [(Disposition.CANCELED, 487)] * 2
    assert took < 0.5
