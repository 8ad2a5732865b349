"""Deployment files stay valid (checked offline: no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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


PROMETHEUS = ROOT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does it)")
    return subprocess.run(
        ["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )


def _alerts() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def test_alert_rules_pass_promtool_check():
    out = _promtool("check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_promtool_unit_test_and_they_pass():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    assert set(_alerts()) - tested == set(), "alerts without a promtool test"
    firing = {
        t["alertname"]
        for case in tests
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert set(_alerts()) - firing == set(), "alerts never shown firing in a test"
    out = _promtool("test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def _defined_metrics() -> set[str]:
    from shared.metrics import LoopCount

    source = (ROOT / "shared" / "metrics.py").read_text()
    return set(re.findall(r'"(dialgate_[a-z_]+)"', source)) | {
        f"dialgate_{c.value}" for c in LoopCount
    }


def _used_metrics(text: str) -> set[str]:
    names = set(re.findall(r"\b(dialgate_[a-z_]+)", text))
    return {re.sub(r"_(total|bucket|count|sum)$", "", n) for n in names}


def test_rules_and_dashboard_use_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dialgate.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    rules = (PROMETHEUS / "alerts.yml").read_text()
    defined = _defined_metrics()
    assert _used_metrics(exprs) - defined == set()
    assert _used_metrics(rules) - defined == set()
    assert dashboard["uid"] == "dialgate" and len(dashboard["panels"]) >= 10
