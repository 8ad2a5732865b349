"""How the CLI prints: tables padded by visible width, status colours on a terminal,
the campaign, its transitions and its diagnosis.

Every value that came from the API is printed through :func:`esc`
(:func:`shared.text.terminal`): a name, reason or actor holding ESC, C1 or bidi
characters prints as escapes (``\\x1b``), never as terminal commands. Table cells are
escaped by :func:`table` itself; a status colour is added after escaping
(:class:`Painted`). ``--json`` output is escaped by ``json.dumps`` (ASCII only)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from shared.states import ContactState
from shared.text import terminal

STATES = [s.value for s in ContactState]
# ANSI colours of each status, used only when stdout is a terminal (and NO_COLOR is unset).
COLOURS = {"running": "1;32", "paused": "1;33", "draft": "1", "cancelled": "2", "completed": "2"}


def esc(value: Any) -> str:
    """A value as text safe to print on a terminal (control and format characters
    escaped)."""
    return terminal(value)


def paint(text: str, code: str | None) -> str:
    """``text`` escaped, then coloured (on a terminal, unless NO_COLOR is set)."""
    text = esc(text)
    if not code or not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\033[{code}m{text}\033[0m"


@dataclass(frozen=True)
class Painted:
    """A table cell with a colour: escaped like any cell, coloured after."""

    text: str
    code: str | None

    def shown(self) -> str:
        return paint(self.text, self.code)


Cell = str | Painted


def status(status: str) -> str:
    return paint(status, COLOURS.get(status))


def status_cell(status: str) -> Painted:
    return Painted(status, COLOURS.get(status))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(rows: list[list[Cell]], header: list[str]) -> None:
    """Columns padded by their visible width; every cell escaped (:func:`esc`), colours
    added after (they take no room)."""

    def text(x: Cell) -> str:
        return esc(x.text if isinstance(x, Painted) else x)

    def shown(x: Cell) -> str:
        return x.shown() if isinstance(x, Painted) else esc(x)

    lines: list[list[Cell]] = [list(header), *rows]
    widths = [max(len(text(x)) for x in col) for col in zip(*lines, strict=False)]
    for row in lines:
        cells = [shown(x) + " " * (w - len(text(x))) for x, w in zip(row, widths, strict=False)]
        print("  ".join(cells).rstrip())


def show(c: dict[str, Any]) -> None:
    print(f"campaign {esc(c['id'])}  {esc(c['name'])}")
    print(f"  status        {status(c['status'])} (version {esc(c['version'])})")
    if c.get("paused_at"):
        src = f" by {esc(c['pause_source'])}" if c.get("pause_source") else ""
        why = f": {esc(c['pause_reason'])}" if c.get("pause_reason") else ""
        print(f"  paused        since {esc(c['paused_at'])}{src}{why}")
    print(f"  concurrency   {esc(c['max_concurrency'])}   timezone {esc(c['timezone'])}")
    if c.get("cap"):
        print(
            f"  temporary cap {esc(c['cap']['max_concurrency'])} until {esc(c['cap']['until'])} "
            "(lifts by itself)"
        )
    cps = f"{esc(c['max_cps'])}/s" if c.get("max_cps") else "no limit"
    print(f"  lines         {esc(c['max_lines'])}   calls per second {cps}")
    retry = ", ".join(f"{esc(d)} after {esc(s)} s" for d, s in sorted(c["retry"].items()))
    print(
        f"  retries       {esc(c['max_attempts'])} calls at most"
        + (f"; {retry}" if retry else "; every end is final")
    )
    w = c.get("calling_window")
    if w:
        local = ", and in each contact's local time" if w.get("contact_local_time") else ""
        days = esc(",".join(w["days"]))
        print(f"  window        {days} {esc(w['start'])}-{esc(w['end'])}{local}")
    for h in c.get("holds") or []:
        print(f"  hold          {hold(h)}")
        print(f"                releasing it takes: {esc(h['needs'])}")
    for cause in c.get("pause_causes") or []:
        flag = "  REPEATED CAUSE: fix the process" if cause["repeated"] else ""
        print(
            f"  held for      {esc(cause_name(cause))}: {esc(cause['last_24h'])} in 24 h, "
            f"{esc(cause['last_7d'])} in 7 days{flag}"
        )
    if (c.get("dialing") or {}).get("blocked_by") == "calling_window":
        opens = esc(c["dialing"]["opens_at"])
        print(f"  NOT DIALING   outside the calling window; opens at {opens}")
    if "counts" in c:  # a transition's answer has none: `dialgate show` counts
        counts = c["counts"]
        print("  contacts      " + "  ".join(f"{s} {esc(counts.get(s, 0))}" for s in STATES))
        live = c.get("live") or {}
        print(
            f"  calls up      ringing {esc(live.get('ringing', 0))}  "
            f"answered {esc(live.get('answered', 0))}"
        )
        ended = {d: n for d, n in (c.get("dispositions") or {}).items() if n}
        print(
            "  dispositions  "
            + ("  ".join(f"{esc(d)} {esc(n)}" for d, n in sorted(ended.items())) or "none yet")
        )
    if c.get("inflight") is not None:
        print(f"  in flight     {esc(c['inflight'])}")
    p = c.get("propagation")
    if p:
        print(
            f"  propagation   version {esc(p['version'])} acknowledged by "
            f"{esc(p['workers_acked'])} of {esc(p['workers_live'])} live workers"
        )
    if c.get("emergency_stop"):
        print("  EMERGENCY STOP in force: nothing dials")
    gate = c.get("gate")
    if gate and "drained" in gate:
        state = "drained" if gate["drained"] else f"NOT drained ({esc(gate['inflight'])} in flight)"
        print(f"  gate          closed, {state} in {esc(gate['drain_ms'])} ms")
        if gate.get("live_calls") is not None or gate.get("hung_up") is not None:
            print(f"  calls         {hangups(gate)}")
    allowed = esc(", ".join(c.get("allowed_actions", []))) or "none"
    print(f"  actions       {allowed}")


def show_overview(o: dict[str, Any]) -> None:
    """The campaign page's facts: the campaign, first dial after resume, transitions, why."""
    show(o["campaign"])
    first = o.get("first_after_resume")
    if first:
        if first.get("started_at"):
            print(
                f"  after resume  first dial {esc(first['started_at'])} "
                f"(attempt {esc(first['attempt_id'])} on {esc(first['worker_id'])}, "
                f"{esc(first['after_s'])} s after the resume)"
            )
        else:
            print(f"  after resume  no dial yet since {esc(first['resumed_at'])}")
    print("recent transitions")
    transitions(o["transitions"])
    why(o["diagnosis"])


def hold(h: dict[str, Any]) -> str:
    rule = f" {esc(h['rule'])}" if h.get("rule") else ""
    why = f": {esc(h['reason'])}" if h.get("reason") else ""
    by = f"by {esc(h['placed_by'])} at {esc(h['placed_at'])}"
    return f"#{esc(h['id'])} {esc(h['kind'])}{rule} {by}{why}"


def cause_name(cause: dict[str, Any]) -> str:
    return f"{cause['kind']} {cause['rule'] or cause['reason'] or ''}".strip()


def preflight(p: dict[str, Any]) -> None:
    verdict = "would go ahead" if p["would_resume"] else "would be refused"
    print(f"campaign {esc(p['campaign_id'])} ({esc(p['status'])}): a resume now {verdict}")
    k = p["contacts"]
    print(
        f"  contacts      pending {esc(k['pending'])}, dialable now {esc(k['dialable_now'])}, "
        f"outside the window {esc(k['calling_window']['contacts'])}, do-not-call {esc(k['dnc'])}"
        f", waiting {esc(k['waiting'])}"
    )
    pr = p["provider"]
    share = "no calls yet" if pr["failure_share"] is None else f"{pr['failure_share']:.0%} failed"
    print(f"  provider      last {esc(pr['recent'])} calls: {esc(share)}")
    w = p["workers"]
    print(f"  workers       {esc(w['live'])} live, {esc(w['acknowledged'])} on the latest version")
    for h in p["holds"]:
        print(f"  hold          {hold(h)}")
    for f in p["findings"]:
        more = " (override with --override " + esc(f["code"]) + ")" if f["overridable"] else ""
        print(f"  {esc(f['severity']).upper():<13} {esc(f['message'])}{more}")


def transitions(rows: list[dict[str, Any]]) -> None:
    table(
        [
            [
                str(t["version"]),
                str(t["at"])[:23],
                t["action"],
                f"{t['from']}→{t['to']}",
                t["actor"],
                t["source"],
                (t["reason"] or "")
                + (
                    f" (cap {t['cap']['max_concurrency']} until {t['cap']['until']})"
                    if t.get("cap")
                    else ""
                )
                + (f" — {t['note']}" if t.get("note") else ""),
            ]
            for t in rows
        ],
        ["V", "AT", "ACTION", "CHANGE", "ACTOR", "SOURCE", "REASON"],
    )


def why(d: dict[str, Any]) -> None:
    head = f"campaign {esc(d['campaign_id'])} ({esc(d['status'])})"
    if not d["reasons"]:
        print(f"{head}: nothing stops it from dialing")
        return
    print(f"{head}: {len(d['reasons'])} reason(s)")
    for r in d["reasons"]:
        print(f"- {esc(r['title'])} [{esc(r['code'])}]")
        print(f"    evidence  {esc(r['evidence'])}")
        print(f"    fix       {esc(r['fix'])}")


def hangups(gate: dict[str, Any]) -> str:
    """What a closing answer says of the calls up: how many are left, how many hung up."""
    parts = []
    if gate.get("hung_up") is not None:
        done = "all ended" if gate.get("hangup_complete") else "NOT all ended in time"
        parts.append(f"hung up {esc(gate['hung_up'])} ({done})")
    if gate.get("live_calls") is not None:
        parts.append(f"{esc(gate['live_calls'])} still up")
    return ", ".join(parts)


def attempts(rows: list[dict[str, Any]]) -> None:
    table(
        [
            [
                str(a["id"]),
                a["phone"],
                str(a["attempt_no"]),
                a["disposition"] or a["state"],
                str(a["sip_code"] or a["error"] or ""),
                str(a["started_at"] or "")[:23],
                "" if a["ring_ms"] is None else f"{a['ring_ms'] / 1000:.1f}",
                "" if a["talk_ms"] is None else f"{a['talk_ms'] / 1000:.1f}",
            ]
            for a in rows
        ],
        ["ATTEMPT", "PHONE", "NO", "DISPOSITION", "CODE", "STARTED", "RING S", "TALK S"],
    )
