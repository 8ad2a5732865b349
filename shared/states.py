"""The campaign state machine and the contact / attempt states.

Campaign::

    draft ──start──► running ◄──resume── paused
      │                │ └──pause──────────►│
      │                └─complete─► completed (system)
      └──────cancel──► cancelled ◄──cancel──┘  (from draft, running, paused)

``lift_cap`` (system) keeps the status: it ends a temporary concurrency cap that a
resume set (``running`` or ``paused``), as a transition of its own. So do ``hold`` (a
pause of a campaign already paused: one more hold, :class:`HoldKind`) and
``canary_passed`` (system: the calls a canary resume watched went well).

A paused campaign is paused while any hold remains: a resume releases every hold or none.
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
    HOLD = "hold"  # one more hold on a campaign already paused
    CANARY_PASSED = "canary_passed"


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
    Action.HOLD: (frozenset({Status.PAUSED}), None),
    Action.CANARY_PASSED: (frozenset({Status.RUNNING}), None),
}

TERMINAL = frozenset({Status.CANCELLED, Status.COMPLETED})
# Actions that close the gate: the answer waits for the campaign's leases to drain.
CLOSING = frozenset({Action.PAUSE, Action.CANCEL, Action.HOLD})


# Only the system completes a campaign (when nothing is left to dial), lifts a cap (when
# its time is up) and passes a canary; a hold is asked for with a pause.
SYSTEM_ONLY = frozenset({Action.COMPLETE, Action.LIFT_CAP, Action.CANARY_PASSED, Action.HOLD})
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


class HoldKind(StrEnum):
    """Who or what holds a paused campaign (``holds.kind``), and so who may release it."""

    OPERATOR = "operator"  # a person's pause: a supervisor or admin releases it
    MONITOR = "monitor"  # a monitor rule (or a monitor's token): released once acknowledged
    ALERT = "alert"  # an Alertmanager alert: released once acknowledged
    ORG_STOP = "org_stop"  # the organisation's emergency stop: a supervisor or admin
    COMPLIANCE = "compliance"  # two people: one asks for the release, another approves it
    CANARY = "canary"  # a canary resume that failed: released once acknowledged


# Holds released only by a resume that names their rule in ``acknowledge``.
ACKNOWLEDGED = frozenset({HoldKind.MONITOR, HoldKind.ALERT, HoldKind.CANARY})


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
    """One dial attempt: ``queued → dialing → ringing → answered → ended``, or it ends early
    (any live state → ``ended``), or it is never dialed (``parked``, ``cancelled``,
    ``blocked_dnc``). How it ended is its :class:`Disposition`."""

    QUEUED = "queued"  # a dial message is (or should be) in the queue
    DIALING = "dialing"  # passed the gate and the conditional update; the call is being placed
    RINGING = "ringing"  # the far end rings
    ANSWERED = "answered"  # the far end answered; the call is up
    ENDED = "ended"  # the call is over: see its disposition
    PARKED = "parked"  # gate denied (pause etc.): contact went back to pending
    CANCELLED = "cancelled"  # campaign cancelled before it was dialed
    UNKNOWN = "unknown"  # live when its worker vanished; never re-dialed automatically
    BLOCKED_DNC = "blocked_dnc"  # the number was on the do-not-call list at dial time


# A call is up in these states: what ``live`` counts and a line covers.
LIVE = frozenset({AttemptState.DIALING, AttemptState.RINGING, AttemptState.ANSWERED})
# States of an attempt that was dialed (a call may have reached the person).
DIALED = LIVE | {AttemptState.ENDED, AttemptState.UNKNOWN}


class Disposition(StrEnum):
    """How a call ended (``attempts.disposition``)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    DECLINED = "declined"
    FAILED = "failed"  # refused by the provider or the network (SIP 4xx/5xx, an API error)
    CANCELED = "canceled"  # we hung it up before it was answered
    MACHINE = "machine"  # an answering machine answered (where the back end detects it)


# Dispositions that reached the person (or their machine): the contact is done.
REACHED = frozenset({Disposition.ANSWERED, Disposition.MACHINE})


class CallEventKind(StrEnum):
    """What a back end (or a provider's webhook) reports of a call, in the order of its life.
    ``placed``: the provider has the call (what it answered at placement: ``outcome``)."""

    PLACED = "placed"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Hangup(StrEnum):
    """Which live calls a pause, cancel or emergency stop hangs up."""

    NONE = "none"  # calls already up continue (a pause's default)
    RINGING = "ringing"  # calls not yet answered are cancelled (cancel's and estop's default)
    ALL = "all"  # answered calls are ended too (force stop)


class CallOutcome(StrEnum):
    """What a provider answered when the worker placed a call (``attempts.outcome``)."""

    ACCEPTED = "accepted"
    PROVIDER_ERROR = "provider_error"
    AUTH_ERROR = "auth_error"  # the provider refused our credentials


# What the provider answered when it failed us: the monitor's and the preflight's failures
# (with a call that ended ``failed``).
PROVIDER_ERRORS = (CallOutcome.PROVIDER_ERROR, CallOutcome.AUTH_ERROR)


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
    LINES = "lines"  # every line (live call) of the campaign is taken
    CPS = "cps"  # the campaign's or the provider's calls-per-second limit is reached
    ESTOP = "estop"
    CANARY = "canary"  # a canary resume's calls are all out: the rest wait for its verdict
    REDIS_ERROR = "redis_error"
    # The checks beside the claim (worker.checks): outside the calling window, on the
    # do-not-call list, the list unknown (Redis lost it or is away: fail closed).
    CALLING_WINDOW = "calling_window"
    DNC = "dnc"
    DNC_UNKNOWN = "dnc_unknown"
    # The organisation's contact frequency limit (shared.frequency): the number was called
    # as often as the limit allows within its rolling window (the contact waits until the
    # oldest counted call leaves it), or the counts are not known in Redis / Redis is away
    # (fail closed: the contact waits a little and is tried again).
    FREQUENCY = "frequency"
    FREQUENCY_UNKNOWN = "frequency_unknown"
    # The worker left a message early (an error) with an attempt it had started ahead.
    ABORTED = "aborted"
