"""A background loop of the control service: run ``step()`` every ``interval`` seconds.

The relay, feeder, reconciler, recovery sweep, cap lifter, monitor and webhook sender are
loops (one module each in this package). Each is safe to run in several processes at once. A
failing step is logged and retried with backoff; it never kills the process.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import redis
import structlog
from redis.client import PubSub

from shared.clients import REDIS_ERRORS


class Loop(ABC):
    name = "loop"

    def __init__(self, interval: float, nudge: tuple[redis.Redis, str] | None = None) -> None:
        self.interval = interval
        # (client, channel): an idle loop also wakes on a message there (the control
        # service publishes one after each committed transition).
        self.nudge = nudge
        self._pubsub: PubSub | None = None
        self.stop_event = threading.Event()
        self.log = structlog.get_logger(f"dialgate.{self.name}")
        self._thread: threading.Thread | None = None

    @abstractmethod
    def step(self) -> int:
        """Do one round of work; return how much was done (0 = idle)."""

    def run(self) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                done = self.step()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = min(self.interval * 2**failures, 5.0)
                self.log.warning(
                    f"{self.name}_step_failed",
                    error=f"{type(exc).__name__}: {exc}"[:500],
                    retry_in_s=delay,
                )
                self.stop_event.wait(delay)
                continue
            if not done:
                self.idle()

    def wait_s(self) -> float:
        """How long an idle loop waits for its next step (a nudge wakes it sooner)."""
        return self.interval

    def idle(self) -> None:
        """Wait before the next step when there was nothing to do: :meth:`wait_s`, or less
        when nudged."""
        wait = self.wait_s()
        if self.nudge is None:
            self.stop_event.wait(wait)
            return
        try:
            if self._pubsub is None:
                self._pubsub = self.nudge[0].pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(self.nudge[1])
            self._pubsub.get_message(timeout=wait)
        except REDIS_ERRORS:
            self._pubsub = None
            self.stop_event.wait(wait)

    def start(self) -> Loop:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
