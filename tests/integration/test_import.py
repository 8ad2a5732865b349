"""Contacts imported from a CSV of more than 100,000 rows in one streamed request."""

from __future__ import annotations

from tests.support.stack import phones


def test_a_csv_of_120000_rows_is_imported_in_one_request_with_bad_lines_named(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.api("POST", "/campaigns", expect=201, json={"name": "big import"})["id"]
    good = phones(120_000)
    lines = ["phone,name", *(f"{p},n{i}" for i, p in enumerate(good))]
    lines.insert(50_001, "12,too short")  # file line 50,002
    lines.append(f"{good[7]},again")  # the last line: a duplicate of line 9

    def body():  # sent in chunks, as the CLI streams a file
        text = ("\n".join(lines) + "\n").encode()
        for i in range(0, len(text), 65_536):
            yield text[i : i + 65_536]

    res = stack.api(
        "POST",
        f"/campaigns/{cid}/contacts",
        content=body(),
        headers={"Content-Type": "text/csv"},
    )
    assert res["accepted"] == 120_000
    assert [(r["line"], r["phone"]) for r in res["rejected"]] == [
        (50_002, "12"),
        (len(lines), good[7]),
    ], res["rejected"]
    assert "duplicate" in res["rejected"][1]["error"]
    assert stack.campaign(cid)["counts"]["pending"] == 120_000


def test_a_csv_without_a_phone_header_is_refused_and_nothing_is_added(make_stack):
    stack = make_stack().start(loops=False)
    cid = stack.api("POST", "/campaigns", expect=201, json={"name": "bad import"})["id"]
    err = stack.api(
        "POST",
        f"/campaigns/{cid}/contacts",
        expect=422,
        content=b"number,name\n+33612345678,Ada\n",
        headers={"Content-Type": "text/csv"},
    )["error"]
    assert "body" in err["message"] and "phone" in err["message"], err
    assert stack.campaign(cid)["counts"]["pending"] == 0
