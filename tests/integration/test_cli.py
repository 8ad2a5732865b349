"""The operator CLI against a real control service: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.stack import ROOT, TestStack, phones


def dialgate(stack: TestStack | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``dialgate ARGS`` against ``stack``, or (None) with no control service to reach."""
    if stack is not None:
        return stack.cli(*args)
    env = {"PATH": "/usr/bin:/bin", "DIALGATE_URL": "http://127.0.0.1:1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "control.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_operator_creates_imports_starts_pauses_resumes_and_cancels_from_the_cli(
    make_stack, tmp_path
):
    stack = make_stack().start(loops=False)
    out = dialgate(
        stack, "create", "Winter promo", "--max-concurrency", "3", "--max-lines", "5",
        "--max-cps", "2.5", "--max-attempts", "2", "--retry", "busy=600,no_answer=60", "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    cid = made["id"]
    assert (made["max_lines"], made["max_cps"]) == (5, 2.5)
    assert made["retry"] == {"busy": 600, "no_answer": 60}
    out = dialgate(stack, "limits", str(cid), "--no-max-cps", "--max-lines", "7")
    assert out.returncode == 0, out.stderr
    assert "lines         7   calls per second no limit" in out.stdout
    out = dialgate(stack, "limits", str(cid), "--retry", "answered=5")
    assert out.returncode == 2
    assert "'answered' is not a disposition to retry: one of busy, no_answer" in out.stderr
    out = dialgate(stack, "calls", str(cid))
    assert out.returncode == 0 and out.stdout.split()[:4] == [
        "ATTEMPT",
        "PHONE",
        "NO",
        "DISPOSITION",
    ]
    # `worker` hands its options on to the worker (its own --help answers)
    out = dialgate(stack, "worker", "--processes", "1", "--help")
    assert out.returncode == 0 and "--shutdown-timeout" in out.stdout

    good = phones(3)
    csv = tmp_path / "contacts.csv"
    csv.write_text(
        f"phone,name\n{good[0]},Ada\nnot-a-number,Bob\n{good[1]},\n{good[0]},Dup\n{good[2]},Eve\n"
    )
    out = dialgate(stack, "contacts", "import", str(cid), str(csv))
    assert out.returncode == 0, out.stderr
    assert "rejected line 3: 'not-a-number': phone must start with +" in out.stdout
    assert "rejected line 5:" in out.stdout and "duplicate" in out.stdout
    assert "accepted 3, rejected 2 of 5" in out.stdout

    assert dialgate(stack, "start", str(cid)).returncode == 0
    out = dialgate(stack, "pause", str(cid), "--reason", "checking the script", "--hangup", "all")
    assert out.returncode == 0, out.stderr
    assert "status        paused (version 2)" in out.stdout
    assert "by operator: checking the script" in out.stdout
    assert "gate          closed, drained in" in out.stdout
    assert "calls         hung up 0 (all ended), 0 still up" in out.stdout

    out = dialgate(stack, "pause", str(cid))
    assert out.returncode == 1
    assert "is already paused, and already held so: operator hold #1" in out.stderr

    out = dialgate(stack, "campaigns")
    assert out.returncode == 0
    assert "Winter promo" in out.stdout and "paused" in out.stdout

    out = dialgate(stack, "cancel", str(cid))
    assert out.returncode == 1 and "--yes" in out.stderr
    assert dialgate(stack, "resume", str(cid)).returncode == 0
    out = dialgate(stack, "cancel", str(cid), "--yes")
    assert out.returncode == 0 and "cancelled" in out.stdout

    out = dialgate(stack, "history", str(cid))
    lines = out.stdout.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["cancel", "resume", "pause", "start"]
    assert "cli:" in lines[1]


def test_the_cli_says_how_to_start_the_control_service_when_it_is_unreachable():
    out = dialgate(None, "campaigns")
    assert out.returncode == 2
    assert "not reachable at http://127.0.0.1:1" in out.stderr
    assert "dialgate up" in out.stderr


def test_an_operator_sets_a_calling_window_and_keeps_a_do_not_call_list_from_the_cli(
    make_stack, tmp_path
):
    stack = make_stack().start(loops=False)
    cid = json.loads(dialgate(stack, "create", "Evenings", "--json").stdout)["id"]
    out = dialgate(
        stack, "window", str(cid), "--days", "mon,fri", "--start", "22:00", "--end", "02:00"
    )
    assert out.returncode == 0, out.stderr
    assert "window        mon,fri 22:00-02:00" in out.stdout
    out = dialgate(stack, "window", str(cid), "--start", "7pm")
    assert out.returncode == 1 and "calling_window.start: " in out.stderr

    numbers = phones(3)
    csv = tmp_path / "dnc.csv"
    csv.write_text(f"phone\n{numbers[0]}\n{numbers[1]}\n")
    out = dialgate(stack, "dnc", "import", str(csv))
    assert out.returncode == 0, out.stderr
    assert "added 2, already listed 0" in out.stdout
    assert "added 1, already listed 1" in dialgate(stack, "dnc", "add", *numbers[1:]).stdout
    assert dialgate(stack, "dnc", "remove", numbers[0]).returncode == 0
    listed = dialgate(stack, "dnc", "list").stdout
    assert numbers[0] not in listed and numbers[1] in listed and numbers[2] in listed
