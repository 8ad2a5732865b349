"""Telephony back ends: what places a call, and the interface every one of them offers.

A back end is built with a ``report`` callback and offers three things:

- :meth:`Provider.place` returns once the provider *has* the call (the INVITE is on the
  wire; the create-call request was answered), or refused it. The worker holds the gate
  lease until then, and only until then: the call's life goes on without a worker thread.
  :meth:`Provider.place_many` places the calls one claim granted together, at once (the
  SIP and Twilio back ends run their ``place`` side by side: :func:`at_once`).
- What happens next (ringing, answered, ended with a disposition) is handed to ``report``
  as :class:`~shared.calls.CallEvent` s, from any thread; the worker writes them through
  :func:`shared.calls.apply_events` and releases the call's line when it ended. (A Twilio
  call's events reach the control API's status callback instead, and take the same path.)
- :meth:`Provider.hang_up` ends this process's live calls of a campaign (or of every
  campaign): those not yet answered (``ringing``) or all of them (``all``); each ends with
  its own ``ended`` event (``canceled`` before answer).

Every call is bounded by ``max_seconds`` from its placement: the back end hangs up at that
bound (its line expires shortly after, should the end never be heard of).

Back ends: :class:`SimulatedProvider` (here), ``worker.sip.SipProvider``,
``worker.twilio.TwilioProvider``; :func:`worker.backends.build` picks one from the settings.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import structlog

from shared.calls import CallEvent
from shared.states import CallEventKind, CallOutcome, Disposition, Hangup

log = structlog.get_logger("dialgate.worker")

Report = Callable[[CallEvent], None]

# Threads placing calls at once for back ends that block per call (:func:`at_once`).
PLACERS = 64


@dataclass(frozen=True)
class CallRequest:
    campaign_id: int
    contact_id: int
    attempt_id: int
    phone: str
    worker_id: str
    gate_version: int
    max_seconds: float  # the call's whole life at most (ringing and talking)
    machine_detection: bool = False


@dataclass(frozen=True)
class Placed:
    """What the provider answered at placement. ``accepted``: it has the call, whose life
    now goes on (reported as events); otherwise the call never left (``error`` says why)."""

    accepted: bool
    outcome: CallOutcome
    provider_call_id: str | None = None
    error: str | None = None
    sip_code: int | None = None


class Provider(Protocol):
    def place(self, call: CallRequest) -> Placed: ...

    def place_many(self, calls: Sequence[CallRequest]) -> list[Placed]:
        """Place these calls at once (one claim granted them together): what ``place``
        answers for each, in order."""
        ...

    def hang_up(self, campaign_id: int | None, scope: Hangup) -> int:
        """Ask this process's live calls of the campaign (None: of every campaign) that
        ``scope`` targets to end; how many were asked."""
        ...

    def live(self) -> int:
        """This process's calls placed and not yet ended."""
        ...

    def close(self) -> None:
        """Stop: calls still up are hung up (their ``ended`` events reported)."""
        ...


_PLACERS: ThreadPoolExecutor | None = None


def at_once(place: Callable[[CallRequest], Placed], calls: Sequence[CallRequest]) -> list[Placed]:
    """``place`` for each of ``calls``, all at once (threads of one shared pool): the
    ``place_many`` of a back end whose ``place`` blocks until the provider has the call."""
    global _PLACERS
    if len(calls) == 1:
        return [place(calls[0])]
    if _PLACERS is None:
        _PLACERS = ThreadPoolExecutor(PLACERS, thread_name_prefix="place")
    return list(_PLACERS.map(place, calls))


class Timers:
    """Callbacks at given monotonic times, run by one daemon thread (the simulated calls'
    lives: no thread per call)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="sim-calls", daemon=True)
        self._thread.start()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._ready:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._ready.wait(
                        None if not self._heap else self._heap[0][0] - time.monotonic()
                    )
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a report that failed must not stop every other call's life
                log.exception("simulated_call_event_failed")


@dataclass
class _SimCall:
    request: CallRequest
    disposition: Disposition
    answered: bool = False
    ended: bool = False


class SimulatedProvider:
    """Calls that live a whole simulated life, and a witness of every call placed.

    ``place`` waits ``latency_ms`` (the provider taking the call) and refuses a
    ``failure_rate`` share (or every call while the fault file exists: ``auth`` in it for an
    authentication error). A call taken rings about ``ring_ms`` (0.5–1.5×), then ends as
    ``weights`` draw it (``DIALGATE_SIM_DISPOSITIONS``): answered (or machine) calls talk
    about ``talk_ms`` first. Every call ends by ``max_seconds`` at the latest.

    With ``call_log`` set, appends one JSON line per placed call (one ``write`` per
    placement on an ``O_APPEND`` file, so several worker processes can share the file):
    the witness the safety checker and the tests read, which dialgate's database does not
    write.
    """

    def __init__(
        self,
        report: Report,
        latency_ms: float,
        failure_rate: float,
        call_log: str | None,
        hold_file: str | None = None,
        fault_file: str | None = None,
        ring_ms: float = 0.0,
        talk_ms: float = 0.0,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.report = report
        self.hold_file = hold_file
        self.fault_file = fault_file
        self.latency = latency_ms / 1000
        self.failure_rate = failure_rate
        self.ring = ring_ms / 1000
        self.talk = talk_ms / 1000
        mix = weights or {"answered": 1.0}
        self._dispositions = [Disposition(d) for d in mix]
        self._weights = list(mix.values())
        self._fd = (
            os.open(call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if call_log else None
        )
        self._rand = random.Random()
        self._lock = threading.Lock()
        self._calls: dict[int, _SimCall] = {}
        self._timers: Timers | None = None

    def place(self, call: CallRequest) -> Placed:
        return self.place_many([call])[0]

    def place_many(self, calls: Sequence[CallRequest]) -> list[Placed]:
        """The calls are logged, then taken together after one ``latency_ms``."""
        while self.hold_file and os.path.exists(self.hold_file):
            time.sleep(0.005)
        if self._fd is not None:
            lines = "".join(
                json.dumps(
                    {
                        "t": time.time(),
                        "campaign_id": call.campaign_id,
                        "contact_id": call.contact_id,
                        "attempt_id": call.attempt_id,
                        "phone": call.phone,
                        "worker_id": call.worker_id,
                        "gate_version": call.gate_version,
                    }
                )
                + "\n"
                for call in calls
            )
            os.write(self._fd, lines.encode())
        if self.latency:
            time.sleep(self.latency)
        fault = self._fault()
        if fault is not None:
            return [Placed(False, fault, error="simulated fault") for _ in calls]
        return [self._taken(call) for call in calls]

    def _taken(self, call: CallRequest) -> Placed:
        """The provider took the call (or failed it): its life begins."""
        with self._lock:
            failed = self._rand.random() < self.failure_rate
            disposition = self._rand.choices(self._dispositions, self._weights)[0]
            ring = self.ring * (0.5 + self._rand.random())
            talk = self.talk * (0.5 + self._rand.random())
        placed = Placed(True, CallOutcome.ACCEPTED, f"sim-{uuid.uuid4().hex[:16]}")
        if failed:
            return Placed(False, CallOutcome.PROVIDER_ERROR, error="simulated provider error")
        sim = _SimCall(call, disposition)
        reached = disposition in (Disposition.ANSWERED, Disposition.MACHINE)
        if not ring and not (reached and talk):
            # A call with no life to speak of ends at once (the benchmarks' calls).
            if reached:
                self.report(CallEvent(call.attempt_id, CallEventKind.ANSWERED))
            self.report(CallEvent(call.attempt_id, CallEventKind.ENDED, disposition=disposition))
            return placed
        with self._lock:
            self._calls[call.attempt_id] = sim
            timers = self._timers = self._timers or Timers()
        now = time.monotonic()
        bound = now + call.max_seconds
        self.report(CallEvent(call.attempt_id, CallEventKind.RINGING))
        if reached and now + ring < bound:
            timers.at(now + ring, lambda: self._answer(sim))
            timers.at(min(now + ring + talk, bound), lambda: self._end(sim, disposition))
        else:
            unanswered = Disposition.NO_ANSWER if reached else disposition
            timers.at(min(now + ring, bound), lambda: self._end(sim, unanswered))
        return placed

    def _answer(self, sim: _SimCall) -> None:
        with self._lock:
            if sim.ended:
                return
            sim.answered = True
        self.report(CallEvent(sim.request.attempt_id, CallEventKind.ANSWERED))

    def _end(self, sim: _SimCall, disposition: Disposition) -> None:
        with self._lock:
            if sim.ended:
                return
            sim.ended = True
            self._calls.pop(sim.request.attempt_id, None)
        self.report(CallEvent(sim.request.attempt_id, CallEventKind.ENDED, disposition=disposition))

    def hang_up(self, campaign_id: int | None, scope: Hangup) -> int:
        with self._lock:
            targets = [
                c
                for c in self._calls.values()
                if campaign_id in (None, c.request.campaign_id)
                and scope != Hangup.NONE
                and (scope == Hangup.ALL or not c.answered)
            ]
        for c in targets:
            self._end(c, Disposition.ANSWERED if c.answered else Disposition.CANCELED)
        return len(targets)

    def live(self) -> int:
        with self._lock:
            return len(self._calls)

    def close(self) -> None:
        self.hang_up(None, Hangup.ALL)

    def _fault(self) -> CallOutcome | None:
        """The failure mode switched on by the fault file, if it exists."""
        if not self.fault_file:
            return None
        try:
            with open(self.fault_file, encoding="utf-8") as f:
                mode = f.read().strip()
        except FileNotFoundError:
            return None
        return CallOutcome.AUTH_ERROR if mode == "auth" else CallOutcome.PROVIDER_ERROR
