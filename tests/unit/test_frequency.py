"""The contact frequency limit's forms: the CLI's ``3/24h`` and the API's validation."""

from __future__ import annotations

import argparse

import pytest

from control.campaigns.org import validated
from control.cli.org import limit
from shared.errors import InvalidInput
from shared.frequency import Limit
from shared.keys import Keys


@pytest.mark.parametrize(
    ("text", "body"),
    [
        ("3/24h", {"calls": 3, "hours": 24}),
        ("3/1d", {"calls": 3, "hours": 24}),
        ("1/0.5h", {"calls": 1, "hours": 0.5}),
        (" 10/7D ", {"calls": 10, "hours": 168}),
        ("off", None),
        ("OFF", None),
    ],
)
def test_the_cli_reads_calls_per_hours_or_days_or_off(text: str, body: object):
    assert limit(text) == body


@pytest.mark.parametrize("text", ["3", "3/24", "3 per day", "3/24m", "-1/24h", "3/h", "", "a/b"])
def test_a_bad_form_is_refused_naming_the_forms_allowed(text: str):
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be CALLS/HOURSh .* or off"):
        limit(text)


def test_a_valid_limit_is_kept_and_null_clears_it():
    assert validated({"calls": 3, "hours": 24}) == Limit(3, 24.0)
    assert validated({"calls": 1000, "hours": 720}) == Limit(1000, 720.0)
    assert validated({"calls": 1, "hours": 0.01}) == Limit(1, 0.01)
    assert validated(None) is None


@pytest.mark.parametrize(
    ("raw", "field", "allowed"),
    [
        ({"calls": 0, "hours": 24}, "max_calls_per_number.calls", "from 1 to 1000"),
        ({"calls": 1001, "hours": 24}, "max_calls_per_number.calls", "from 1 to 1000"),
        ({"calls": 2.5, "hours": 24}, "max_calls_per_number.calls", "integer"),
        ({"calls": True, "hours": 24}, "max_calls_per_number.calls", "integer"),
        ({"calls": "3", "hours": 24}, "max_calls_per_number.calls", "integer"),
        ({"hours": 24}, "max_calls_per_number.calls", "integer"),
        ({"calls": 3, "hours": 0}, "max_calls_per_number.hours", "above 0 and at most 720"),
        ({"calls": 3, "hours": 720.5}, "max_calls_per_number.hours", "at most 720"),
        ({"calls": 3, "hours": float("inf")}, "max_calls_per_number.hours", "at most 720"),
        ({"calls": 3, "hours": "24h"}, "max_calls_per_number.hours", "number of hours"),
        ({"calls": 3, "hours": 24, "x": 1}, "max_calls_per_number.x", "unknown field"),
        ([3, 24], "max_calls_per_number", "or null for no limit"),
        ("3/24h", "max_calls_per_number", "or null for no limit"),
    ],
)
def test_a_bad_limit_is_refused_naming_the_field_and_what_is_allowed(
    raw: object, field: str, allowed: str
):
    with pytest.raises(InvalidInput) as err:
        validated(raw)
    assert err.value.message.startswith(f"{field}: ") and allowed in err.value.message


def test_a_limits_window_and_keys_share_the_organisations_hash_tag():
    assert Limit(3, 24).window_ms == 86_400_000 and Limit(2, 0.5).window_ms == 1_800_000
    assert Limit.of({"calls": 3, "hours": 24}) == Limit(3, 24.0) and Limit.of(None) is None
    k = Keys("ns")
    assert k.frequency("acme", "+33612345678") == "ns:{f:acme}:n:+33612345678"
    assert k.frequency_ready("acme") == "ns:{f:acme}:ready"
