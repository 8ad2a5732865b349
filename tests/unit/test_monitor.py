"""The monitor's rules on given outcomes (newest first): which fires, and what it says."""

from __future__ import annotations

from control.loops.monitor import Rules, evaluate

RULES = Rules(
    failure_ratio=0.25,
    failure_window=200,
    failure_min_samples=50,
    consecutive_errors=10,
    outcome_bound_s=60,
)


def test_one_authentication_error_fires_at_once():
    f = evaluate(RULES, ["accepted"] * 5 + ["auth_error"], 0, 0)
    assert f is not None and f.rule == "auth_error"


def test_n_consecutive_provider_errors_fire_but_n_minus_one_do_not():
    assert evaluate(RULES, ["provider_error"] * 9 + ["accepted"] * 40, 0, 0) is None
    f = evaluate(RULES, ["provider_error"] * 10 + ["accepted"] * 40, 0, 0)
    assert f is not None and f.rule == "consecutive_errors"
    assert f.reason == "10 consecutive provider errors (threshold 10)"


def test_the_failure_ratio_needs_its_minimum_samples_and_says_measured_against_threshold():
    few = ["accepted", "provider_error"] * 24  # 50 % of 48 samples: not enough samples yet
    assert evaluate(RULES, few, 0, 0) is None
    outcomes = (["failed", "accepted", "accepted"] * 70)[:200]  # 67 of 200 failed
    f = evaluate(RULES, outcomes + ["failed"] * 100, 0, 0)  # older outcomes are out of window
    assert f is not None and f.rule == "failure_ratio"
    assert f.reason == "failure rate 34% over the last 200 attempts exceeds 25%"
    assert evaluate(RULES, ["failed"] + ["accepted"] * 199, 0, 0) is None


def test_attempts_without_an_outcome_beyond_the_bound_fire():
    f = evaluate(RULES, ["accepted"] * 3, 2, 75.4)
    assert f is not None and f.rule == "outcomes_not_recorded"
    assert f.reason == "2 attempts without a recorded outcome, the oldest for 75 s (bound 60 s)"


def test_a_campaign_overrides_only_the_thresholds_it_names():
    r = RULES.overridden({"consecutive_errors": 3})
    assert r.consecutive_errors == 3 and r.failure_ratio == 0.25
    assert RULES.overridden(None) == RULES
