"""The do-not-call list's mirror in Redis: one set per organisation, checked by every dial.

The table ``dnc`` is the truth; the set ``<ns>:{dnc:<org>}`` holds its phones plus the
member :data:`READY`, which says the set was built from the table. A set without it
(Redis restarted, flushed) makes every check answer "unknown", and the dial is denied
(fail closed) until the reconciler has rebuilt it.

Writers keep the set a superset of the table: an addition goes to the set before the
table's commit and again after it; a removal leaves the table first, then the set. A
rebuild (:meth:`DncSet.rebuild`) reads the table, swaps a fresh set in with ``RENAME`` and
then adds what the table gained meanwhile, so a concurrent addition is never lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import redis

from shared.keys import Keys

READY = "ready"  # never an E.164 number


class DncSet:
    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys

    def probes(self, org: str, phone: str) -> list[tuple[str, str]]:
        """The ``SISMEMBER`` lookups that say whether ``phone`` is listed (the dial path
        sends them in its gate claim's round trip; :meth:`verdict` judges the answers)."""
        key = self.keys.dnc(org)
        return [(key, phone), (key, READY)]

    @staticmethod
    def verdict(members: tuple[bool, ...]) -> bool | None:
        """Is the phone listed, from the answers to :meth:`probes`? ``None`` when the set
        is not built (deny the dial)."""
        listed, ready = members
        return listed if ready else None

    def add(self, org: str, phones: Iterable[str]) -> None:
        phones = list(phones)
        if phones:
            self.r.sadd(self.keys.dnc(org), *phones)

    def remove(self, org: str, phone: str) -> None:
        self.r.srem(self.keys.dnc(org), phone)

    def size(self, org: str) -> int | None:
        """Phones in the set, or None when it is not built."""
        pipe = self.r.pipeline(transaction=False)
        pipe.scard(self.keys.dnc(org))
        pipe.sismember(self.keys.dnc(org), READY)
        n, ready = pipe.execute()
        return int(n) - 1 if ready else None

    def rebuild(self, org: str, read: Callable[[], set[str]]) -> int:
        """Replace the set by the table's phones (``read()``); returns how many."""
        first = read()
        key, tmp = self.keys.dnc(org), self.keys.dnc_build(org)
        # Built aside, then swapped in by RENAME, the one atomic step (a cluster's client
        # takes no RENAME in a pipeline; both keys share a hash tag, so it may rename).
        self.r.delete(tmp)
        self.r.sadd(tmp, READY, *first)
        self.r.rename(tmp, key)
        gained = read() - first  # committed while we were swapping
        self.add(org, gained)
        return len(first) + len(gained)
