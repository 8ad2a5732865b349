"""Calls written straight into a stack's database: attempts with the instants a test
chooses (no worker needed), for the campaign page's chart of the last hour."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from shared.models import Attempt, Contact
from tests.support.stack import TestStack

# (started_at, finished_at, attempt state, disposition)
Call = tuple[datetime | None, datetime | None, str, str | None]


def insert_calls(stack: TestStack, cid: int, calls: list[Call]) -> None:
    """One attempt per call, on the campaign's contacts in turn."""
    assert stack.stack is not None
    with stack.stack.control.sessions.begin() as s:
        contacts = list(s.scalars(select(Contact.id).where(Contact.campaign_id == cid)))
        for i, (started, finished, state, disposition) in enumerate(calls):
            s.add(
                Attempt(
                    campaign_id=cid,
                    contact_id=contacts[i % len(contacts)],
                    state=state,
                    worker_id="w-test",
                    started_at=started,
                    finished_at=finished,
                    disposition=disposition,
                )
            )
