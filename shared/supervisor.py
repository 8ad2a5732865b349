"""Supervised child processes: what ``dialgate up``, ``dialgate control`` and ``dialgate
worker --processes N`` run their processes under.

A child that exits while the supervisor is not stopping (killed by the kernel's OOM
killer, a crash, a SIGTERM of its own) is logged with its exit code or signal and started
again after a backoff (:data:`BACKOFF_S`, doubling up to :data:`MAX_BACKOFF_S`; back to
the first step once it has run :data:`STEADY_S`), while every other child keeps running.
A child that dies :data:`CRASH_LOOP` times within :data:`CRASH_WINDOW_S` is a crash loop:
the supervisor gives up, says so in one line, and stops the rest.

Children share the supervisor's process group, so a Ctrl-C in a terminal reaches each of
them at once and each stops gracefully by itself (a worker finishes its dials); a
SIGTERM to the supervisor is passed on to every child at once (a SIGINT after a short
grace, in case it reached the supervisor alone), and the supervisor waits for them.
Each child is asked to receive SIGTERM should the supervisor itself die
(``PR_SET_PDEATHSIG``), so no child outlives it.

What the supervisor knows (each child's pid, restarts, last exit) is published in Redis
for the API's ``/readyz``, ``/metrics`` and ``dialgate status``
(:func:`supervised`), refreshed every :data:`REPORT_EVERY_S` seconds and
expiring when the supervisor stops refreshing it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import structlog

from shared.clients import REDIS_ERRORS
from shared.keys import Keys

log = structlog.get_logger("dialgate.supervisor")

BACKOFF_S = 0.5  # the first restart's delay; doubled on each quick death
MAX_BACKOFF_S = 10.0
STEADY_S = 30.0  # a child that ran this long starts its next backoff from the first step
CRASH_LOOP = 5  # deaths of one child within CRASH_WINDOW_S that make the supervisor give up
CRASH_WINDOW_S = 60.0
REPORT_EVERY_S = 5.0  # how often the state is written to Redis (it expires after 3 ×)
POLL_S = 0.2
SIGINT_GRACE_S = 5.0  # after a Ctrl-C, how long children may take to stop by themselves
STOP_TIMEOUT_S = 45.0  # how long a stop waits for the children (a worker's grace is 30 s)
PARENT_ENV = "DIALGATE_SUPERVISOR_PID"  # the pid a supervised child expects as its parent
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a supervised child, at start-up: receive SIGTERM when the supervisor dies, and
    exit at once if it is already gone (the child would be nobody's)."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        sys.exit(f"dialgate: the supervisor {parent} is gone; not starting")


def describe(returncode: int) -> str:
    """An exit status as the log says it: ``exit code 1`` or ``signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


@dataclass(frozen=True)
class Spec:
    """A child to run: its name in logs and reports, its command, extra environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: Spec
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    deaths: deque[float] = field(default_factory=deque)
    backoff: float = BACKOFF_S
    due: float = 0.0  # when a dead child starts again (monotonic)
    last_exit: str | None = None
    last_exit_at: float | None = None  # unix time

    def view(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "pid": self.proc.pid if self.proc is not None else None,
            "running": self.proc is not None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }


class Supervisor:
    """Runs ``specs`` as children, restarts each that dies, stops them all on a signal."""

    def __init__(
        self,
        name: str,
        specs: Sequence[Spec],
        *,
        redis_client: redis.Redis | None = None,
        keys: Keys | None = None,
        on_exit: Callable[[int], None] | None = None,
        env: Mapping[str, str] | None = None,
        signals: bool = True,
    ) -> None:
        self.name = name
        self.env = dict(os.environ if env is None else env)
        self.signals = signals  # take SIGTERM, SIGINT, SIGHUP (off: a test drives it)
        self.children = [Child(s) for s in specs]
        self.redis = redis_client
        self.keys = keys
        self.on_exit = on_exit
        # Supervised itself (the workers' supervisor under dialgate up): keyed by its parent,
        # so the record of one that was killed is replaced by its successor's, not doubled.
        owner = os.environ.get(PARENT_ENV, str(os.getpid()))
        self.id = f"{socket.gethostname()}:{owner}:{name}"
        self._signal: int | None = None
        self._started = False
        self._gave_up: str | None = None
        self._reported = 0.0
        self._unreported = False  # a report failed (logged once until one succeeds)

    # -- running --------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        """A stop signal came, or a crash loop made the supervisor give up."""
        return self._signal is not None or self._gave_up is not None

    def start(self) -> Supervisor:
        """Take SIGTERM, SIGINT and SIGHUP (they stop the children) and start them all."""
        if self.signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, self._on_signal)
        self._started = True
        for child in self.children:
            self._spawn(child)
        return self

    def wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Supervise until ``ready()`` holds (True), or the timeout or a stop (False)."""
        deadline = time.monotonic() + timeout
        while not self.stopping and time.monotonic() < deadline:
            self.check()
            if ready():
                return True
            time.sleep(POLL_S)
        return False

    def run(self) -> int:
        """Supervise (starting the children first if :meth:`start` was not called) until
        a stop signal (0) or a crash loop (1); every child is stopped before it returns."""
        try:
            if not self._started:
                self.start()
            while not self.stopping:
                self.check()
                time.sleep(POLL_S)
        finally:
            self.stop()
        if self._gave_up is not None:
            print(f"{self.name}: {self._gave_up}", file=sys.stderr, flush=True)
            return 1
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._signal is None:
            print(f"\n{self.name}: stopping…", file=sys.stderr, flush=True)
        self._signal = signum

    def check(self) -> None:
        """Reap dead children, start those whose backoff is over, report."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:
                self._exited(child, now)
            if child.proc is None and now >= child.due and self._gave_up is None:
                self._spawn(child)
        if now - self._reported >= REPORT_EVERY_S:
            self.report()

    def _spawn(self, child: Child) -> None:
        env = {**self.env, **child.spec.env, PARENT_ENV: str(os.getpid())}
        child.proc = subprocess.Popen(list(child.spec.argv), env=env)
        child.started = time.monotonic()
        if child.restarts:
            log.warning(
                "process_restarted",
                process=child.spec.name,
                pid=child.proc.pid,
                restarts=child.restarts,
            )
            self.report()

    def _exited(self, child: Child, now: float) -> None:
        assert child.proc is not None
        pid, code = child.proc.pid, child.proc.returncode
        child.proc = None
        child.restarts += 1
        child.last_exit, child.last_exit_at = describe(code), time.time()
        if self.on_exit is not None:
            self.on_exit(pid)
        if now - child.started >= STEADY_S:
            child.backoff = BACKOFF_S
        child.deaths.append(now)
        while child.deaths and now - child.deaths[0] > CRASH_WINDOW_S:
            child.deaths.popleft()
        if len(child.deaths) >= CRASH_LOOP:
            self._gave_up = (
                f"{child.spec.name} died {len(child.deaths)} times within "
                f"{CRASH_WINDOW_S:.0f} s (last: {child.last_exit}); giving up and stopping "
                "the rest (its log is above)"
            )
            log.error(
                "process_crash_loop",
                process=child.spec.name,
                pid=pid,
                exit=child.last_exit,
                deaths=len(child.deaths),
            )
            return
        child.due = now + child.backoff
        log.error(
            "process_exited",
            process=child.spec.name,
            pid=pid,
            exit=child.last_exit,
            restart_in_s=child.backoff,
            restarts=child.restarts,
        )
        child.backoff = min(child.backoff * 2, MAX_BACKOFF_S)
        self.report()

    def stop(self) -> None:
        """Stop every running child: after a Ctrl-C (SIGINT, which a terminal sends to the
        whole process group) give them :data:`SIGINT_GRACE_S` to stop by themselves, then
        SIGTERM those still running (at once on any other stop); wait for them, and
        SIGKILL what outlives :data:`STOP_TIMEOUT_S`."""
        running = [c.proc for c in self.children if c.proc is not None]
        if self._signal == signal.SIGINT:
            grace = time.monotonic() + SIGINT_GRACE_S
            while time.monotonic() < grace and any(p.poll() is None for p in running):
                time.sleep(POLL_S)
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("process_killed_at_stop", pid=proc.pid, waited_s=STOP_TIMEOUT_S)
                proc.kill()
                proc.wait(10)
        for child in self.children:
            child.proc = None
        self.forget()

    # -- reporting --------------------------------------------------------------------------
    def report(self) -> None:
        """Publish every child's state in Redis (for /readyz, /metrics, ``dialgate status``)."""
        self._reported = time.monotonic()
        if self.redis is None or self.keys is None:
            return
        record = json.dumps(
            {
                "supervisor": self.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "at": time.time(),
                "processes": [c.view() for c in self.children],
            }
        )
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(self.keys.supervisors, self.id, record)
            pipe.execute()
            self._unreported = False
        except REDIS_ERRORS as exc:
            if not self._unreported:
                log.warning("supervisor_report_failed", error=str(exc))
            self._unreported = True

    def forget(self) -> None:
        if self.redis is None or self.keys is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            self.redis.hdel(self.keys.supervisors, self.id)


# -- what the API reads --------------------------------------------------------------------
DEGRADED_FOR_S = 600.0  # a restart keeps the stack "degraded" this long


@dataclass(frozen=True)
class Supervised:
    """One supervised process as its supervisor last reported it."""

    supervisor: str
    host: str
    name: str
    pid: int | None
    running: bool
    restarts: int
    last_exit: str | None
    last_exit_at: datetime | None

    @property
    def label(self) -> str:
        return f"{self.name} of {self.supervisor} on {self.host}"

    def trouble(self, now: float) -> str | None:
        """Why this process makes the stack degraded (``None``: it does not)."""
        if not self.running:
            return f"{self.label} is down (it ended with {self.last_exit}); restarting it"
        at = None if self.last_exit_at is None else self.last_exit_at.timestamp()
        if at is not None and now - at < DEGRADED_FOR_S:
            ago = round(now - at)
            return (
                f"{self.label} restarted {self.restarts} time(s); the last ended with "
                f"{self.last_exit} {ago} s ago"
            )
        return None


def _instant(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def supervised(r: redis.Redis, keys: Keys, now: float | None = None) -> list[Supervised]:
    """Every process of every live supervisor (a supervisor silent for three report
    periods is gone: its record is dropped)."""
    now = time.time() if now is None else now
    found, stale = [], []
    for sid, raw in r.hgetall(keys.supervisors).items():
        rec = json.loads(raw)
        if now - float(rec["at"]) > 3 * REPORT_EVERY_S:
            stale.append(sid)
            continue
        found += [
            Supervised(
                rec["supervisor"],
                rec["host"],
                p["name"],
                p["pid"],
                p["running"],
                p["restarts"],
                p["last_exit"],
                None
                if p["last_exit_at"] is None
                else datetime.fromtimestamp(p["last_exit_at"], UTC),
            )
            for p in rec["processes"]
        ]
    if stale:
        r.hdel(keys.supervisors, *stale)
    return sorted(found, key=lambda p: (p.host, p.supervisor, p.name))
