"""The ``sip`` back end: a small RFC 3261 user agent client over UDP that places calls on a
SIP trunk (``DIALGATE_PROVIDER=sip``).

Why not a library (looked for on PyPI and in the projects' docs): aiosip / asyncsip
(asyncio, last release 2017, "the public API is currently very unstable", no tests); the
wrappers of C stacks, pjsua2 (PJSIP), python-sipsimple, python-sip-client (baresip), bring
a media engine and threads of their own; pyVoIP, simplesip, uSIP are softphone libraries
built around RTP audio and threads. aiosipua is the closest fit
(asyncio, typed, UAC with CANCEL and digest auth), but the issue found that 0.7.1 did not
ACK the 487 that follows its own CANCEL (the far end retransmits it and the trunk holds
the call); that was not re-checked here. What dialgate needs is small (INVITE, CANCEL,
BYE, ACK, digest auth, no media), so it is written here against RFC 3261 and tested
against a real far end (SIPp, ``tests/sipp/uas.xml``).

One engine per process: one asyncio event loop in one daemon thread, one UDP socket
bound to ``DIALGATE_SIP_BIND``. A live call is a :class:`_Call` and a few timers on that
loop: no thread of its own. What happens is reported as :class:`~shared.calls.CallEvent`
from the loop's thread: ``ringing`` (first 180/183), ``answered`` (2xx), and exactly one
``ended``, with the final response's code as ``sip_code``:

- 486, 600 → ``busy``; 603 → ``declined``; any other 3xx-6xx → ``failed`` (redirects are
  not followed); no answer at all within 64·T1 (Timer B) → ``failed``, error ``timeout``;
- answered, then a BYE from either side → ``answered``;
- ringing longer than ``DIALGATE_SIP_RING_TIMEOUT`` (from placement) → CANCEL → 487 →
  ``no_answer``; the call's ``max_seconds`` (from placement) → BYE (``answered``) or
  CANCEL (``no_answer``); :meth:`SipProvider.hang_up` before answer → CANCEL →
  ``canceled`` (a 200 that crosses our CANCEL is ACKed and BYEd: still ``canceled``);
- a 401/407 is answered once with digest credentials (``DIALGATE_SIP_USERNAME`` /
  ``_PASSWORD``): the INVITE again with CSeq+1; without credentials, or challenged twice
  → ``failed`` with that code.

The Request-URI is ``DIALGATE_SIP_TARGET`` with ``{phone}`` replaced by the E.164 number
*with* its ``+`` (``sip:+493012345@trunk``; RFC 3261 allows it in the user part): the
template can add to it (``;user=phone``, a prefix) but not take the ``+`` away. UDP only:
a ``sips:`` target is refused at placement (TLS is not spoken here).
A Contact or Record-Route naming a host instead of an address is reached through the
target's address (the loop does no DNS lookups). Retransmissions: Timer A/B for INVITE,
E/F for CANCEL and BYE (T1 = ``t1``, T2 = 4 s); an ended call is kept 64·T1 to ACK a
retransmitted final response and to answer a retransmitted BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import structlog

from shared.calls import CallEvent
from shared.settings import Settings
from shared.states import CallEventKind, CallOutcome, Disposition, Hangup
from worker import sip_messages as sm
from worker.provider import CallRequest, Placed, Report, at_once

log = structlog.get_logger("dialgate.worker.sip")

T2 = 4.0  # RFC 3261's cap of a non-INVITE retransmission interval
CLOSE_WAIT_S = 2.0  # how long close() waits for the calls it hung up to end
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
BUSY = {486: Disposition.BUSY, 600: Disposition.BUSY, 603: Disposition.DECLINED}
PHONE = re.compile(r"\+?[0-9]{3,20}")
DNS_TTL_S = 60.0


@dataclass(eq=False)
class _Call:
    """One call's state, touched only on the engine's loop."""

    req: CallRequest
    call_id: str
    uri: str  # the Request-URI
    dest: tuple[str, int]  # where the INVITE (and CANCEL) go
    local: str  # our "ip:port" in Via and Contact ("[v6]:port")
    local_ip: str
    from_tag: str
    cseq: int = 1
    branch: str = ""
    invite: _Retransmit | None = None
    rung: bool = False  # a provisional arrived: a CANCEL may be sent
    ringing: bool = False  # ringing reported
    answered: bool = False
    to_header: str | None = None  # To with the far end's tag, once answered
    remote: str | None = None  # the far end's Contact (the dialog's remote target)
    routes: list[str] = field(default_factory=list)
    acks: dict[int, bytes] = field(default_factory=dict)  # the ACK sent per CSeq number
    end_as: Disposition | None = None  # we are ending it: how it ends
    cancel_sent: bool = False
    cancel: _Retransmit | None = None
    bye: _Retransmit | None = None
    auth_tried: bool = False
    sip_code: int | None = None
    ended: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class _Retransmit:
    """A request sent now, again after T1, 2·T1, 4·T1 … (at most ``cap`` apart) until
    :meth:`stop`; ``on_timeout`` after 64·T1 (RFC 3261 Timers A/B and E/F)."""

    def __init__(
        self,
        engine: SipProvider,
        data: bytes,
        dest: tuple[str, int],
        cap: float,
        on_timeout: Callable[[], None],
    ) -> None:
        self.engine, self.data, self.dest, self.cap = engine, data, dest, cap
        self.every = engine.t1
        loop = engine.loop
        engine.send(data, dest)  # may raise OSError: the request never left
        self.again = loop.call_later(self.every, self._again)
        self.expire = loop.call_later(64 * engine.t1, self._expire, on_timeout)

    def _again(self) -> None:
        with contextlib.suppress(OSError):  # the next retransmission may get through
            self.engine.send(self.data, self.dest)
        self.every = min(self.every * 2, self.cap)
        self.again = self.engine.loop.call_later(self.every, self._again)

    def _expire(self, on_timeout: Callable[[], None]) -> None:
        self.stop()
        on_timeout()

    def slow_down(self) -> None:
        """A provisional to a non-INVITE request: retransmit every T2 from now on."""
        self.every = self.cap

    def stop(self) -> None:
        self.again.cancel()
        self.expire.cancel()


class SipProvider:
    """The SIP back end (:class:`worker.provider.Provider`). ``t1``: RFC 3261's round-trip
    estimate, the base of every retransmission and timeout (tests make it short)."""

    def __init__(self, settings: Settings, report: Report, *, t1: float = 0.5) -> None:
        self.settings, self.report, self.t1 = settings, report, t1
        host, port = _split_hostport(settings.sip_bind)
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = info[0]
        self.family = family
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(addr)
        self.sock.setblocking(False)
        self.bound: tuple[str, int] = self.sock.getsockname()[:2]
        password = settings.sip_password
        self.credentials = (
            (settings.sip_username, password.get_secret_value())
            if settings.sip_username and password
            else None
        )
        self.loop = asyncio.new_event_loop()
        self.calls: dict[str, _Call] = {}  # by Call-ID, ended ones for a while too
        self.open: dict[str, _Call] = {}  # placed and not yet ended
        self.closed = False
        self._dns: dict[str, tuple[float, str]] = {}
        self._local_ips: dict[str, str] = {}
        self.thread = threading.Thread(target=self._run, name="sip-engine", daemon=True)
        self.thread.start()

    # -- the Provider interface (any thread) ---------------------------------------------------
    def place(self, call: CallRequest) -> Placed:
        placed_at = time.monotonic()
        if self.closed:
            return _refused("the SIP engine is closed (the worker is stopping)")
        if not PHONE.fullmatch(call.phone):
            return _refused(f"not an E.164 number: {call.phone[:32]!r}")
        try:
            uri = self.settings.sip_target.format(phone=call.phone)
        except (KeyError, IndexError, ValueError) as exc:
            return _refused(f"DIALGATE_SIP_TARGET is not a template of {{phone}} alone: {exc}")
        if uri.startswith("sips:"):
            return _refused("a sips: target needs TLS; this back end speaks SIP over UDP")
        try:
            host, port = sm.address(uri)
            dest = (self._resolve(host), port)
        except (ValueError, OSError) as exc:
            return _refused(f"bad SIP target {uri!r}: {exc}; check DIALGATE_SIP_TARGET")
        coro = self._start(call, uri, dest, placed_at)
        try:
            call_id = asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)
        except (OSError, FutureTimeout, RuntimeError) as exc:
            return _refused(f"INVITE to {dest[0]}:{dest[1]} not sent: {exc}")
        return Placed(True, CallOutcome.ACCEPTED, provider_call_id=call_id)

    def place_many(self, calls: Sequence[CallRequest]) -> list[Placed]:
        return at_once(self.place, calls)

    def hang_up(self, campaign_id: int | None, scope: Hangup) -> int:
        if scope == Hangup.NONE or self.closed:
            return 0
        return self._on_loop(lambda: self._hang_up(campaign_id, scope))

    def live(self) -> int:
        return len(self.open)  # changed on the loop only; len() is atomic

    def close(self) -> None:
        """Hang up every call, wait (at most CLOSE_WAIT_S) for their ends, then stop; a call
        whose far end did not confirm by then is reported ended anyway."""
        if self.closed:
            return
        self.closed = True
        self._on_loop(lambda: self._hang_up(None, Hangup.ALL))
        deadline = time.monotonic() + CLOSE_WAIT_S
        while self.open and time.monotonic() < deadline:
            time.sleep(0.01)
        self._on_loop(self._shutdown)
        self.thread.join(CLOSE_WAIT_S)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.add_reader(self.sock.fileno(), self._readable)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def _on_loop(self, fn: Callable[[], int]) -> int:
        """Run ``fn`` on the loop (now when we are on it) and give back what it returned."""
        if threading.current_thread() is self.thread:
            return fn()

        async def run() -> int:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=5)

    def _shutdown(self) -> int:
        for call in list(self.open.values()):
            self._end(call, call.end_as or Disposition.CANCELED, error="engine closed")
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.loop.call_soon(self.loop.stop)
        return 0

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        log.debug("sip_out", to=f"{dest[0]}:{dest[1]}", line=data[: data.find(b"\r")].decode())
        self.sock.sendto(data, dest)

    def _readable(self) -> None:
        for _ in range(64):  # then let timers run
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error of an earlier datagram
                log.debug("sip_recv_error", error=str(exc))
                continue
            try:
                msg = sm.parse(data)
            except sm.SipParseError as exc:
                log.debug("sip_unreadable", source=f"{addr[0]}:{addr[1]}", error=str(exc))
                continue
            log.debug("sip_in", source=f"{addr[0]}:{addr[1]}", code=msg.code, method=msg.method)
            try:
                if msg.is_request:
                    self._on_request(msg, (addr[0], addr[1]))
                else:
                    self._on_response(msg)
            except Exception:  # one bad message must not stop every other call
                log.exception("sip_message_failed", call_id=msg.call_id)

    # -- placing -------------------------------------------------------------------------------
    async def _start(
        self, req: CallRequest, uri: str, dest: tuple[str, int], placed_at: float
    ) -> str:
        """Send the first INVITE (OSError when it cannot be), set the call's timers."""
        ip = self._local_ip(dest[0])
        local = f"[{ip}]:{self.bound[1]}" if ":" in ip else f"{ip}:{self.bound[1]}"
        call = _Call(req, sm.call_id(ip), uri, dest, local, ip, sm.tag())
        self._send_invite(call)
        self.calls[call.call_id] = self.open[call.call_id] = call
        timeout = placed_at + self.settings.sip_ring_timeout
        ring = self.loop.call_at(timeout, self._hang, call, Disposition.NO_ANSWER, False)
        bound = self.loop.call_at(placed_at + req.max_seconds, self._hang, call, None, True)
        call.timers += [ring, bound]
        return call.call_id

    def _send_invite(self, call: _Call, auth: tuple[str, str] | None = None) -> None:
        call.branch = sm.branch()
        headers = self._common(call, "INVITE", call.branch)
        headers += [
            ("Contact", f"<sip:dialgate@{call.local}>"),
            ("Allow", ALLOW),
            ("X-Dialgate-Attempt", str(call.req.attempt_id)),
            ("X-Dialgate-Campaign", str(call.req.campaign_id)),
            ("Content-Type", "application/sdp"),
        ]
        if auth:
            headers.append(auth)
        # dialgate sends no media: the offer names a port next to ours, where nothing listens
        media = self.bound[1] + 2 if self.bound[1] < 65534 else 9
        body = sm.sdp_offer(call.local_ip, media, call.req.attempt_id)
        data = sm.request("INVITE", call.uri, headers, body)
        call.invite = _Retransmit(self, data, call.dest, float("inf"), lambda: self._timeout(call))

    def _common(
        self, call: _Call, method: str, branch: str, cseq: int | None = None
    ) -> list[tuple[str, str]]:
        """Via, Max-Forwards, From, To, Call-ID, CSeq and User-Agent of a request of ours
        (To with the far end's tag once the dialog exists)."""
        return [
            ("Via", f"SIP/2.0/UDP {call.local};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{self.settings.sip_from}>;tag={call.from_tag}"),
            ("To", call.to_header or f"<{call.uri}>"),
            ("Call-ID", call.call_id),
            ("CSeq", f"{call.cseq if cseq is None else cseq} {method}"),
            ("User-Agent", "dialgate"),
        ]

    def _timeout(self, call: _Call) -> None:
        """Timer B: nothing at all came back to the INVITE."""
        self._end(call, call.end_as or Disposition.FAILED, error="timeout")

    # -- responses -----------------------------------------------------------------------------
    def _on_response(self, msg: sm.SipMessage) -> None:
        call = self.calls.get(msg.call_id)
        if call is None:
            return
        number, method = msg.cseq
        if method == "INVITE":
            self._invite_response(call, msg, number)
        elif method == "BYE" and call.bye is not None:
            if msg.code is not None and msg.code < 200:
                call.bye.slow_down()
                return
            call.bye.stop()
            self._end(call, call.end_as or Disposition.ANSWERED)
        elif method == "CANCEL" and call.cancel is not None and (msg.code or 0) >= 200:
            call.cancel.stop()  # the INVITE's final response (487) is what ends the call

    def _invite_response(self, call: _Call, msg: sm.SipMessage, number: int) -> None:
        code = msg.code or 0
        if number in call.acks:  # a retransmitted final response: the same ACK again
            if code >= 200:
                hop = self._next_hop(call) if code < 300 else call.dest
                self._send_quietly(call.acks[number], hop)
            return
        if number != call.cseq:
            return  # a provisional of an INVITE we already answered a challenge of
        if call.invite is not None and not call.ended:
            call.invite.stop()  # Timer A/B: any response ends the retransmissions
        if code < 200:
            self._provisional(call, code)
        elif code < 300:
            self._answered(call, msg, number)
        else:
            self._refused(call, msg, number, code)

    def _provisional(self, call: _Call, code: int) -> None:
        if call.ended:
            return
        call.rung = True
        if call.end_as is not None and not call.cancel_sent:
            self._send_cancel(call)  # a hang-up waited for this first provisional
        if code in (180, 183) and not (call.ringing or call.answered or call.cancel_sent):
            call.ringing = True
            self._report(call, CallEventKind.RINGING)

    def _answered(self, call: _Call, msg: sm.SipMessage, number: int) -> None:
        call.sip_code = msg.code
        call.to_header = msg.get("To")
        contact = msg.get("Contact")
        call.remote = sm.uri_of(contact) if contact else call.uri
        call.routes = list(reversed(msg.get_all("Record-Route")))
        ack = self._in_dialog(call, "ACK", number)
        call.acks[number] = ack[0]
        self._send_quietly(*ack)
        if call.ended or call.end_as is not None:
            self._send_bye(call)  # answered as we hung up (or after we gave up): BYE it
            return
        call.answered = True
        self._report(call, CallEventKind.ANSWERED)

    def _refused(self, call: _Call, msg: sm.SipMessage, number: int, code: int) -> None:
        ack = self._ack_final(call, msg)
        call.acks[number] = ack
        self._send_quietly(ack, call.dest)
        if call.ended:
            return
        header = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}.get(code)
        value = msg.get(header) if header else None
        if value and self.credentials and not call.auth_tried and call.end_as is None:
            call.auth_tried = True
            try:
                answer = self._answer_challenge(call, value, code)
            except ValueError as exc:
                self._end(call, Disposition.FAILED, code, f"digest: {exc}")
                return
            call.cseq += 1
            call.rung = call.cancel_sent = False
            try:
                self._send_invite(call, answer)
            except OSError as exc:
                self._end(call, Disposition.FAILED, code, f"INVITE not sent: {exc}")
            return
        if call.end_as is not None and code in (401, 407, 487):
            disposition = call.end_as  # cancelled by us, or challenged as we hung up
        else:
            disposition = BUSY.get(code, Disposition.FAILED)
        self._end(call, disposition, code, None if code == 487 else f"{code} {msg.reason}")

    def _answer_challenge(self, call: _Call, value: str, code: int) -> tuple[str, str]:
        assert self.credentials is not None
        user, password = self.credentials
        params = sm.challenge(value)
        name = "Authorization" if code == 401 else "Proxy-Authorization"
        return name, sm.authorization(params, "INVITE", call.uri, user, password)

    def _ack_final(self, call: _Call, msg: sm.SipMessage) -> bytes:
        """The ACK of a 3xx-6xx (RFC 3261 §17.1.1.3): the Via (and branch) of the INVITE
        answered, its Request-URI, the response's To."""
        number, _ = msg.cseq
        branch = sm.param(msg.get("Via") or "", "branch") or call.branch
        headers = [
            ("Via", f"SIP/2.0/UDP {call.local};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", msg.get("From") or ""),
            ("To", msg.get("To") or ""),
            ("Call-ID", call.call_id),
            ("CSeq", f"{number} ACK"),
            ("User-Agent", "dialgate"),
        ]
        return sm.request("ACK", call.uri, headers)

    # -- ending --------------------------------------------------------------------------------
    def _hang_up(self, campaign_id: int | None, scope: Hangup) -> int:
        asked = 0
        for call in list(self.open.values()):
            if campaign_id not in (None, call.req.campaign_id):
                continue
            if not call.answered:
                asked += 1
                self._hang(call, Disposition.CANCELED, False)
            elif scope == Hangup.ALL:
                asked += 1
                self._hang(call, Disposition.ANSWERED, True)
        return asked

    def _hang(self, call: _Call, unanswered: Disposition | None, answered_too: bool) -> None:
        """End a live call: BYE when it is answered (and ``answered_too``), CANCEL before
        (as soon as a provisional allows one), ``unanswered`` being how it ends then (None:
        ``no_answer``, the call's own bound)."""
        if call.ended:
            return
        if call.answered:
            if answered_too and call.bye is None:
                call.end_as = Disposition.ANSWERED
                self._send_bye(call)
            return
        if call.end_as is None:
            call.end_as = unanswered or Disposition.NO_ANSWER
        if call.rung and not call.cancel_sent:
            self._send_cancel(call)

    def _send_cancel(self, call: _Call) -> None:
        """CANCEL (RFC 3261 §9.1): the INVITE's branch, Request-URI and CSeq number."""
        call.cancel_sent = True
        headers = self._common(call, "CANCEL", call.branch)
        data = sm.request("CANCEL", call.uri, headers)
        try:
            call.cancel = _Retransmit(self, data, call.dest, T2, lambda: None)
        except OSError as exc:
            log.debug("sip_cancel_not_sent", call_id=call.call_id, error=str(exc))
        call.timers.append(self._cancel_guard(call))

    def _cancel_guard(self, call: _Call) -> asyncio.TimerHandle:
        """No final response 64·T1 after our CANCEL: the INVITE is over (§9.1)."""
        return self.loop.call_later(
            64 * self.t1,
            lambda: self._end(call, call.end_as or Disposition.CANCELED, error="no final answer"),
        )

    def _send_bye(self, call: _Call) -> None:
        if call.bye is not None:
            return
        call.cseq += 1
        data, hop = self._in_dialog(call, "BYE", call.cseq)
        disposition = call.end_as or Disposition.ANSWERED
        try:
            call.bye = _Retransmit(
                self, data, hop, T2, lambda: self._end(call, disposition, error="BYE unanswered")
            )
        except OSError as exc:
            self._end(call, disposition, error=f"BYE not sent: {exc}")

    def _in_dialog(self, call: _Call, method: str, cseq: int) -> tuple[bytes, tuple[str, int]]:
        """An ACK (of a 2xx) or BYE in the dialog (RFC 3261 §12.2.1.1): a new branch, to the
        remote target, through the route set; and where it goes."""
        headers = self._common(call, method, sm.branch(), cseq)
        headers += [("Route", r) for r in call.routes]
        return sm.request(method, call.remote or call.uri, headers), self._next_hop(call)

    def _end(
        self,
        call: _Call,
        disposition: Disposition,
        sip_code: int | None = None,
        error: str | None = None,
    ) -> None:
        """Report the call's one ``ended``; keep its record 64·T1 for retransmissions."""
        if call.ended:
            return
        call.ended = True
        for t in call.timers:
            t.cancel()
        for tx in (call.invite, call.cancel, call.bye):
            if tx is not None:
                tx.stop()
        self.open.pop(call.call_id, None)
        self.loop.call_later(64 * self.t1, self.calls.pop, call.call_id, None)
        code = sip_code if sip_code is not None else call.sip_code
        self._report(call, CallEventKind.ENDED, disposition, code, error)

    def _report(
        self,
        call: _Call,
        kind: CallEventKind,
        disposition: Disposition | None = None,
        sip_code: int | None = None,
        error: str | None = None,
    ) -> None:
        event = CallEvent(
            call.req.attempt_id, kind, disposition=disposition, sip_code=sip_code, error=error
        )
        try:
            self.report(event)
        except Exception:  # the call's life goes on; the ledger logs its own failures
            log.exception("sip_report_failed", call_id=call.call_id, kind=kind.value)

    # -- requests from the far end -------------------------------------------------------------
    def _on_request(self, msg: sm.SipMessage, source: tuple[str, int]) -> None:
        if msg.method == "ACK":
            return
        call = self.calls.get(msg.call_id)
        ours = call is not None and sm.param(msg.get("To") or "", "tag") == call.from_tag
        if msg.method == "OPTIONS":
            answer = sm.response(msg, 200, "OK", sm.tag(), [("Allow", ALLOW)])
        elif call is None or not ours:
            if msg.method == "INVITE" and sm.param(msg.get("To") or "", "tag") is None:
                answer = sm.response(msg, 603, "Decline", sm.tag())  # dialgate takes no calls
            else:
                answer = sm.response(msg, 481, "Call/Transaction Does Not Exist", sm.tag())
        elif msg.method == "BYE":
            answer = sm.response(msg, 200, "OK")
            self._send_quietly(answer, source)
            if call.bye is not None:
                call.bye.stop()
            self._end(call, call.end_as or Disposition.ANSWERED)
            return
        elif msg.method == "INVITE":
            answer = sm.response(msg, 488, "Not Acceptable Here")  # no media to renegotiate
        else:
            answer = sm.response(msg, 405, "Method Not Allowed", extra=[("Allow", ALLOW)])
        self._send_quietly(answer, source)

    # -- addresses -----------------------------------------------------------------------------
    def _send_quietly(self, data: bytes, dest: tuple[str, int]) -> None:
        try:
            self.send(data, dest)
        except OSError as exc:  # the far end's retransmission will ask again
            log.debug("sip_send_failed", to=f"{dest[0]}:{dest[1]}", error=str(exc))

    def _next_hop(self, call: _Call) -> tuple[str, int]:
        """Where in-dialog requests go: the first Route, else the remote target; an
        address given as a name goes to the target's address (no DNS on the loop)."""
        uri = sm.uri_of(call.routes[0]) if call.routes else (call.remote or call.uri)
        try:
            host, port = sm.address(uri)
            socket.inet_pton(self.family, host)
        except (ValueError, OSError):
            return call.dest
        return host, port

    def _resolve(self, host: str) -> str:
        """The target's address (cached DNS_TTL_S; called from placing threads only)."""
        now = time.monotonic()
        cached = self._dns.get(host)
        if cached and cached[0] > now:
            return cached[1]
        info = socket.getaddrinfo(host, None, self.family, socket.SOCK_DGRAM)
        address = str(info[0][4][0])
        self._dns[host] = (now + DNS_TTL_S, address)
        return address

    def _local_ip(self, dest: str) -> str:
        """Our address as ``dest`` sees it (the bound one, or the route's source)."""
        if self.bound[0] not in ("0.0.0.0", "::"):
            return self.bound[0]
        if dest not in self._local_ips:
            with socket.socket(self.family, socket.SOCK_DGRAM) as probe:
                probe.connect((dest, 9))  # no packet is sent: only the route is chosen
                self._local_ips[dest] = str(probe.getsockname()[0])
        return self._local_ips[dest]


def _split_hostport(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError naming the setting."""
    m = re.fullmatch(r"\[?([^\]]*?)\]?:([0-9]{1,5})", value.strip())
    if not m:
        raise ValueError(f"DIALGATE_SIP_BIND={value!r}: give host:port, e.g. 0.0.0.0:5070")
    return m.group(1) or "0.0.0.0", int(m.group(2))


def _refused(error: str) -> Placed:
    return Placed(False, CallOutcome.PROVIDER_ERROR, error=error)
