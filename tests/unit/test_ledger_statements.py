"""The ledger's statements, built once: what each one does to a row, without a database.

Each statement compiles on both dialects; :func:`effect` reads its WHERE clause and its SET
values as what they mean (an update of the rows the condition holds for) and applies them
to a row given as a dict, with the parameters the ledger passes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ClauseElement,
    ColumnClause,
    Grouping,
    Tuple,
)

from shared.messages import DialArgs
from worker import ledger
from worker.ledger import (
    PARK_ATTEMPTS,
    PARK_CONTACTS,
    PARK_QUEUED,
    START_ATTEMPTS,
    START_CONTACTS,
)

T = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
STATEMENTS = [
    "START_ATTEMPTS",
    "START_CONTACTS",
    "PARK_ATTEMPTS",
    "PARK_QUEUED",
    "PARK_CONTACTS",
]
DIALECTS = [postgresql.dialect(), sqlite.dialect()]


def value(e: ClauseElement, row: dict[str, Any], params: dict[str, Any]) -> Any:
    """The value of an expression for ``row``: a condition's truth, a column's value."""
    if isinstance(e, Grouping):
        return value(e.element, row, params)
    if isinstance(e, ColumnClause):
        return row[e.name]
    if isinstance(e, BindParameter):
        if e.value is not None:  # a literal the statement was built with
            return e.value
        return params[e.key]  # a parameter the caller must pass (KeyError: it did not)
    if isinstance(e, Tuple):
        return tuple(value(c, row, params) for c in e.clauses)
    if isinstance(e, BooleanClauseList):
        parts = [value(c, row, params) for c in e.clauses]
        if e.operator is operators.and_:
            return all(parts)
        if e.operator is operators.or_:
            return any(parts)
    if isinstance(e, BinaryExpression):
        left, right = value(e.left, row, params), value(e.right, row, params)
        if e.operator is operators.eq:
            return left == right
        if e.operator is operators.in_op:
            return left in right
    raise AssertionError(f"no meaning given to {type(e).__name__} {e!r} in these tests")


def effect(stmt: Update, row: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
    """The row after ``stmt`` ran with ``params``; ``None`` when its condition left it alone."""
    assert stmt.whereclause is not None
    if not value(stmt.whereclause, row, params):
        return None
    # The SET clause as built (SQLAlchemy keeps it as column -> expression).
    assigned = stmt._values.items()  # type: ignore[attr-defined]
    sets = {getattr(col, "key", col): value(e, row, params) for col, e in assigned}
    return {**row, **sets}


def needed(stmt: Any, dialect: Any) -> set[str]:
    """The parameters a compiled statement needs from its caller."""
    return {k for k, v in stmt.compile(dialect=dialect).params.items() if v is None}


def args(**over: Any) -> DialArgs:
    base: dict[str, Any] = {
        "attempt_id": 7,
        "campaign_id": 3,
        "contact_id": 70,
        "phone": "+33612345678",
        "epoch": "e1",
    }
    return DialArgs(**{**base, **over})


def attempt(state: str, **over: Any) -> dict[str, Any]:
    row = {
        "id": 7,
        "campaign_id": 3,
        "contact_id": 70,
        "state": state,
        "worker_id": None,
        "started_at": None,
        "finished_at": None,
        "outcome": None,
        "provider_call_id": None,
        "gate_version": None,
        "deny_reason": None,
    }
    return {**row, **over}


def contact(state: str, **over: Any) -> dict[str, Any]:
    row = {"id": 70, "state": state, "retry_at": None, "updated_at": None, "dial_after": None}
    return {**row, **over}


@pytest.mark.parametrize("name", STATEMENTS)
@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_every_statement_compiles_on_postgresql_and_sqlite(name: str, dialect: Any):
    sql = getattr(ledger, name).compile(dialect=dialect).string
    assert sql.startswith("UPDATE" if name != "CAMPAIGN_STATUS_SHARED" else "SELECT")
    assert "WHERE" in sql.split()


# -- queued → dialing -----------------------------------------------------------------------
START = {"keys": [(7, 3, 70)], "w": "worker-a", "t": T}


def test_the_start_moves_a_queued_attempt_to_dialing_under_this_worker():
    after = effect(START_ATTEMPTS, attempt("queued"), START)
    assert after == attempt("dialing", worker_id="worker-a", started_at=T)


@pytest.mark.parametrize("state", ["dialing", "done", "failed", "parked", "cancelled", "unknown"])
def test_the_start_leaves_an_attempt_that_is_no_longer_queued_alone(state: str):
    assert effect(START_ATTEMPTS, attempt(state), START) is None


def test_the_start_moves_only_the_attempt_whose_campaign_and_contact_match_its_message():
    assert effect(START_ATTEMPTS, attempt("queued", campaign_id=4), START) is None
    assert effect(START_ATTEMPTS, attempt("queued", contact_id=71), START) is None
    assert effect(START_ATTEMPTS, attempt("queued", id=8), START) is None
    several = {**START, "keys": [(8, 3, 71), (7, 3, 70)]}
    assert effect(START_ATTEMPTS, attempt("queued"), several) is not None


def test_the_start_returns_each_moved_attempt_with_its_contact():
    assert [c.name for c in START_ATTEMPTS._returning] == ["id", "contact_id"]  # type: ignore[attr-defined]


def test_the_start_reads_the_number_to_dial_from_each_started_contact_as_stored():
    returned = START_CONTACTS._returning  # type: ignore[attr-defined]
    assert [(c.table.name, c.name) for c in returned] == [("contacts", "id"), ("contacts", "phone")]


def test_the_contacts_of_started_attempts_go_dialing():
    after = effect(START_CONTACTS, contact("queued"), {"ids": [70], "t": T})
    assert after == contact("dialing", updated_at=T)
    assert effect(START_CONTACTS, contact("queued"), {"ids": [71], "t": T}) is None


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_the_start_needs_exactly_what_the_ledger_passes(dialect: Any):
    assert needed(START_ATTEMPTS, dialect) == {"keys", "w", "t"}
    assert needed(START_CONTACTS, dialect) == {"ids", "t"}


# -- parking a denied dial ------------------------------------------------------------------
PARK = {"ids": [7, 8], "w": "worker-a", "st": "parked", "why": "paused", "t": T}


def test_a_park_ends_the_attempts_this_worker_is_dialing_with_the_reason():
    row = attempt("dialing", worker_id="worker-a")
    after = effect(PARK_ATTEMPTS, row, PARK)
    assert after == {**row, "state": "parked", "deny_reason": "paused", "finished_at": T}
    assert effect(PARK_ATTEMPTS, attempt("dialing", worker_id="worker-a", id=9), PARK) is None
    assert [c.name for c in PARK_ATTEMPTS._returning] == ["contact_id"]  # type: ignore[attr-defined]


def test_a_park_leaves_another_workers_attempt_alone():
    assert effect(PARK_ATTEMPTS, attempt("dialing", worker_id="worker-b"), PARK) is None


@pytest.mark.parametrize("state", ["queued", "done", "failed", "unknown"])
def test_a_park_leaves_an_attempt_that_is_not_dialing_alone(state: str):
    assert effect(PARK_ATTEMPTS, attempt(state, worker_id="worker-a"), PARK) is None


def test_a_message_parked_without_being_started_parks_only_attempts_still_queued():
    how = {"ids": [7, 8], "st": "parked", "why": "paused", "t": T}
    after = effect(PARK_QUEUED, attempt("queued"), how)
    assert after == {
        **attempt("queued"),
        "state": "parked",
        "deny_reason": "paused",
        "finished_at": T,
    }
    assert effect(PARK_QUEUED, attempt("dialing", worker_id="worker-b"), how) is None
    assert effect(PARK_QUEUED, attempt("queued", id=9), how) is None
    assert [c.name for c in PARK_QUEUED._returning] == ["contact_id"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("state", ["dialing", "queued"])
def test_a_parked_contact_waits_until_dial_after(state: str):
    later = T + timedelta(hours=3)
    how = {"ids": [70], "st": "pending", "t": T, "after": later}
    after = effect(PARK_CONTACTS, contact(state), how)
    assert after == contact("pending", updated_at=T, dial_after=later)


@pytest.mark.parametrize("state", ["pending", "done", "failed", "retry_wait", "cancelled"])
def test_a_park_never_moves_a_contact_that_was_not_queued_or_dialing(state: str):
    how = {"ids": [70], "st": "pending", "t": T, "after": None}
    assert effect(PARK_CONTACTS, contact(state), how) is None


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_the_park_statements_need_exactly_what_the_ledger_passes(dialect: Any):
    assert needed(PARK_ATTEMPTS, dialect) == {"ids", "w", "st", "why", "t"}
    assert needed(PARK_QUEUED, dialect) == {"ids", "st", "why", "t"}
    assert needed(PARK_CONTACTS, dialect) == {"ids", "st", "t", "after"}
