"""Deployment files stay valid (checked offline: no Docker engine runs here)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.keys import Keys

ROOT = Path(__file__).resolve().parents[2]


COMPOSE_SECRETS = {
    "DIALGATE_ADMIN_TOKEN": "a" * 32,
    "DIALGATE_CONTROL_KEY": "k" * 32,
    "POSTGRES_PASSWORD": "pg-secret",
    "RABBITMQ_PASSWORD": "mq-secret",
}


def test_docker_compose_file_is_valid_and_scales_workers():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    secrets = COMPOSE_SECRETS
    bare = {k: v for k, v in os.environ.items() if k not in secrets}
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
    assert "worker.alive" in out.stdout  # workers are healthy while they heartbeat


@pytest.mark.parametrize("missing", sorted(COMPOSE_SECRETS))
def test_docker_compose_refuses_to_start_without_each_secret_and_has_no_default_password(
    missing,
):
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    env.update({k: v for k, v in COMPOSE_SECRETS.items() if k != missing})
    refused = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert refused.returncode != 0 and f"set {missing}" in refused.stderr
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"PASSWORD:-", text), "a password with a default"


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


K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"

# KEDA's custom resources are not in kubernetes-validate's bundled schemas: their required
# shape (from KEDA's CRDs, keda.sh/v1alpha1) is checked here instead.
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer"},
                    "cooldownPeriod": {"type": "integer"},
                    "fallback": {
                        "type": "object",
                        "required": ["failureThreshold", "replicas"],
                        "properties": {
                            "failureThreshold": {"type": "integer"},
                            "replicas": {"type": "integer"},
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "type": {"type": "string"},
                                "metricType": {"enum": ["Utilization", "AverageValue", "Value"]},
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                },
                            },
                        },
                    },
                },
            }
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {"type": "object", "required": ["parameter", "name", "key"]},
                    }
                },
            }
        },
    },
}


def _render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (apt-get install kubernetes-client)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _validate(obj: dict[str, Any]) -> None:
    if obj["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(obj, KEDA_SCHEMAS[obj["kind"]])
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", ["hpa", "keda"])
def test_every_kubernetes_object_of_each_overlay_is_valid(overlay):
    objects = _render(overlay)
    for obj in objects:
        _validate(obj)
    _validate(yaml.safe_load((K8S / "secret.example.yaml").read_text()))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    control = deployments["dialgate-control"]["spec"]
    assert control["replicas"] >= 2
    container = control["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = deployments["dialgate-worker"]["spec"]["template"]["spec"]
    assert worker["containers"][0]["livenessProbe"]["exec"]["command"][:3] == [
        "python",
        "-m",
        "worker.alive",
    ]
    for d in deployments.values():
        assert d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    _assert_secrets_are_set(container, worker["containers"][0])
    assert "dialgate-worker" in {p["metadata"]["name"] for p in by_kind["PodDisruptionBudget"]}
    assert [j["metadata"]["name"] for j in by_kind["Job"]] == ["dialgate-migrate"]
    scalers = by_kind.get("ScaledObject", []) + by_kind.get("HorizontalPodAutoscaler", [])
    assert len(scalers) == 1, "one autoscaler for the workers, never two that fight"
    if overlay == "keda":
        triggers = {t["type"]: t for t in scalers[0]["spec"]["triggers"]}
        assert triggers["rabbitmq"]["metadata"]["queueName"] == Keys("dialgate").dial_queue
        assert "cpu" in triggers  # the fallback on CPU


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _assert_secrets_are_set(control: dict[str, Any], worker: dict[str, Any]) -> None:
    """The control key reaches control and workers from the Secret, required (a worker
    without it would take unsigned events); the session cookie is Secure; workers may have
    a RabbitMQ user of their own."""
    key = {"name": "dialgate-secrets", "key": "DIALGATE_CONTROL_KEY"}
    for container in (control, worker):
        ref = _env(container)["DIALGATE_CONTROL_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == key, ref  # not optional: no key, no pod
    assert _env(control)["DIALGATE_COOKIE_SECURE"]["value"] == "true"
    amqp = _env(worker)["DIALGATE_AMQP_URL"]["valueFrom"]["secretKeyRef"]
    assert amqp["key"] == "DIALGATE_WORKER_AMQP_URL" and amqp["optional"] is True
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())["stringData"]
    assert {"DIALGATE_CONTROL_KEY", "DIALGATE_WORKER_AMQP_URL"} <= set(example)
