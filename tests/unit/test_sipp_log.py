"""The far end's record (tests/support/sipp.py) read from a message trace in SIPp's own
format: retransmissions and re-sent challenged INVITEs are not new calls, the busiest
second and the most calls up at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tests.support.sipp import OUTCOMES, SippLog, number

T0 = datetime(2026, 1, 2, 3, 4, 5)


def _entry(at: float, sent: bool, start: str, call_id: str, cseq: str, branch: str) -> str:
    stamp = (T0 + timedelta(seconds=at)).strftime("%Y-%m-%d %H:%M:%S.%f")
    how = "UDP message sent (300 bytes):" if sent else "UDP message received [300] bytes :"
    return (
        f"----------------------------------------------- {stamp}\n{how}\n\n{start}\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\n"
        f"Call-ID: {call_id}\nCSeq: {cseq}\nX-Dialgate-Attempt: {call_id[1:]}\n"
        "X-Dialgate-Campaign: 4\nContent-Length: 0\n\n\n"
    )


def _invite(at: float, call_id: str, phone: str, cseq: int = 1, branch: str = "b1") -> str:
    return _entry(
        at, False, f"INVITE sip:{phone}@127.0.0.1:5060 SIP/2.0", call_id, f"{cseq} INVITE", branch
    )


def test_calls_are_counted_once_and_by_their_first_transmission(tmp_path: Path) -> None:
    a, b, c = number("answer", 1), number("auth", 2), number("busy", 3)
    trace = (
        _invite(0.0, "c1", a)
        + _invite(0.5, "c1", a)  # a retransmission
        + _entry(0.6, True, "SIP/2.0 200 OK", "c1", "1 INVITE", "b1")
        + _invite(0.7, "c2", b)
        + _entry(0.71, True, "SIP/2.0 401 Unauthorized", "c2", "1 INVITE", "b2")
        + _invite(0.72, "c2", b, cseq=2, branch="b3")  # the challenged INVITE again
        + _invite(1.2, "c3", c)
        + _entry(1.3, True, "SIP/2.0 486 Busy Here", "c3", "1 INVITE", "b1")
        + _entry(2.0, False, "BYE sip:x@127.0.0.1 SIP/2.0", "c1", "2 BYE", "b4")
        + _entry(2.5, False, "BYE sip:x@127.0.0.1 SIP/2.0", "c2", "3 BYE", "b5")
        + "----------------------------------------------- 2026-01-02 03:04:09.000000\n"
        + "UDP message rec"  # SIPp still writing this one
    )
    path = tmp_path / "messages.log"
    path.write_text(trace)
    log = SippLog(path)
    invites = log.invites()
    assert [(i.call_id, i.number, i.copies) for i in invites] == [
        ("c1", a, 2),
        ("c2", b, 1),
        ("c3", c, 1),
    ]
    assert (invites[0].attempt, invites[0].campaign) == (1, 4)
    assert log.invites_by_number() == {a: [invites[0]], b: [invites[1]], c: [invites[2]]}
    assert [i.call_id for i in log.invites_after(T0.timestamp() + 0.5)] == ["c2", "c3"]
    # c1 and c2, or c2 and c3: the copy at 0.5 s and the re-sent INVITE at 0.72 s are no calls
    assert log.max_invites_per_second() == 2
    assert log.max_concurrent_calls() == 3  # c1 0-2.0, c2 0.7-2.5, c3 1.2-1.3
    # none is over: c1 and c2 wait for the 200 to their BYE, c3 for the ACK of its 486
    assert not any(c.over for c in log.calls().values())
    assert [m.start.split()[0] for m in log.calls()["c2"].messages] == [
        "INVITE",
        "SIP/2.0",
        "INVITE",
        "BYE",
    ]


def test_numbers_pick_the_scenarios_branch() -> None:
    assert number("busy", 42) == "+4930486000042"
    assert {number(o, 0)[5:8] for o in OUTCOMES} == set(OUTCOMES.values())
