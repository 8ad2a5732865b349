"""Contacts: import rows into a campaign, validated one by one.

Rows come as JSON (``{"contacts": [...]}``, each rejection names its ``index``) or as a
CSV body (header ``phone,name``; each rejection names its ``line`` in the file). Every
valid row is kept; every other row is rejected with the reason (E.164 phone via
phonenumbers, name, attributes, control or format characters in any of them
(:func:`shared.text.problem`), duplicates in the request or the campaign). All accepted
rows are inserted in one transaction: a server error leaves nothing of the request.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import insert, select, text

from control.auth.roles import Who
from control.auth.trail import record
from control.campaigns.service import Control
from shared.errors import Conflict, InvalidInput
from shared.models import Contact
from shared.phones import normalise_phone
from shared.states import ContactState, Status
from shared.text import problem, problem_in

# An import this large refreshes the table's statistics (PostgreSQL).
ANALYZE_AFTER = 1000
NAME_MAX = 200
SHOWN_MAX = 64  # characters of a rejected phone the answer shows back


def csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV whose first line is a header with a ``phone`` column.
    A field of any length is read (and then rejected by the row checks, by its line):
    see :func:`_within_field_limit`."""
    reader = csv.DictReader(_within_field_limit(lines))
    try:
        if not reader.fieldnames or "phone" not in reader.fieldnames:
            raise InvalidInput("body", "the first CSV line must be a header with a 'phone' column")
        for row in reader:
            yield reader.line_num, {"phone": row.get("phone"), "name": row.get("name") or None}
    except csv.Error as exc:  # the parse cannot go on reliably: nothing is imported
        line = reader.reader.line_num
        raise InvalidInput(
            "body", f"line {line} is not valid CSV ({exc}); nothing was imported"
        ) from None


def _within_field_limit(lines: Iterable[str]) -> Iterator[str]:
    """The lines, csv's field limit raised (process-wide, never lowered) to the characters
    read so far before each one is parsed. No field is longer than the body it is in, and
    the body is bounded by ``DIALGATE_MAX_IMPORT_BYTES``, so the limit stays bounded while
    a long field never stops the parse (resuming a parse after one could read the inside
    of a quoted field as rows)."""
    read = 0
    for line in lines:
        read += len(line)
        if read > csv.field_size_limit():
            csv.field_size_limit(read)
        yield line


def _checked_row(row: dict[str, Any]) -> tuple[str, str | None, Any]:
    """A row's phone (E.164), name and attributes, or ``ValueError`` saying what is wrong."""
    raw = row.get("phone")
    if isinstance(raw, str) and (bad := problem(raw)):
        raise ValueError(f"phone: {bad}")
    phone = normalise_phone(raw)
    name = row.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > NAME_MAX):
        raise ValueError(f"name must be text of at most {NAME_MAX} characters")
    if name is not None and (bad := problem(name)):
        raise ValueError(f"name: {bad}")
    attrs = row.get("attributes")
    if attrs is not None and not isinstance(attrs, dict):
        raise ValueError("attributes must be an object of key/value pairs")
    if attrs is not None and (bad := problem_in(attrs, "attributes")):
        raise ValueError(bad)
    return phone, name, attrs


def _shown(raw: Any) -> Any:
    """A rejected phone as the answer shows it back (a long one cut short)."""
    if isinstance(raw, str) and len(raw) > SHOWN_MAX:
        return raw[:SHOWN_MAX] + "…"
    return raw


def add_contacts(
    control: Control,
    campaign_id: int,
    rows: Iterable[tuple[int, dict[str, Any]]],
    where: str = "index",
    who: Who | None = None,
) -> dict[str, Any]:
    """Keep every valid row; reject the others one by one with the reason and ``where``
    it was (``index`` in a JSON list, ``line`` of a CSV file)."""
    rejected: list[dict[str, Any]] = []
    valid: dict[str, dict[str, Any]] = {}
    for index, row in rows:
        try:
            phone, name, attrs = _checked_row(row)
            if phone in valid:
                raise ValueError("duplicate: the same number appears earlier in this request")
        except ValueError as exc:
            rejected.append({where: index, "phone": _shown(row.get("phone")), "error": str(exc)})
            continue
        valid[phone] = {"index": index, "phone": phone, "name": name, "attributes": attrs}
    with control.sessions.begin() as s:
        c = control.get(s, campaign_id)
        if c.status not in (Status.DRAFT, Status.RUNNING, Status.PAUSED):
            raise Conflict(f"campaign {campaign_id} is {c.status}: contacts can't be added")
        phones = list(valid)
        existing: set[str] = set()
        for i in range(0, len(phones), 1000):
            existing.update(
                s.scalars(
                    select(Contact.phone).where(
                        Contact.campaign_id == campaign_id,
                        Contact.phone.in_(phones[i : i + 1000]),
                    )
                )
            )
        new = []
        for phone, row in valid.items():
            if phone in existing:
                rejected.append(
                    {
                        where: row["index"],
                        "phone": phone,
                        "error": "duplicate: already a contact of this campaign",
                    }
                )
            else:
                new.append(
                    {
                        "campaign_id": campaign_id,
                        "phone": phone,
                        "name": row["name"],
                        "attributes": row["attributes"],
                        "state": ContactState.PENDING.value,
                    }
                )
        for i in range(0, len(new), 5000):
            s.execute(insert(Contact), new[i : i + 5000])
        record(
            s,
            who,
            "contacts.imported",
            f"campaign:{campaign_id}",
            c.org,
            accepted=len(new),
            rejected=len(rejected),
        )
        postgres = s.get_bind().dialect.name == "postgresql"
    if len(new) >= ANALYZE_AFTER and postgres:
        # Fresh statistics now, not at autovacuum's next round: with the table's old ones
        # the planner sorts every contact of the campaign to count them by state.
        with control.sessions.begin() as s:
            s.execute(text("ANALYZE contacts"))
    rejected.sort(key=lambda r: int(r[where]))
    return {"accepted": len(new), "rejected": rejected}
