"""The campaign state machine and the contact / attempt states.

Campaign::

    draft ──start──► running ◄──resume── paused
      │                │ └──pause──────────►│
      │                └─complete─► completed (system)
      └──────cancel──► cancelled ◄──cancel──┘  (from draft, running, paused)
"""

from __future__ import annotations

from enum import StrEnum

from shared.errors import IllegalTransition


class Status(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class Action(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    COMPLETE = "complete"


class Source(StrEnum):
    OPERATOR = "operator"
    SYSTEM = "system"
    API = "api"


# action -> (states it is allowed from, state it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status]] = {
    Action.START: (frozenset({Status.DRAFT}), Status.RUNNING),
    Action.PAUSE: (frozenset({Status.RUNNING}), Status.PAUSED),
    Action.RESUME: (frozenset({Status.PAUSED}), Status.RUNNING),
    Action.CANCEL: (frozenset({Status.DRAFT, Status.RUNNING, Status.PAUSED}), Status.CANCELLED),
    Action.COMPLETE: (frozenset({Status.RUNNING}), Status.COMPLETED),
}

TERMINAL = frozenset({Status.CANCELLED, Status.COMPLETED})
# Actions that close the gate: the answer waits for the campaign's leases to drain.
CLOSING = frozenset({Action.PAUSE, Action.CANCEL})


# Only the system completes a campaign (when nothing is left to dial).
SYSTEM_ONLY = frozenset({Action.COMPLETE})


def allowed_actions(status: Status) -> list[Action]:
    """What an operator may do from ``status`` (system-only actions left out)."""
    return [
        a for a, (sources, _) in TRANSITIONS.items() if status in sources and a not in SYSTEM_ONLY
    ]


def next_status(status: Status, action: Action) -> Status:
    """The state ``action`` leads to from ``status``, or :class:`IllegalTransition`."""
    sources, target = TRANSITIONS[action]
    if status not in sources:
        allowed = ", ".join(a.value for a in allowed_actions(status)) or "none (a final state)"
        raise IllegalTransition(
            f"cannot {action.value} a campaign that is {status.value}; allowed: {allowed}"
        )
    return target


class ContactState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    DIALING = "dialing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Its dial started and its worker vanished (lease expired, no outcome): the person may
    # have been called, so it is never dialed again automatically.
    UNKNOWN = "unknown"
    BLOCKED_DNC = "blocked_dnc"  # on the do-not-call list at dial time: never dialed


class AttemptState(StrEnum):
    QUEUED = "queued"  # a dial message is (or should be) in the queue
    DIALING = "dialing"  # passed the gate and the conditional update; provider being called
    DONE = "done"  # provider accepted the call
    FAILED = "failed"  # provider refused the call
    PARKED = "parked"  # gate denied (pause etc.): contact went back to pending
    CANCELLED = "cancelled"  # campaign cancelled before it was dialed
    UNKNOWN = "unknown"  # dialing when its worker vanished; never re-dialed automatically
    BLOCKED_DNC = "blocked_dnc"  # the number was on the do-not-call list at dial time
