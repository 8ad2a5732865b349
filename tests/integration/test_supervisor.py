"""The supervisor on its own (:mod:`shared.supervisor`), with small children of its own: a
child that dies is restarted with backoff while the others keep running, a crash loop
makes it give up in one line, a stop ends every child, and what it reports is what
``/readyz`` and ``/metrics`` read."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid

import pytest
import redis

from shared import supervisor as sup
from shared.keys import Keys
from shared.supervisor import Spec, Supervisor, supervised
from tests.support.stack import REDIS_URL, wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
DIES = [sys.executable, "-c", "import sys; sys.exit(3)"]


@pytest.fixture
def keys() -> Keys:
    return Keys("t" + uuid.uuid4().hex[:10])


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


def _driven(s: Supervisor, until: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not until():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        s.check()
        time.sleep(0.02)


def test_a_killed_child_is_restarted_the_others_keep_running_and_it_is_reported(
    keys: Keys, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sup, "BACKOFF_S", 0.05)
    s = Supervisor(
        "test",
        [Spec("a", SLEEPER), Spec("b", SLEEPER)],
        redis_client=client,
        keys=keys,
        signals=False,
    ).start()
    try:
        a, b = (c.proc for c in s.children)
        assert a is not None and b is not None
        os.kill(a.pid, signal.SIGKILL)
        _driven(s, lambda: s.children[0].proc is not None and s.children[0].proc.pid != a.pid)
        assert s.children[1].proc is b and b.poll() is None  # untouched
        first = s.children[0]
        assert (first.restarts, first.last_exit) == (1, "signal SIGKILL")
        found = {p.name: p for p in supervised(client, keys)}
        assert found["a"].restarts == 1 and found["a"].running and found["b"].restarts == 0
        trouble = found["a"].trouble(time.time())
        assert trouble is not None and "a of test" in trouble and "SIGKILL" in trouble
        assert found["b"].trouble(time.time()) is None
    finally:
        s.stop()
    assert all(c.proc is None for c in s.children)
    assert a.poll() is not None and b.poll() is not None  # every child ended
    assert supervised(client, keys) == []  # a stopped supervisor's record is gone


def test_a_child_that_keeps_dying_makes_the_supervisor_give_up_in_one_line(
    keys: Keys,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sup, "BACKOFF_S", 0.01)
    monkeypatch.setattr(sup, "CRASH_LOOP", 3)
    s = Supervisor("test", [Spec("bad", DIES), Spec("good", SLEEPER)], signals=False)
    s.start()
    good = s.children[1].proc
    assert good is not None
    _driven(s, lambda: s.stopping)
    assert s.run() == 1  # what run answers once it gave up: the rest stopped
    assert good.poll() is not None
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "test: bad died 3 times within 60 s (last: exit code 3); giving up and stopping the "
        "rest (its log is above)"
    )


def test_a_supervisor_killed_outright_takes_no_child_with_it_unstopped(tmp_path) -> None:
    """A supervised child asks for SIGTERM when its supervisor dies (PR_SET_PDEATHSIG)."""
    pidfile = tmp_path / "child.pid"
    child = (
        "import os, pathlib, time; from shared.supervisor import die_with_parent; "
        f"die_with_parent(); pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid())); "
        "time.sleep(60)"
    )
    parent = (
        "from shared.supervisor import Spec, Supervisor; import sys; "
        f"Supervisor('t', [Spec('c', [sys.executable, '-c', {child!r}])]).run()"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", parent], env=env)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text(), 15, "the child")
        pid = int(pidfile.read_text())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_for(lambda: not _alive(pid), 10, "the child to end with its supervisor")
    finally:
        if proc.poll() is None:
            proc.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not running
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"
