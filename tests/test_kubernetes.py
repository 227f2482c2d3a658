"""The Kubernetes manifests: valid against the published schemas (offline), and consistent with the
service in ways a schema cannot see."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from tests.test_deployment import tool

PROJECT = Path(__file__).resolve().parents[1]
MANIFESTS = PROJECT / "deploy" / "kubernetes"
RESOURCES = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / name).read_text())


@pytest.fixture(scope="module")
def container() -> dict[str, Any]:
    return load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_manifests_pass_the_kubernetes_schemas_strictly() -> None:
    validate = tool("kubernetes-validate")
    result = subprocess.run(
        [validate, "--strict", *(str(MANIFESTS / f) for f in RESOURCES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(RESOURCES)


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(load("kustomization.yaml")["resources"]) == sorted(RESOURCES)


def test_probe_paths_exist_in_the_app(container: dict[str, Any]) -> None:
    from app.main import create_app

    paths = set(create_app(Settings()).openapi()["paths"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"  # never the model


def test_ports_agree(container: dict[str, Any]) -> None:
    port = container["ports"][0]
    assert port["name"] == "http" and port["containerPort"] == int(env_of(container)["POSTER_PORT"])
    assert load("service.yaml")["spec"]["ports"][0]["targetPort"] == "http"


def test_termination_grace_outlasts_the_pause_and_the_drain(container: dict[str, Any]) -> None:
    env = env_of(container)
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = load("deployment.yaml")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + float(env["POSTER_DRAIN_DELAY_S"]) + float(
        env["POSTER_SHUTDOWN_GRACE_S"]
    )


def test_tensorflow_threads_match_the_cpu_limit(container: dict[str, Any]) -> None:
    cpus = int(container["resources"]["limits"]["cpu"])
    env = env_of(container)
    assert int(env["TF_NUM_INTRAOP_THREADS"]) == int(env["OMP_NUM_THREADS"]) == cpus
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]


def test_non_root_read_only_with_a_sized_tmp(container: dict[str, Any]) -> None:
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"]["sizeLimit"]


def test_the_api_key_comes_from_a_secret_and_the_model_version_is_pinned(
    container: dict[str, Any],
) -> None:
    key = next(e for e in container["env"] if e["name"] == "POSTER_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "poster-genres", "key": "api-key"}
    version = env_of(container)["POSTER_MODEL_VERSION"]
    assert (PROJECT / "model_store" / "poster-genres" / version / "model.keras").is_file()


def test_the_disruption_budget_and_autoscaler_target_the_deployment() -> None:
    labels = load("deployment.yaml")["spec"]["selector"]["matchLabels"]
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"] == labels
    assert load("service.yaml")["spec"]["selector"] == labels
    target = load("hpa.yaml")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "poster-genres")
    assert load("hpa.yaml")["spec"]["minReplicas"] >= 2
