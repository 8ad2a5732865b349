"""Deployment files stay valid (checked offline: no Docker engine runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_file_is_valid_and_scales_workers():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    secrets = {"DIALGATE_ADMIN_TOKEN": "a" * 32, "DIALGATE_CONTROL_KEY": "k" * 32}
    bare = {k: v for k, v in os.environ.items() if k not in secrets}
    refused = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, env=bare
    )
    assert refused.returncode != 0 and "DIALGATE_ADMIN_TOKEN" in refused.stderr  # no default
    out = subprocess.run(
        ["docker-compose", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**bare, **secrets},
    )
    assert out.returncode == 0, out.stderr
    assert "worker:" in out.stdout and "service_healthy" in out.stdout
    assert "service_completed_successfully" in out.stdout  # migrations before anything runs
