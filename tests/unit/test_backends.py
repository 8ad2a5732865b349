"""Bad configuration of the telephony back end stops the worker at start, in one line that
names the setting (``worker/backends.py``, ``shared/settings.py: load``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.settings import Settings, load
from tests.support.stack import ROOT
from worker import backends


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DIALGATE_PROVIDER": "nope"}, "DIALGATE_PROVIDER: Input should be 'simulated', 'sip'"),
        ({"DIALGATE_SIP_TARGET": "sip:x@trunk"}, "DIALGATE_SIP_TARGET: Value error, give a SIP"),
        (
            {"DIALGATE_REDIS_CLUSTER_NODES": "10.0.0.1:7000,redis-b"},
            "DIALGATE_REDIS_CLUSTER_NODES: Value error, 'redis-b' is not host:port",
        ),
        (
            {"DIALGATE_REDIS_SENTINELS": "10.0.0.1:26379"},
            "Value error, DIALGATE_REDIS_SENTINELS and DIALGATE_REDIS_SENTINEL_MASTER go together",
        ),
        (
            {
                "DIALGATE_REDIS_SENTINELS": "10.0.0.1:26379",
                "DIALGATE_REDIS_SENTINEL_MASTER": "m",
                "DIALGATE_REDIS_CLUSTER_NODES": "10.0.0.1:7000",
            },
            "Value error, set DIALGATE_REDIS_CLUSTER_NODES or DIALGATE_REDIS_SENTINELS, not both",
        ),
    ],
)
def test_a_bad_setting_is_named_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    line: str,
):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as exit_:
        load("dialgate worker")
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"dialgate worker: {line}")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"provider": "twilio"}, "DIALGATE_TWILIO_ACCOUNT_SID is required"),
        (
            {"provider": "sip", "sip_username": "u"},
            "DIALGATE_SIP_USERNAME and DIALGATE_SIP_PASSWORD",
        ),
    ],
)
def test_missing_credentials_are_named(fields: dict[str, str], named: str):
    with pytest.raises(ValueError, match=named):
        backends.check(Settings(**fields))  # type: ignore[arg-type]


def test_the_worker_process_stops_at_start_with_that_line():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALGATE_")}
    env.update(DIALGATE_PROVIDER="twilio", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "dialgate worker: DIALGATE_TWILIO_ACCOUNT_SID is required with DIALGATE_PROVIDER=twilio"
        " (docs/telephony.md)"
    )
