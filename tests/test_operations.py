"""What operators watch: error codes, readiness and worker gauges, the genre mix per version, and
drift (the reference implementation, and the rule live against a real server on real posters)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.config import PROJECT_ROOT
from app.main import create_app
from poster_genres.artifact import METADATA_FILE, resolve_version_dir, update_metadata
from poster_genres.decision import DecisionRule
from poster_genres.drift import build_reference, population_stability
from poster_genres.errors import ModelStoreError
from poster_genres.metadata import ModelMetadata, read_metadata
from tests.conftest import make_settings, poster_bytes
from tests.service_process import running_service
from tests.test_alerts import RULES, promtool, series

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a /metrics text, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def by_genre(found: Samples, name: str, version: str) -> dict[str, float]:
    return {
        dict(labels)["genre"]: v
        for (n, labels), v in found.items()
        if n == name and dict(labels).get("version") == version
    }


@pytest.fixture(scope="module")
def ops_client(tiny_store: Path) -> Iterator[TestClient]:
    """An app of its own, so that its counters start at zero."""
    app = create_app(make_settings(tiny_store, max_batch_wait_ms=5))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_answers_count_into_their_versions_genre_mix(
    ops_client: TestClient, tiny_version: Path
) -> None:
    before = samples(ops_client.get("/metrics").text)
    assert value(before, "poster_answers_total", version="tiny") == 0.0
    assert set(by_genre(before, "poster_genre_predicted_total", "tiny").values()) == {0.0}
    bodies = []
    for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200)):
        files = {"file": ("p.jpg", poster_bytes(colour), "image/jpeg")}
        response = ops_client.post("/predict", files=files)
        assert response.status_code == 200
        bodies.append(response.json())
    after = samples(ops_client.get("/metrics").text)
    assert value(after, "poster_answers_total", version="tiny") == 3.0
    predicted = by_genre(after, "poster_genre_predicted_total", "tiny")
    for genre, count in predicted.items():
        assert count == sum(genre in [g["genre"] for g in b["predicted"]] for b in bodies), genre
    sums = by_genre(after, "poster_genre_probability_total", "tiny")
    for genre, total in sums.items():
        shown = sum(
            p["probability"] for b in bodies for p in b["probabilities"] if p["genre"] == genre
        )
        assert total == pytest.approx(shown, abs=3 * 5e-5), genre
    drift = json.loads((tiny_version / "metadata.json").read_text())["drift"]
    genres = json.loads((tiny_version / "metadata.json").read_text())["genres"]
    reference = by_genre(after, "poster_genre_reference_rate", "tiny")
    assert [reference[g] for g in genres] == drift["predicted_rate"]
    means = by_genre(after, "poster_genre_reference_probability", "tiny")
    assert [means[g] for g in genres] == drift["mean_probability"]
    assert value(after, "poster_drift_threshold", version="tiny") == drift["psi_threshold"]


def test_error_answers_are_counted_by_route_and_code(ops_client: TestClient) -> None:
    empty = {"file": ("p.jpg", b"", "image/jpeg")}
    assert ops_client.post("/predict", files=empty).status_code == 400
    assert ops_client.get("/no/such/route").status_code == 404
    too_big = ops_client.post(
        "/predict",
        content=b"x" * 16,
        headers={"Content-Type": "image/jpeg", "Content-Length": str(10**9)},
    )
    assert too_big.status_code == 413
    found = samples(ops_client.get("/metrics").text)
    assert value(found, "poster_errors_total", route="/predict", code="empty_file") == 1.0
    assert value(found, "poster_errors_total", route="unmatched", code="not_found") == 1.0
    assert value(found, "poster_errors_total", route="unmatched", code="payload_too_large") == 1.0
    files = [
        ("files", ("a.jpg", poster_bytes(), "image/jpeg")),
        ("files", ("b.jpg", b"nope", "image/jpeg")),
    ]
    batch = ops_client.post("/predict/batch", files=files)
    assert [item["error"] is None for item in batch.json()["results"]] == [True, False]
    found = samples(ops_client.get("/metrics").text)
    counted = {
        (dict(labels)["route"], dict(labels)["code"]): v
        for (name, labels), v in found.items()
        if name == "poster_errors_total" and v
    }
    # One file of a batch refused inside a 200 counts as a refusal; nothing else was an error.
    assert counted == {
        ("/predict", "empty_file"): 1.0,
        ("unmatched", "not_found"): 1.0,
        ("unmatched", "payload_too_large"): 1.0,
        ("/predict/batch", "invalid_image"): 1.0,
    }
    # The codes the alerts watch exist at zero before the first one, so a rate sees it.
    assert value(found, "poster_errors_total", route="/explain", code="overloaded") == 0.0


def test_readiness_and_worker_gauges_follow_the_service(tiny_store: Path) -> None:
    app = create_app(make_settings(tiny_store))
    with TestClient(app, raise_server_exceptions=False) as client:
        found = samples(client.get("/metrics").text)
        assert value(found, "poster_ready") == 1.0
        assert value(found, "poster_batch_worker_up") == 1.0
        app.state.service.default.batcher._failure = RuntimeError("the worker died")
        found = samples(client.get("/metrics").text)
        assert value(found, "poster_ready") == 0.0
        assert value(found, "poster_batch_worker_up") == 0.0
        app.state.service.default.batcher._failure = None
        app.state.service.gate.drain()
        found = samples(client.get("/metrics").text)
        assert value(found, "poster_ready") == 0.0
        assert value(found, "poster_batch_worker_up") == 1.0


def test_population_stability_on_hand_made_rates() -> None:
    assert population_stability(np.array([0.3, 0.0]), np.array([0.3, 0.0])) == 0.0
    # One genre at 0.5 against 0.25: 0.25·ln 2 + 0.25·ln(0.75 / 0.5).
    expected = 0.25 * np.log(2) + 0.25 * np.log(1.5)
    assert population_stability(np.array([0.5]), np.array([0.25])) == pytest.approx(expected)
    # A genre absent from the window is clamped to 0.001, not infinite.
    assert np.isfinite(population_stability(np.array([0.0]), np.array([0.2])))
    rows = population_stability(np.array([[0.5], [0.25]]), np.array([0.25]))
    assert rows.shape == (2,) and rows[1] == 0.0


def test_the_threshold_is_crossed_by_fewer_than_one_random_window_in_a_hundred() -> None:
    rng = np.random.default_rng(3)
    genres = (*(f"g{i}" for i in range(9)), "N/A")
    probabilities = rng.beta(0.6, 2.0, size=(900, len(genres)))
    rule = DecisionRule.build(genres, [0.3 + 0.02 * i for i in range(len(genres))])
    reference = build_reference(probabilities, rule, "synthetic")
    predicted = rule.predicted_matrix(probabilities)
    assert reference.predicted_rate == [round(float(v), 6) for v in predicted.mean(axis=0)]
    assert reference.predicted_rate[-1] == 0.0  # N/A is never predicted
    assert 0.0 < reference.bootstrap["crossed_on_fresh_draws"] < 0.01
    only_one_genre = np.zeros(len(genres))
    only_one_genre[2] = 1.0
    reference_rates = np.array(reference.predicted_rate)
    assert population_stability(only_one_genre, reference_rates) > 10 * reference.psi_threshold


def test_a_reference_of_the_wrong_length_is_refused(tmp_path: Path, tiny_version: Path) -> None:
    import shutil

    copy = tmp_path / "poster-genres" / "tiny"
    shutil.copytree(tiny_version, copy)

    def shorten(metadata: ModelMetadata) -> ModelMetadata:
        assert metadata.drift is not None
        short = metadata.drift.model_copy(update={"predicted_rate": [0.1]})
        return metadata.model_copy(update={"drift": short})

    with pytest.raises(ModelStoreError, match="drift"):
        update_metadata(copy, shorten)


def test_the_shipped_versions_carry_a_drift_reference_from_held_out_posters() -> None:
    for version in ("20261127-lite0", "20261127-lite0-v2"):
        metadata = read_metadata(
            PROJECT_ROOT / "model_store/poster-genres" / version / METADATA_FILE
        )
        assert metadata.drift is not None and metadata.split is not None
        held_out = [n for n in metadata.split.ids if n not in metadata.split.trained_on]
        assert metadata.drift.posters == sum(len(metadata.split.ids[n]) for n in held_out)
        assert metadata.drift.bootstrap["crossed_on_fresh_draws"] < 0.01


# --- drift live: a real server, the shipped model, real posters, and the rule under promtool ---


def replay(url: str, posters: list[Path]) -> None:
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, len(posters), 8):
            files = [
                ("files", (p.name, p.read_bytes(), "image/jpeg"))
                for p in posters[start : start + 8]
            ]
            response = client.post("/predict/batch", files=files)
            assert response.status_code == 200, response.text
            assert all(item["result"] is not None for item in response.json()["results"])


def scrape(url: str) -> Samples:
    return samples(httpx.get(f"{url}/metrics", timeout=30).text)


GENRE_MIX = ("poster_answers_total", "poster_genre_predicted_total")
REFERENCE = ("poster_genre_reference_rate", "poster_drift_threshold")


def as_input_series(before: Samples, after: Samples) -> list[dict[str, str]]:
    """The counters rising from `before` to `after` over one hour, the reference held: what a
    Prometheus scraping this replica every minute would have stored."""
    found = []
    for (name, labels), end in after.items():
        if name not in GENRE_MIX + REFERENCE:
            continue
        start = before[(name, labels)] if name in GENRE_MIX else end
        points = np.linspace(start, end, 61) if name in GENRE_MIX else np.full(61, end)
        values = " ".join(repr(float(p)) for p in points)
        found.append(series(name, {**dict(labels), "job": "poster-genres"}, values))
    return found


@pytest.mark.slow  # two replays of 200 real posters through a real server: ~20 s under LiteRT
def test_replaying_one_genre_crosses_the_drift_threshold_and_a_random_sample_does_not(
    real_data: Path, tmp_path: Path
) -> None:
    import csv

    shipped = resolve_version_dir(PROJECT_ROOT / "model_store", "poster-genres", None)
    metadata = json.loads((shipped / "metadata.json").read_text())
    split = metadata["split"]["ids"]
    with (real_data / "train.csv").open(newline="") as handle:
        horror = {row["Id"] for row in csv.DictReader(handle) if row["Horror"] == "1"}
    images = real_data / "Images"
    training_horror = sorted(set(split["train"]) & horror)[:200]
    rng = np.random.default_rng(11)
    held_out = [str(i) for i in rng.choice(sorted(split["test"]), size=200, replace=False)]
    assert len(training_horror) == 200
    with running_service(PROJECT_ROOT / "model_store", {"POSTER_MAX_BATCH_SIZE": "8"}) as service:
        start = scrape(service.url)
        replay(service.url, [images / f"{i}.jpg" for i in held_out])
        after_random = scrape(service.url)
        replay(service.url, [images / f"{i}.jpg" for i in training_horror])
        after_horror = scrape(service.url)
    version = metadata["version"]
    assert (
        value(after_random, "poster_answers_total", version=version)
        - value(start, "poster_answers_total", version=version)
        == 200
    )
    crossed = (
        "version:poster_drift_psi:1h > bool on (job, version) "
        "max by (job, version) (poster_drift_threshold)"
    )
    tests = []
    for name, before, after, expected in (
        ("a random sample of held-out posters", start, after_random, 0),
        ("only Horror training posters", after_random, after_horror, 1),
    ):
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": as_input_series(before, after),
                "promql_expr_test": [
                    {
                        "expr": crossed,
                        "eval_time": "60m",
                        "exp_samples": [
                            {
                                "labels": f'{{job="poster-genres", version="{version}"}}',
                                "value": expected,
                            }
                        ],
                    }
                ],
            }
        )
    generated = tmp_path / "live.test.yml"
    generated.write_text(
        yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests})
    )
    result = promtool("test", "rules", str(generated))
    assert result.returncode == 0, result.stdout + result.stderr
