"""Credentials remembered for a few seconds, so a request's check costs no query.

A token or web session that passed its check is remembered for :data:`REMEMBER_S`
seconds (never past its own expiry), and a request presenting it again is authenticated
from memory, in the event loop, without a database query or a thread.

Revocation reaches every API process at once: whatever ends a credential (a token
revoked, a session signed out) publishes on :attr:`shared.keys.Keys.credentials_changed`
after its commit, and every process forgets all it remembers when the message comes. A
process remembers only while it is subscribed: before start-up, and from the moment its
subscription breaks (Redis unreachable) until it is back, it forgets everything and
checks every request against the database, as if this module did not exist. A check
that began before a revocation's message is not remembered after it (the generation
below), so a revoked credential is never brought back by a request that raced it. Should a
message be lost all the same (Redis hung rather than gone), a revoked credential is
served from memory for at most :data:`REMEMBER_S` seconds more.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import datetime
from typing import Generic, TypeVar

import redis
import structlog

from shared.clients import REDIS_ERRORS
from shared.models import utcnow

# What ends a subscription: Redis away, or its socket.
LOST: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError)
log = structlog.get_logger("dialgate.security")

T = TypeVar("T")
REMEMBER_S = 5.0  # the longest a credential is served from memory without a new check
MAX_REMEMBERED = 10_000  # past this many, everything is forgotten (a bound on memory)
RETRY_S = 1.0  # how soon a broken subscription is tried again


class Remembered(Generic[T]):
    """Checked credentials by key, valid while this process listens for revocations."""

    def __init__(self, client: redis.Redis, channel: str, remember_s: float = REMEMBER_S) -> None:
        self.client = client
        self.channel = channel
        self.remember_s = remember_s
        self._values: dict[str, tuple[float, T]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._listening = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what a check asks --------------------------------------------------------------
    def get(self, key: str) -> T | None:
        hit = self._values.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def generation(self) -> int:
        """Taken before a check reads the database; :meth:`put` needs it unchanged."""
        return self._generation

    def put(self, key: str, value: T, generation: int, until: datetime | None) -> None:
        """Remember a passed check, unless a revocation came since ``generation`` was
        taken or this process is not listening. ``until``: the credential's own expiry."""
        deadline = time.monotonic() + self.remember_s
        if until is not None:
            deadline = min(deadline, time.monotonic() + (until - utcnow()).total_seconds())
        with self._lock:
            if not self._listening or generation != self._generation:
                return
            if len(self._values) >= MAX_REMEMBERED:
                self._values.clear()
            self._values[key] = (deadline, value)

    def forget(self) -> None:
        with self._lock:
            self._generation += 1
            self._values.clear()

    def changed(self) -> None:
        """A credential ended (call after the commit): every process forgets."""
        self.forget()
        try:
            self.client.publish(self.channel, "changed")
        except REDIS_ERRORS as exc:  # the others stop remembering when they lose Redis
            log.warning("credential_change_not_published", error=str(exc))

    # -- the subscription ---------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="credentials", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._set_listening(False)

    def _set_listening(self, listening: bool) -> None:
        with self._lock:
            self._listening = listening
            self._generation += 1
            self._values.clear()

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._set_listening(True)
                    else:
                        self.forget()
            except LOST as exc:
                if self._listening:
                    log.warning("credential_changes_unheard", error=str(exc), retry_in_s=RETRY_S)
                self._set_listening(False)
                self._stop.wait(RETRY_S)
            finally:
                with contextlib.suppress(*REDIS_ERRORS, OSError):
                    pubsub.close()
