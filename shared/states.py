"""The campaign state machine and the contact / attempt states.

Campaign::

    draft ──start──► running ◄──resume── paused
      │                │ └──pause──────────►│
      │                └─complete─► completed (system)
      └──────cancel──► cancelled ◄──cancel──┘  (from draft, running, paused)

``lift_cap`` (system) keeps the status: it ends a temporary concurrency cap that a
resume set (``running`` or ``paused``), as a transition of its own.
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
    LIFT_CAP = "lift_cap"


class Source(StrEnum):
    OPERATOR = "operator"
    SYSTEM = "system"
    API = "api"


# action -> (states it is allowed from, state it leads to; None: the status stays)
TRANSITIONS: dict[Action, tuple[frozenset[Status], Status | None]] = {
    Action.START: (frozenset({Status.DRAFT}), Status.RUNNING),
    Action.PAUSE: (frozenset({Status.RUNNING}), Status.PAUSED),
    Action.RESUME: (frozenset({Status.PAUSED}), Status.RUNNING),
    Action.CANCEL: (frozenset({Status.DRAFT, Status.RUNNING, Status.PAUSED}), Status.CANCELLED),
    Action.COMPLETE: (frozenset({Status.RUNNING}), Status.COMPLETED),
    Action.LIFT_CAP: (frozenset({Status.RUNNING, Status.PAUSED}), None),
}

TERMINAL = frozenset({Status.CANCELLED, Status.COMPLETED})
# Actions that close the gate: the answer waits for the campaign's leases to drain.
CLOSING = frozenset({Action.PAUSE, Action.CANCEL})


# Only the system completes a campaign (when nothing is left to dial) and lifts a cap
# (when its time is up).
SYSTEM_ONLY = frozenset({Action.COMPLETE, Action.LIFT_CAP})
# The operator's actions (the ``POST /api/v1/campaigns/{id}/{action}`` route's).
OPERATOR_ACTIONS = tuple(a for a in Action if a not in SYSTEM_ONLY)


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
    return status if target is None else target


class ContactState(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    DIALING = "dialing"
    DONE = "done"
    FAILED = "failed"
    # Its last call failed and its campaign's policy allows another: the feeder queues it
    # again once ``retry_at`` has passed, as a new attempt that passes the gate.
    RETRY_WAIT = "retry_wait"
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


class CallOutcome(StrEnum):
    """What a provider answered when the worker placed a call (``attempts.outcome``)."""

    ACCEPTED = "accepted"
    PROVIDER_ERROR = "provider_error"
    AUTH_ERROR = "auth_error"  # the provider refused our credentials


class ReportedOutcome(StrEnum):
    """What a provider reports of an attempt after the call, by its webhook
    (``POST /api/v1/provider/events``); it overwrites ``attempts.outcome``."""

    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    PROVIDER_ERROR = CallOutcome.PROVIDER_ERROR.value
    AUTH_ERROR = CallOutcome.AUTH_ERROR.value


class DenyReason(StrEnum):
    """Why a dial was not placed (``attempts.deny_reason``, the label of the workers'
    ``dialgate_dials_denied`` metric)."""

    # The gate's claim (shared.gate): the gate's status when it is not running, ...
    DRAFT = Status.DRAFT.value
    PAUSED = Status.PAUSED.value
    CANCELLED = Status.CANCELLED.value
    COMPLETED = Status.COMPLETED.value
    # ... no gate, a gate older than a version the worker heard of, every slot taken, the
    # emergency stop, Redis away (fail closed).
    GATE_MISSING = "gate_missing"
    GATE_BEHIND = "gate_behind"
    CONCURRENCY = "concurrency"
    ESTOP = "estop"
    REDIS_ERROR = "redis_error"
    # The checks beside the claim (worker.checks): outside the calling window, on the
    # do-not-call list, the list unknown (Redis lost it or is away: fail closed).
    CALLING_WINDOW = "calling_window"
    DNC = "dnc"
    DNC_UNKNOWN = "dnc_unknown"
    # The worker left a message early (an error) with an attempt it had started ahead.
    ABORTED = "aborted"
