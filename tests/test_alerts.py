"""The Prometheus rules, the PrometheusRule and the dashboard: tested with promtool, and naming
only metrics the service exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from app.metrics import ServiceMetrics
from poster_genres.drift import WINDOW_ANSWERS, population_stability
from tests.test_deployment import tool

PROJECT = Path(__file__).resolve().parents[1]
RULES = PROJECT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = PROJECT / "deploy" / "prometheus" / "rules.test.yml"
PROMETHEUS_RULE = PROJECT / "deploy" / "kubernetes" / "monitoring" / "prometheusrule.yaml"
DASHBOARD = PROJECT / "deploy" / "grafana" / "poster-genres.json"
RUNBOOK = PROJECT / "docs" / "operations.md"


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def recorded_names() -> set[str]:
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def promtool(*args: str, cwd: Path = PROJECT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def exported_series_names() -> set[str]:
    """Every sample name the service's registry can export (families with no child yet too)."""
    names = set()
    for family in ServiceMetrics().registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",),
        }[family.type]
        names |= {family.name + suffix for suffix in suffixes}
    return names


def metric_names_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"(?<![:\w])poster_[a-z_]+\b(?!:)", without_strings))


def test_every_alert_fires_and_stays_silent_as_its_unit_tests_say() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_case_a_silent_case_and_a_runbook_section() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    checks = [c for case in cases for c in case.get("alert_rule_test", [])]
    runbook = RUNBOOK.read_text()
    for name, rule in alerts().items():
        fired = [c for c in checks if c["alertname"] == name and c["exp_alerts"]]
        silent = [c for c in checks if c["alertname"] == name and not c["exp_alerts"]]
        assert fired and silent, f"{name}: needs a case that fires and one that stays silent"
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {name}\n" in runbook and anchor == name.lower(), name


def test_rules_pass_promtool_and_name_only_exported_metrics() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    exported, recorded = exported_series_names(), recorded_names()
    for group in rule_groups():
        for rule in group["rules"]:
            unknown = metric_names_in(rule["expr"]) - exported
            assert not unknown, f"{rule.get('record') or rule['alert']} reads {unknown}"
            used = set(re.findall(r"\b(?:job|version):[a-z_0-9:]+", rule["expr"]))
            assert used <= recorded, used - recorded


def test_the_rules_watch_the_codes_and_routes_the_service_starts_at_zero() -> None:
    from app.metrics import PREDICTION_ROUTES, REFUSED_UPLOAD_CODES, SHED_CODES

    recorded = {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}

    def alternatives(expr: str, label: str) -> set[str]:
        found = re.search(label + r'=~"([^"]+)"', expr)
        assert found, (label, expr)
        return set(found[1].split("|"))

    assert alternatives(recorded["job:poster_shed:rate5m"], "code") == set(SHED_CODES)
    refused = alternatives(recorded["job:poster_refused_uploads:rate10m"], "code")
    assert refused == set(REFUSED_UPLOAD_CODES)
    routes = alternatives(recorded["job:poster_prediction_requests:rate5m"], "route")
    assert routes == set(PREDICTION_ROUTES)


def test_the_prometheus_rule_carries_exactly_the_rules_file() -> None:
    resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["spec"]["groups"] == rule_groups()


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inside = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inside}}}", "values": values}


def drift_case(
    answers: np.ndarray, predicted: np.ndarray, reference: np.ndarray, threshold: float
) -> list[dict[str, str]]:
    """Input series of one version: counters rising by whole numbers every minute for an hour.

    `answers` is one per-minute increase per replica, `predicted` (replicas, genres) the per-genre
    ones.
    """
    out = []
    for replica, step in enumerate(answers):
        where = {"job": "poster-genres", "instance": f"r{replica}", "version": "v"}
        out.append(series("poster_answers_total", where, f"0+{int(step)}x60"))
        for genre, count in enumerate(predicted[replica]):
            labels = {**where, "genre": f"g{genre}"}
            out.append(series("poster_genre_predicted_total", labels, f"0+{int(count)}x60"))
    for genre, rate in enumerate(reference):
        labels = {"job": "poster-genres", "instance": "r0", "version": "v", "genre": f"g{genre}"}
        out.append(series("poster_genre_reference_rate", labels, f"{rate}x60"))
    where = {"job": "poster-genres", "instance": "r0", "version": "v"}
    out.append(series("poster_drift_threshold", where, f"{threshold}x60"))
    return out


def test_the_drift_rule_computes_the_reference_implementations_psi(tmp_path: Path) -> None:
    """Random genre mixes over two replicas: the recording rule's PSI equals
    `poster_genres.drift.population_stability` of the summed rates, clamping included."""
    rng = np.random.default_rng(7)
    tests = []
    for case in range(4):
        genres = 6
        answers = rng.integers(3, 8, size=2)  # per minute: 180 to 480 an hour per replica
        rates = rng.uniform(0, 0.6, size=genres)
        rates[case % genres] = 0.0  # a genre absent from the window: the clamp keeps ln finite
        predicted = np.round(np.outer(answers, rates))
        reference = rng.uniform(0, 0.5, size=genres).round(4)
        reference[(case + 1) % genres] = 0.0  # a genre the version never predicted held out
        live = predicted.sum(axis=0) / answers.sum()
        expected = float(population_stability(live, reference))
        assert expected > 0.01
        tests.append(
            {
                "name": f"psi case {case}",
                "interval": "1m",
                "input_series": drift_case(answers, predicted, reference, 0.2),
                "promql_expr_test": [
                    {
                        "expr": f"abs(version:poster_drift_psi:1h - {expected!r}) < bool 1e-9",
                        "eval_time": "60m",
                        "exp_samples": [
                            {"labels": '{job="poster-genres", version="v"}', "value": 1}
                        ],
                    }
                ],
            }
        )
    generated = tmp_path / "psi.test.yml"
    generated.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests})
    )
    result = promtool("test", "rules", str(generated))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_drift_rule_waits_for_the_window_its_threshold_was_set_for() -> None:
    recorded = {r["record"]: r["expr"] for g in rule_groups() for r in g["rules"] if "record" in r}
    assert f">= {WINDOW_ANSWERS}" in recorded["version:poster_drift_psi:1h"]
    assert "0.001, 0.999" in recorded["version:poster_genre_reference:ratio"]


def dashboard_expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]


def test_dashboard_expressions_pass_promtool_and_name_only_exported_metrics(
    tmp_path: Path,
) -> None:
    """This promtool has no query parser of its own: each expression, its variables substituted,
    is checked as a recording rule."""
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in board["templating"]["list"]}
    substitutes = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
    substitutes |= {f"${name}": ".*" for name in variables}
    exprs = dashboard_expressions()
    assert len(exprs) >= 8
    rules = []
    exported, recorded = exported_series_names(), recorded_names()
    for index, expr in enumerate(exprs):
        for variable, value in sorted(substitutes.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        assert metric_names_in(expr) <= exported, metric_names_in(expr) - exported
        assert set(re.findall(r"\b(?:job|version):[a-z_0-9:]+", expr)) <= recorded, expr
        rules.append({"record": f"dashboard:expr_{index}", "expr": expr})
    checked = tmp_path / "dashboard.rules.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    titles = " ".join(p["title"].lower() for p in board["panels"])
    for topic in ("throughput", "latency", "shed", "error", "genre mix", "drift"):
        assert topic in titles, topic
