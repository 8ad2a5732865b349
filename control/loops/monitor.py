"""The monitor: pauses a running campaign by itself when dialing goes wrong.

Every ``monitor_interval`` seconds, for each running campaign, it reads the outcomes of
the attempts finished since the campaign last started or resumed (the attempts table is
the outcome stream: the worker writes what the provider answered at placement, and each
call's disposition once it ended, from the back end or a provider's webhook) and applies
the rules, in order:

- ``auth_error``: any provider authentication/authorisation error → pause at once;
- ``consecutive_errors``: the last N outcomes are all provider errors;
- ``failure_ratio``: failures among the last ``window`` outcomes ≥ ``ratio``, once there are
  at least ``min_samples`` of them;
- ``outcomes_not_recorded``: attempts that started dialing longer than ``bound`` seconds ago
  and still have no outcome ("broken logging").

A rule that fires pauses through the transition service, like an operator, with
``source: system``, ``actor: monitor:<rule>`` and a reason saying what was measured against
which threshold. A campaign that is no longer running is left alone: a second firing, or a
second monitor process, meets the transition service's version check and the state
machine, and pauses nothing more. Thresholds are global settings, overridable per campaign
(``campaigns.monitor``). Resume stays a human act.

A **canary resume** (``campaigns.canary``: the first N calls after a resume are watched)
is judged first, every step: the gate grants no more than N calls until the verdict
(:mod:`shared.gate`), so the (N+1)th call never starts before it. More than
``max_failure_ratio`` × N of them failed (a provider error, a ``failed`` end, or no
outcome within the monitor's outcome bound) → paused again with a canary hold ("canary:
9 of 20 calls failed"); all N over and within the limit → a ``canary_passed`` transition
(recorded in the history), which takes the canary off the gate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from control.campaigns.service import Control
from control.loops.base import Loop
from shared import metrics
from shared.clients import REDIS_ERRORS
from shared.errors import Conflict
from shared.models import Attempt, Campaign, Transition, utcnow
from shared.settings import Settings
from shared.states import (
    DIALED,
    PROVIDER_ERRORS,
    Action,
    AttemptState,
    CallOutcome,
    Disposition,
    HoldKind,
    Source,
    Status,
)

# A call the provider took that ended ``failed`` (a SIP 4xx/5xx, a carrier error) counts
# as a failure too; busy and no answer are the callee's, not a fault.
FAILED = (*PROVIDER_ERRORS, Disposition.FAILED)
AUTH_CODES = (401, 407)  # a SIP call that failed so: the trunk refused our credentials


@dataclass(frozen=True)
class Rules:
    failure_ratio: float
    failure_window: int
    failure_min_samples: int
    consecutive_errors: int
    outcome_bound_s: float

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(
            settings.monitor_failure_ratio,
            settings.monitor_failure_window,
            settings.monitor_failure_min_samples,
            settings.monitor_consecutive_errors,
            settings.monitor_outcome_bound,
        )

    def overridden(self, raw: dict[str, Any] | None) -> Rules:
        return replace(self, **(raw or {}))


@dataclass(frozen=True)
class Firing:
    rule: str
    reason: str


def evaluate(
    rules: Rules, outcomes: list[str], unrecorded: int, oldest_unrecorded_s: float
) -> Firing | None:
    """The first rule that fires on these outcomes (newest first), or None. Pure."""
    if "auth_error" in outcomes:
        return Firing("auth_error", "the provider refused our credentials (auth error)")
    n = rules.consecutive_errors
    if len(outcomes) >= n and all(o in PROVIDER_ERRORS for o in outcomes[:n]):
        return Firing("consecutive_errors", f"{n} consecutive provider errors (threshold {n})")
    last = outcomes[: rules.failure_window]
    if len(last) >= rules.failure_min_samples:
        failed = sum(1 for o in last if o in FAILED)
        if failed / len(last) >= rules.failure_ratio:
            return Firing(
                "failure_ratio",
                f"failure rate {failed / len(last):.0%} over the last {len(last)} attempts "
                f"exceeds {rules.failure_ratio:.0%}",
            )
    if unrecorded:
        return Firing(
            "outcomes_not_recorded",
            f"{unrecorded} attempts without a recorded outcome, the oldest for "
            f"{oldest_unrecorded_s:.0f} s (bound {rules.outcome_bound_s:g} s)",
        )
    return None


class Monitor(Loop):
    name = "monitor"

    def __init__(self, settings: Settings, control: Control) -> None:
        super().__init__(settings.monitor_interval)
        self.control = control
        self.rules = Rules.of(settings)

    def step(self) -> int:
        with self.control.sessions() as s:
            running = list(
                s.execute(
                    select(Campaign.id, Campaign.monitor, Campaign.canary).where(
                        Campaign.status == Status.RUNNING.value
                    )
                )
            )
        paused = 0
        for cid, overrides, canary in running:
            if canary and self._judge_canary(cid, canary):
                paused += 1
                continue
            rules = self.rules.overridden(overrides)
            with self.control.sessions() as s:
                firing = evaluate(rules, *self._measure(s, cid, rules))
            if firing is not None and self._pause(cid, firing):
                paused += 1
        return paused

    @staticmethod
    def _measure(s: Session, cid: int, rules: Rules) -> tuple[list[str], int, float]:
        since = s.scalar(
            select(func.max(Transition.created_at)).where(
                Transition.campaign_id == cid, Transition.to_status == Status.RUNNING.value
            )
        )
        now = utcnow()
        since = since or now
        outcomes = list(
            s.execute(
                select(Attempt.outcome, Attempt.disposition, Attempt.sip_code)
                .where(
                    Attempt.campaign_id == cid,
                    Attempt.started_at >= since,
                    Attempt.outcome.is_not(None),
                )
                .order_by(Attempt.finished_at.desc(), Attempt.id.desc())
                .limit(max(rules.failure_window, rules.consecutive_errors))
            )
        )
        cutoff = now - timedelta(seconds=rules.outcome_bound_s)
        unrecorded, oldest = s.execute(
            select(func.count(), func.min(Attempt.started_at)).where(
                Attempt.campaign_id == cid,
                Attempt.started_at >= since,
                Attempt.started_at < cutoff,
                Attempt.outcome.is_(None),
                Attempt.state.in_([AttemptState.DIALING.value, AttemptState.UNKNOWN.value]),
            )
        ).one()
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        # what placing said, unless the provider took the call and it failed later (a
        # trunk that still challenges our credentials: an auth error)
        labels = [
            (CallOutcome.AUTH_ERROR.value if sip in AUTH_CODES else Disposition.FAILED.value)
            if o == CallOutcome.ACCEPTED and d == Disposition.FAILED
            else str(o)
            for o, d, sip in outcomes
        ]
        return labels, int(unrecorded), age

    def _judge_canary(self, cid: int, canary: dict[str, Any]) -> bool:
        """The canary's verdict once it has one; True if it paused the campaign."""
        with self.control.sessions() as s:
            calls, failed, settled = self._canary_calls(s, cid, canary)
        n, ratio = int(canary["calls"]), float(canary["max_failure_ratio"])
        spent = calls >= n or self._canary_spent(cid)
        if failed > ratio * n or (spent and settled == calls and calls and failed > ratio * calls):
            reason = f"canary: {failed} of {n} calls failed (at most {ratio:.0%} allowed)"
            return self._pause(cid, Firing("canary", reason), HoldKind.CANARY)
        if spent and settled == calls:
            summary = f"canary passed: {failed} of {calls} calls failed (at most {ratio:.0%})"
            try:
                self.control.transition(
                    cid,
                    Action.CANARY_PASSED,
                    actor="monitor:canary",
                    source=Source.SYSTEM,
                    reason=summary,
                )
            except Conflict:
                return False
            self.log.info("canary_passed", campaign_id=cid, calls=calls, failed=failed)
        return False

    def _canary_spent(self, cid: int) -> bool:
        """Has the gate granted every call of the canary (some may have been given back:
        the do-not-call list, the trunk's rate)?"""
        with contextlib.suppress(*REDIS_ERRORS):
            g = self.control.gate.read(cid)
            return g is not None and g.canary_spent
        return False

    def _canary_calls(self, s: Session, cid: int, canary: dict[str, Any]) -> tuple[int, int, int]:
        """The calls made since the canary resume: (placed, failed, settled)."""
        since = datetime.fromisoformat(canary["at"])
        bound = utcnow() - timedelta(seconds=self.rules.outcome_bound_s)
        rows = s.execute(
            select(Attempt.state, Attempt.outcome, Attempt.disposition, Attempt.started_at).where(
                Attempt.campaign_id == cid,
                Attempt.started_at >= since,
                Attempt.state.in_([a.value for a in DIALED]),
            )
        )
        calls = failed = settled = 0
        for state, outcome, disposition, started in rows:
            calls += 1
            late = started is not None and started < bound
            lost = outcome is None and (state == AttemptState.UNKNOWN or late)
            if outcome in PROVIDER_ERRORS or disposition == Disposition.FAILED or lost:
                failed += 1
                settled += 1
            elif state in (AttemptState.ENDED, AttemptState.UNKNOWN):
                settled += 1
        return calls, failed, settled

    def _pause(self, cid: int, firing: Firing, kind: HoldKind | None = None) -> bool:
        try:
            self.control.transition(
                cid,
                Action.PAUSE,
                actor=f"monitor:{firing.rule}",
                source=Source.SYSTEM,
                reason=firing.reason,
                hold=kind,
            )
        except Conflict:  # no longer running (another monitor, an operator): nothing to do
            return False
        self.log.warning("monitor_paused", campaign_id=cid, rule=firing.rule, reason=firing.reason)
        metrics.count(self.control.redis, self.control.keys, metrics.LoopCount.MONITOR_FIRINGS)
        return True
