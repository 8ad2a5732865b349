"""A background loop of the control service: run ``step()`` every ``interval`` seconds.

The relay, the feeder and the reconciler are loops. Each is safe to run in several
processes at once. A failing step is logged and retried with backoff; it never kills
the process.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

import structlog


class Loop(ABC):
    name = "loop"

    def __init__(self, interval: float) -> None:
        self.interval = interval
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

    def idle(self) -> None:
        """Wait before the next step when there was nothing to do."""
        self.stop_event.wait(self.interval)

    def start(self) -> Loop:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
