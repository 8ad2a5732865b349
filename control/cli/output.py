"""How the CLI prints: tables padded by visible width, status colours on a terminal,
the campaign, its transitions and its diagnosis."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

from shared.states import ContactState

STATES = [s.value for s in ContactState]
ANSI = re.compile(r"\033\[[0-9;]*m")
# ANSI colours of each status, used only when stdout is a terminal (and NO_COLOR is unset).
COLOURS = {"running": "1;32", "paused": "1;33", "draft": "1", "cancelled": "2", "completed": "2"}


def paint(text: str, code: str | None) -> str:
    if not code or not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\033[{code}m{text}\033[0m"


def status(status: str) -> str:
    return paint(status, COLOURS.get(status))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(rows: list[list[str]], header: list[str]) -> None:
    """Columns padded by their visible width (colour codes take no room)."""

    def width(x: str) -> int:
        return len(ANSI.sub("", x))

    widths = [max(width(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        cells = [str(x) + " " * (w - width(str(x))) for x, w in zip(row, widths, strict=False)]
        print("  ".join(cells).rstrip())


def show(c: dict[str, Any]) -> None:
    print(f"campaign {c['id']}  {c['name']}")
    print(f"  status        {status(c['status'])} (version {c['version']})")
    if c.get("paused_at"):
        src = f" by {c['pause_source']}" if c.get("pause_source") else ""
        why = f": {c['pause_reason']}" if c.get("pause_reason") else ""
        print(f"  paused        since {c['paused_at']}{src}{why}")
    print(f"  concurrency   {c['max_concurrency']}   timezone {c['timezone']}")
    if c.get("cap"):
        print(
            f"  temporary cap {c['cap']['max_concurrency']} until {c['cap']['until']} "
            "(lifts by itself)"
        )
    print(f"  retries       {c['max_attempts']} calls at most, backoff {c['retry_backoff_s']} s")
    w = c.get("calling_window")
    if w:
        local = ", and in each contact's local time" if w.get("contact_local_time") else ""
        print(f"  window        {','.join(w['days'])} {w['start']}-{w['end']}{local}")
    auto = c.get("automatic_pauses_24h")
    if auto:
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(auto.items()))
        print(f"  auto pauses   {rules} (last 24 h)")
    if (c.get("dialing") or {}).get("blocked_by") == "calling_window":
        print(f"  NOT DIALING   outside the calling window; opens at {c['dialing']['opens_at']}")
    counts = c.get("counts", {})
    print("  contacts      " + "  ".join(f"{s} {counts.get(s, 0)}" for s in STATES))
    if c.get("inflight") is not None:
        print(f"  in flight     {c['inflight']}")
    p = c.get("propagation")
    if p:
        print(
            f"  propagation   version {p['version']} acknowledged by "
            f"{p['workers_acked']} of {p['workers_live']} live workers"
        )
    if c.get("emergency_stop"):
        print("  EMERGENCY STOP in force: nothing dials")
    gate = c.get("gate")
    if gate and "drained" in gate:
        state = "drained" if gate["drained"] else f"NOT drained ({gate['inflight']} in flight)"
        print(f"  gate          closed, {state} in {gate['drain_ms']} ms")
    allowed = ", ".join(c.get("allowed_actions", [])) or "none"
    print(f"  actions       {allowed}")


def show_overview(o: dict[str, Any]) -> None:
    """The campaign page's facts: the campaign, first dial after resume, transitions, why."""
    show(o["campaign"])
    first = o.get("first_after_resume")
    if first:
        if first.get("started_at"):
            print(
                f"  after resume  first dial {first['started_at']} (attempt {first['attempt_id']}"
                f" on {first['worker_id']}, {first['after_s']} s after the resume)"
            )
        else:
            print(f"  after resume  no dial yet since {first['resumed_at']}")
    print("recent transitions")
    transitions(o["transitions"])
    why(o["diagnosis"])


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
                ),
            ]
            for t in rows
        ],
        ["V", "AT", "ACTION", "CHANGE", "ACTOR", "SOURCE", "REASON"],
    )


def why(d: dict[str, Any]) -> None:
    if not d["reasons"]:
        print(f"campaign {d['campaign_id']} ({d['status']}): nothing stops it from dialing")
        return
    print(f"campaign {d['campaign_id']} ({d['status']}): {len(d['reasons'])} reason(s)")
    for r in d["reasons"]:
        print(f"- {r['title']} [{r['code']}]")
        print(f"    evidence  {r['evidence']}")
        print(f"    fix       {r['fix']}")
