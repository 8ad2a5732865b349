"""The CLI's read commands: ``show`` and ``watch`` give the page's facts; colours only on a TTY."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

from shared.states import Action, Source
from tests.support.stack import ROOT, TestStack

ANSI = re.compile(r"\033\[[0-9;]*m")


def system_paused(stack: TestStack) -> int:
    cid = stack.make_campaign(contacts=2, max_lines=6, max_cps=2.5, retry={"busy": 600})
    assert stack.stack is not None
    stack.stack.control.transition(
        cid, Action.PAUSE, actor="monitor", source=Source.SYSTEM, reason="carrier errors 40%"
    )
    return cid


def test_show_prints_the_pages_facts_transitions_and_diagnosis_without_colour_in_a_pipe(
    make_stack,
):
    stack = make_stack().start(loops=False)
    cid = system_paused(stack)
    out = stack.cli("show", str(cid))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "status        paused (version 2)" in text
    assert "by system: carrier errors 40%" in text
    assert "propagation   version 2 acknowledged by 0 of 0 live workers" in text
    assert "lines         6   calls per second 2.5/s" in text
    assert "retries       1 calls at most; busy after 600.0 s" in text
    assert "calls up      ringing 0  answered 0" in text and "dispositions  none yet" in text
    assert "recent transitions" in text and "running→paused  monitor" in text
    assert "- The campaign is paused [paused]" in text and "fix       " in text
    assert "\033[" not in text

    data = json.loads(stack.cli("show", str(cid), "--json").stdout)
    assert set(data) == {"campaign", "transitions", "first_after_resume", "diagnosis"}
    assert data["campaign"]["status"] == "paused" and data["first_after_resume"] is None
    assert [t["action"] for t in data["transitions"]] == ["pause", "start"]


def test_watch_refreshes_until_its_count_and_refuses_a_bad_interval(make_stack):
    stack = make_stack().start(loops=False)
    cid = system_paused(stack)
    out = stack.cli("watch", str(cid), "--interval", "0.1", "--count", "2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("every 0.1 s, Ctrl-C to stop") == 2
    assert out.stdout.count("status        paused (version 2)") == 2
    out = stack.cli("watch", str(cid), "--interval", "0.1", "--count", "2", "--json")
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["campaign"]["id"] == cid
    out = stack.cli("watch", str(cid), "--interval", "0")
    assert out.returncode == 2
    assert "--interval: must be a number of seconds above 0, got '0'" in out.stderr
    out = stack.cli("watch", "999", "--count", "1")
    assert out.returncode == 1 and "campaign 999 does not exist" in out.stderr


def test_statuses_are_coloured_on_a_terminal_and_the_table_stays_aligned(make_stack):
    stack = make_stack().start(loops=False)
    system_paused(stack)
    stack.make_campaign(contacts=1)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "control.cli", "campaigns"],
            env={k: v for k, v in stack.worker_env().items() if k != "NO_COLOR"},
            cwd=ROOT,
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other side is closed: all read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    text = b"".join(chunks).decode()
    assert "\033[1;33mpaused\033[0m" in text and "\033[1;32mrunning\033[0m" in text
    lines = [ANSI.sub("", line) for line in text.splitlines()]
    conc = next(line for line in lines if line.startswith("ID")).index("CONC")
    rows = [line for line in lines if "test campaign" in line]
    assert len(rows) == 2 and all(row[conc].isdigit() for row in rows), rows  # aligned
