"""Telephony providers. The simulated one is the default.

A provider's :meth:`Provider.place` returns once the provider has accepted or refused
the call; the worker holds the gate lease until then.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from shared.states import CallOutcome


@dataclass(frozen=True)
class CallRequest:
    campaign_id: int
    contact_id: int
    attempt_id: int
    phone: str
    worker_id: str
    gate_version: int


@dataclass(frozen=True)
class CallResult:
    accepted: bool
    outcome: CallOutcome
    provider_call_id: str | None


class Provider(Protocol):
    def place(self, call: CallRequest) -> CallResult: ...


class SimulatedProvider:
    """Accepts calls after ``latency_ms``; refuses a ``failure_rate`` share of them.

    With ``call_log`` set, appends one JSON line per placed call (one ``write`` on an
    ``O_APPEND`` file, so several worker processes can share the file).
    """

    def __init__(
        self,
        latency_ms: float,
        failure_rate: float,
        call_log: str | None,
        hold_file: str | None = None,
        fault_file: str | None = None,
    ) -> None:
        self.hold_file = hold_file
        self.fault_file = fault_file
        self.latency = latency_ms / 1000
        self.failure_rate = failure_rate
        self._fd = (
            os.open(call_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if call_log else None
        )
        self._rand = random.Random()
        self._lock = threading.Lock()

    def place(self, call: CallRequest) -> CallResult:
        while self.hold_file and os.path.exists(self.hold_file):
            time.sleep(0.005)
        placed = time.time()
        if self._fd is not None:
            line = json.dumps(
                {
                    "t": placed,
                    "campaign_id": call.campaign_id,
                    "contact_id": call.contact_id,
                    "attempt_id": call.attempt_id,
                    "phone": call.phone,
                    "worker_id": call.worker_id,
                    "gate_version": call.gate_version,
                }
            )
            os.write(self._fd, (line + "\n").encode())
        if self.latency:
            time.sleep(self.latency)
        fault = self._fault()
        if fault is not None:
            return CallResult(False, fault, None)
        with self._lock:
            failed = self._rand.random() < self.failure_rate
        if failed:
            return CallResult(False, CallOutcome.PROVIDER_ERROR, None)
        return CallResult(True, CallOutcome.ACCEPTED, f"sim-{uuid.uuid4().hex[:16]}")

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
