"""Every Redis key and AMQP name dialgate uses, in one place (like arq's ``constants.py``).

All keys a gate script touches share the campaign's hash tag ``{c:<id>}`` so that
Redis Cluster keeps them in one slot. Everything is prefixed by the namespace, so two
stacks can share one Redis and one RabbitMQ without seeing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

DIAL_ACTOR = "dial"


@dataclass(frozen=True)
class Keys:
    namespace: str

    # -- Redis: per campaign (one hash tag per campaign) -------------------------------
    def gate(self, campaign_id: int) -> str:
        """Hash: the campaign's gate, written only by a versioned CAS (:mod:`shared.gate`)."""
        return f"{self.namespace}:{{c:{campaign_id}}}:gate"

    def leases(self, campaign_id: int) -> str:
        """Sorted set: lease -> expiry (ms). A lease is ``attempt:worker:rand:v<version>``."""
        return f"{self.namespace}:{{c:{campaign_id}}}:leases"

    def lines(self, campaign_id: int) -> str:
        """Sorted set: attempt id -> expiry (ms); one member per live call (a line)."""
        return f"{self.namespace}:{{c:{campaign_id}}}:lines"

    def cps(self, campaign_id: int) -> str:
        """Sorted set: the campaign's calls started in the last second (claim -> time ms)."""
        return f"{self.namespace}:{{c:{campaign_id}}}:cps"

    def freed(self, campaign_id: int) -> str:
        """List: at most one token, pushed when a lease or line is given back and passed on
        by a claim that leaves room (a hint that wakes one dial waiting for room; the claim
        decides); short-lived."""
        return f"{self.namespace}:{{c:{campaign_id}}}:freed"

    def drained(self, campaign_id: int) -> str:
        """List: a token pushed when the last lease of a closed gate goes (what a drain
        blocks on); cleared by the drain before it waits."""
        return f"{self.namespace}:{{c:{campaign_id}}}:drained"

    def acks(self, campaign_id: int) -> str:
        """Hash: worker id -> highest transition version that worker has applied."""
        return f"{self.namespace}:{{c:{campaign_id}}}:acks"

    # -- Redis: per organisation ---------------------------------------------------------
    def dnc(self, org: str) -> str:
        """Set: the organisation's do-not-call phones, plus ``ready`` once built."""
        return f"{self.namespace}:{{dnc:{org}}}"

    def dnc_build(self, org: str) -> str:
        """Set: a rebuild of :meth:`dnc`, renamed over it when complete (same hash tag)."""
        return f"{self.namespace}:{{dnc:{org}}}:build"

    def frequency(self, org: str, phone: str) -> str:
        """Sorted set: attempt id -> start (ms) of the organisation's calls to ``phone``
        within its frequency limit's window (:mod:`shared.frequency`)."""
        return f"{self.namespace}:{{f:{org}}}:n:{phone}"

    def frequency_ready(self, org: str) -> str:
        """String: the window (ms) over which the organisation's :meth:`frequency` sets
        hold every call dialed; absent until the reconciler (or a change of the limit)
        built them (same hash tag: read by the same script)."""
        return f"{self.namespace}:{{f:{org}}}:ready"

    # -- Redis: global -------------------------------------------------------------------
    @property
    def gates_index(self) -> str:
        """Set of campaign ids that have a gate (for workers reading gates on connect)."""
        return f"{self.namespace}:gates"

    @property
    def estop(self) -> str:
        """String: present while an emergency stop is in force (its value says who/why)."""
        return f"{self.namespace}:estop"

    @property
    def provider_cps(self) -> str:
        """Sorted set: calls started on the whole trunk/account in the last second (its own
        hash slot: taken by a script of its own, right after the campaign's claim)."""
        return f"{self.namespace}:{{provider}}:cps"

    @property
    def outbox_nudge(self) -> str:
        """Pub/sub channel: "the outbox has a new row", so relays need not wait a poll."""
        return f"{self.namespace}:outbox-nudge"

    @property
    def feed_nudge(self) -> str:
        """Pub/sub channel: "a campaign may dial (again)" (start, resume, a cap lifted), so
        the feeder refills its queue at once."""
        return f"{self.namespace}:feed-nudge"

    @property
    def credentials_changed(self) -> str:
        """Pub/sub channel: "a token or session ended", so every API process forgets the
        credentials it remembers (:mod:`control.auth.memory`)."""
        return f"{self.namespace}:credentials-changed"

    @property
    def workers(self) -> str:
        """Sorted set: worker id -> last heartbeat (unix seconds)."""
        return f"{self.namespace}:workers"

    @property
    def stats(self) -> str:
        """Hash: counters of the control loops (reconciler repairs, ...), cluster-wide."""
        return f"{self.namespace}:stats"

    def worker(self, worker_id: str) -> str:
        """Hash: the worker's heartbeat record (:class:`shared.fleet.Record`), expiring with
        the worker."""
        return f"{self.namespace}:worker:{worker_id}"

    @property
    def supervisors(self) -> str:
        """Hash: supervisor id -> its processes' state, JSON (:mod:`shared.supervisor`)."""
        return f"{self.namespace}:supervisors"

    def auth_failures(self, client: str) -> str:
        """Counter of failed token checks from one client address (expires each minute)."""
        return f"{self.namespace}:auth-failures:{client}"

    # -- AMQP ----------------------------------------------------------------------------
    @property
    def control_exchange(self) -> str:
        """Topic exchange of versioned campaign events (routing key ``campaign.<id>.<action>``)."""
        return f"{self.namespace}.control"

    def control_queue(self, worker_id: str) -> str:
        """Each worker's own exclusive queue bound to the control exchange."""
        return f"{self.namespace}.control.{worker_id}"

    @property
    def dial_queue(self) -> str:
        """dramatiq queue of dial messages (dramatiq adds ``.DQ`` and ``.XQ`` beside it)."""
        return f"{self.namespace}.dial"

    @staticmethod
    def routing_key(campaign_id: int, action: str) -> str:
        return f"campaign.{campaign_id}.{action}"
