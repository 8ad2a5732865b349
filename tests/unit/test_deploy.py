"""Deployment files stay valid (checked offline: no Docker engine runs here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_docker_compose_file_is_valid_and_scales_workers():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    out = subprocess.run(
        ["docker-compose", "config"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "worker:" in out.stdout and "service_healthy" in out.stdout
    assert "service_completed_successfully" in out.stdout  # migrations before anything runs
