"""The Kubernetes manifests: valid against the published schemas (offline), and consistent with the
service in ways a schema cannot see."""

from __future__ import annotations

import re
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
INGRESS = MANIFESTS / "examples" / "ingress.yaml"  # an example: not in the kustomization
BATCH = [
    MANIFESTS / "batch" / f for f in ("score-job.yaml", "merge-job.yaml", "catalogue-pvc.yaml")
]
GUIDE = PROJECT / "docs" / "kubernetes.md"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / name).read_text())


@pytest.fixture(scope="module")
def container() -> dict[str, Any]:
    return load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture(scope="module")
def app_paths() -> set[str]:
    from app.main import create_app

    return set(create_app(Settings()).openapi()["paths"])


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def validate_strictly(files: list[Path], *options: str) -> None:
    validate = tool("kubernetes-validate")
    result = subprocess.run(
        [validate, "--strict", *options, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files), result.stdout


def documented_minimum_version() -> str:
    found = re.search(r"Kubernetes (1\.\d+) or later", GUIDE.read_text())
    assert found, f"{GUIDE.name} states no minimum Kubernetes version"
    return found[1]


def nginx_size(text: str) -> int:
    """nginx's size syntax: bytes, or k, m, g (binary multiples)."""
    found = re.fullmatch(r"(\d+)([kmg]?)", text.lower())
    assert found, text
    return int(found[1]) * 1024 ** " kmg".index(found[2] or " ")


def gib(quantity: str) -> float:
    found = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert found, quantity
    return int(found[1]) / (1024 if found[2] == "Mi" else 1)


def test_manifests_pass_the_kubernetes_schemas_strictly() -> None:
    validate_strictly([MANIFESTS / f for f in RESOURCES])


def test_the_ingress_example_passes_the_kubernetes_schemas_strictly() -> None:
    validate_strictly([INGRESS])


def test_everything_passes_the_schemas_of_the_documented_minimum_version() -> None:
    # A field newer than the version docs/kubernetes.md promises fails here.
    version = documented_minimum_version()
    everything = [*(MANIFESTS / f for f in RESOURCES), INGRESS, *BATCH]
    validate_strictly(everything, "-k", f"{version}.0")


def test_the_documented_minimum_version_is_the_one_the_prestop_sleep_needs(
    container: dict[str, Any],
) -> None:
    # The sleep action is beta and on by default from 1.30 (alpha, off, in 1.29). If the deployment
    # stops using it, the documented floor (and this test) should be revisited.
    assert documented_minimum_version() == "1.30"
    assert list(container["lifecycle"]["preStop"]) == ["sleep"]
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(load("kustomization.yaml")["resources"]) == sorted(RESOURCES)


def test_probe_paths_exist_in_the_app(container: dict[str, Any], app_paths: set[str]) -> None:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in app_paths
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
    # The Service and the budget cover every track's pods (a canary's too): all but `track`.
    service_pods = {k: v for k, v in labels.items() if k != "track"}
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"] == service_pods
    assert load("service.yaml")["spec"]["selector"] == service_pods
    target = load("hpa.yaml")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "poster-genres")
    assert load("hpa.yaml")["spec"]["minReplicas"] >= 2


def test_the_ingress_example_routes_to_the_service_over_tls_with_room_for_a_batch() -> None:
    ingress = yaml.safe_load(INGRESS.read_text())
    service = load("service.yaml")
    assert ingress["spec"]["ingressClassName"] == "nginx"  # the annotations are ingress-nginx's
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert any(
        backend["port"] in ({"number": port["port"]}, {"name": port["name"]})
        for port in service["spec"]["ports"]
    ), backend["port"]
    assert any(rule["host"] in tls["hosts"] and tls["secretName"] for tls in ingress["spec"]["tls"])
    annotations = ingress["metadata"]["annotations"]
    settings = Settings()
    body = nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    assert body >= max(settings.max_batch_upload_bytes, settings.max_upload_bytes)
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        seconds = float(annotations[f"nginx.ingress.kubernetes.io/{timeout}"])
        assert seconds > max(settings.body_idle_timeout_s, settings.request_deadline_s), timeout


def test_replicas_are_spread_over_the_nodes() -> None:
    deployment = load("deployment.yaml")
    template = deployment["spec"]["template"]
    spread = next(
        c
        for c in template["spec"]["topologySpreadConstraints"]
        if c["topologyKey"] == "kubernetes.io/hostname"
    )
    assert spread["maxSkew"] == 1
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a pod never stays Pending for it
    selector = spread["labelSelector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()  # counts these very pods
    assert selector.items() <= deployment["spec"]["selector"]["matchLabels"].items()


def test_the_scrape_annotations_point_at_the_metrics_route(
    container: dict[str, Any], app_paths: set[str]
) -> None:
    """The scrape goes to the metrics port, which the key does not guard (the API port's /metrics
    would answer 401 to a scraper that cannot send the key, and 404 once the port is set)."""
    annotations = load("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert env["POSTER_METRICS_PORT"] == str(ports["metrics"]) != env["POSTER_PORT"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "/metrics" in app_paths  # without the metrics port, the API port serves it
    service_ports = {p["targetPort"] for p in load("service.yaml")["spec"]["ports"]}
    assert service_ports == {"http"}  # the Service never exposes the metrics port


def test_the_capacity_table_in_the_guide_matches_the_manifests(container: dict[str, Any]) -> None:
    deployment, hpa = load("deployment.yaml")["spec"], load("hpa.yaml")["spec"]
    assert deployment["replicas"] == hpa["minReplicas"]  # the guide's table starts from both
    resources = container["resources"]
    cpus = int(resources["limits"]["cpu"])  # = the request (test_tensorflow_threads_...)
    request, limit = gib(resources["requests"]["memory"]), gib(resources["limits"]["memory"])
    guide = GUIDE.read_text()
    surge = deployment["strategy"]["rollingUpdate"]["maxSurge"]
    for replicas in (hpa["minReplicas"], hpa["maxReplicas"]):
        for n in (replicas, replicas + surge):  # at rest, and during a rollout
            cells = [
                rf"{n} \([^|]*\)",
                re.escape(f"{n * cpus:g}"),
                re.escape(f"{n * request:g} GiB"),
                re.escape(f"{n * limit:g} GiB"),
            ]
            row = r"^\| " + r" \| ".join(cells) + r" \|$"
            assert re.search(row, guide, re.MULTILINE), row


def test_the_batch_manifests_pass_the_kubernetes_schemas_strictly() -> None:
    validate_strictly(BATCH)


def job_command(name: str) -> list[str]:
    spec = load(f"batch/{name}")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    return [*container["command"], *container.get("args", [])]


def test_the_scoring_job_is_indexed_with_a_retry_limit_per_shard_and_one_n() -> None:
    job = load("batch/score-job.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["backoffLimitPerIndex"] >= 1 and spec["maxFailedIndexes"] == 0
    assert spec["parallelism"] == spec["completions"]
    assert spec["podReplacementPolicy"] == "Failed"
    script = job_command("score-job.yaml")[-1]
    assert f'--shard "${{JOB_COMPLETION_INDEX}}/{spec["completions"]}"' in script
    assert "part-${JOB_COMPLETION_INDEX}.csv" in script
    deployment = load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    for name in ("score-job.yaml", "merge-job.yaml"):
        container = load(f"batch/{name}")["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == deployment["image"]
        volume = load(f"batch/{name}")["spec"]["template"]["spec"]["volumes"][0]
        assert volume["persistentVolumeClaim"]["claimName"] == "poster-catalogue"
    assert load("batch/catalogue-pvc.yaml")["spec"]["accessModes"] == ["ReadWriteMany"]
    assert all(not r.startswith("batch") for r in load("kustomization.yaml")["resources"])


def test_the_jobs_commands_score_and_merge_a_catalogue_as_one_run_does(
    tmp_path: Path, tiny_version: Path
) -> None:
    """The scoring Job's shell command, run for every index with /data on a temporary folder,
    then the merge Job's: one genres.csv, equal to a single scorer run over the same posters."""
    import os
    import sys

    from tests.conftest import poster_bytes

    data = tmp_path / "data"
    (data / "posters" / "x").mkdir(parents=True)
    for i in range(12):
        where = data / "posters" / ("x" if i % 2 else "")
        (where / f"p{i}.jpg").write_bytes(poster_bytes((20 * i, 100, 255 - 20 * i)))
    env = {
        **os.environ,
        "POSTER_MODEL_STORE": str(tiny_version.parent.parent),
        "POSTER_MODEL_VERSION": tiny_version.name,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    completions = load("batch/score-job.yaml")["spec"]["completions"]
    script = job_command("score-job.yaml")[-1].replace("/data", str(data))
    shards = [
        subprocess.Popen(
            ["sh", "-c", script],
            env={**env, "JOB_COMPLETION_INDEX": str(i)},
            cwd=PROJECT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(completions)
    ]
    outcomes = [(shard.communicate(timeout=300)[1], shard.returncode) for shard in shards]
    assert all(status == 0 for _, status in outcomes), outcomes
    merge = [part.replace("/data", str(data)) for part in job_command("merge-job.yaml")]
    assert subprocess.run(merge, env=env, cwd=PROJECT, timeout=120).returncode == 0
    single = tmp_path / "single.csv"
    one_run = [
        sys.executable,
        "-m",
        "scorer",
        str(data / "posters"),
        "--quiet",
        "--out",
        str(single),
    ]
    assert subprocess.run(one_run, env=env, cwd=PROJECT, timeout=300).returncode == 0
    assert (data / "out" / "genres.csv").read_text() == single.read_text()


CANARY = MANIFESTS / "canary" / "deployment.yaml"


def test_the_canary_passes_the_kubernetes_schemas_strictly() -> None:
    validate_strictly([CANARY])
    validate_strictly([CANARY], "--kubernetes-version", documented_minimum_version())


def test_the_canary_is_the_stable_deployment_with_another_version_fixed_replicas_and_track() -> (
    None
):
    stable, canary = load("deployment.yaml"), yaml.safe_load(CANARY.read_text())
    service_selector = load("service.yaml")["spec"]["selector"]
    for deployment, track in ((stable, "stable"), (canary, "canary")):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"] == {**service_selector, "track": track}
        assert labels == {**service_selector, "track": track}  # the Service reaches both
    assert canary["spec"]["replicas"] == 1
    hpa_target = load("hpa.yaml")["spec"]["scaleTargetRef"]["name"]
    assert hpa_target == stable["metadata"]["name"] != canary["metadata"]["name"]
    stable_env = env_of(stable["spec"]["template"]["spec"]["containers"][0])
    canary_env = env_of(canary["spec"]["template"]["spec"]["containers"][0])
    assert canary_env["POSTER_MODEL_VERSION"] != stable_env["POSTER_MODEL_VERSION"]
    version = canary_env["POSTER_MODEL_VERSION"]
    assert (PROJECT / "model_store" / "poster-genres" / version / "model.tflite").is_file()
    # Everything else is the stable Deployment's, so a change to one reaches the other.
    for deployment in (stable, canary):
        deployment["metadata"]["name"] = "x"
        deployment["spec"]["replicas"] = 0
        deployment["spec"]["selector"]["matchLabels"]["track"] = "x"
        deployment["spec"]["template"]["metadata"]["labels"]["track"] = "x"
        for variable in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if variable["name"] == "POSTER_MODEL_VERSION":
                variable["value"] = "x"
    assert canary == stable
