"""Several versions in one process: each answers with its own rule and names itself, ?version=
picks one, the default can be switched at run time by an admin call, unknown ones are 404."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import make_settings, poster_bytes

ADMIN = {"X-Admin-Key": "an-admin-key-of-16+"}
POSTER = poster_bytes((200, 30, 30), size=(120, 180))


def two_versions(store: Path, **overrides: object) -> TestClient:
    settings = make_settings(store, model_version="tiny", model_versions=["tiny-b"], **overrides)
    return TestClient(create_app(settings))


def predict(client: TestClient, query: str = "") -> dict[str, object]:
    answer = client.post(f"/predict{query}", files={"file": ("p.jpg", POSTER)})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_each_version_answers_with_its_own_rule_and_names_itself(two_version_store: Path) -> None:
    with two_versions(two_version_store) as client:
        default, other = predict(client), predict(client, "?version=tiny-b")
        assert default["version"] == "tiny" and other["version"] == "tiny-b"
        assert default["probabilities"] == other["probabilities"]  # the same weights
        assert len(other["predicted"]) > len(default["predicted"])  # 0.05 for every genre
        assert client.get("/genres?version=tiny-b").json()["rule"]["kind"] == "global_threshold"
        assert client.get("/genres").json()["rule"]["kind"] == "thresholds"
        batch = client.post(
            "/predict/batch?version=tiny-b", files=[("files", ("a.jpg", POSTER))]
        ).json()
        assert batch["results"][0]["result"]["version"] == "tiny-b"
        explained = client.post("/explain?version=tiny-b", files={"file": ("p.jpg", POSTER)})
        assert explained.status_code == 200 and explained.json()["version"] == "tiny-b"


def test_model_health_and_metrics_list_the_versions(two_version_store: Path) -> None:
    with two_versions(two_version_store) as client:
        predict(client, "?version=tiny-b")
        model = client.get("/model?version=tiny-b").json()
        assert (model["version"], model["default_version"]) == ("tiny-b", "tiny")
        assert model["versions"] == ["tiny", "tiny-b"]
        assert client.get("/health").json()["versions"] == ["tiny", "tiny-b"]
        text = client.get("/metrics").text
        assert 'default="true",name="poster-genres",runtime="litert",version="tiny"' in text
        assert 'default="false",name="poster-genres",runtime="litert",version="tiny-b"' in text
        assert 'poster_answers_total{version="tiny-b"} 1.0' in text
        assert 'poster_batch_size_count{runtime="litert",version="tiny-b"} 1.0' in text


@pytest.mark.parametrize("path", ["/predict", "/genres", "/model", "/explain"])
def test_an_unknown_version_is_404_listing_the_served_ones(
    two_version_store: Path, path: str
) -> None:
    with two_versions(two_version_store) as client:
        if path in ("/predict", "/explain"):
            answer = client.post(f"{path}?version=v9", files={"file": ("p.jpg", POSTER)})
        else:
            answer = client.get(f"{path}?version=v9")
        assert answer.status_code == 404
        error = answer.json()["error"]
        assert error["code"] == "unknown_version"
        assert error["message"] == "Version 'v9' is not served here; served: tiny, tiny-b."


def test_the_default_switches_at_run_time_by_an_admin_call_and_back(
    two_version_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with two_versions(two_version_store, admin_key=ADMIN["X-Admin-Key"]) as client:
        wanted = {"version": "tiny-b"}
        assert client.put("/admin/default-version", json=wanted).status_code == 401
        wrong = {"X-Admin-Key": "not-the-admin-key!"}
        assert client.put("/admin/default-version", json=wanted, headers=wrong).status_code == 401
        with caplog.at_level(logging.WARNING, logger="app"):
            switched = client.put("/admin/default-version", json=wanted, headers=ADMIN)
        assert switched.status_code == 200
        assert switched.json() == {
            "default_version": "tiny-b",
            "previous": "tiny",
            "versions": ["tiny-b", "tiny"],
        }
        assert "the default version is now tiny-b (was tiny), by an admin call" in caplog.text
        assert predict(client)["version"] == "tiny-b"
        assert client.get("/health").json()["version"] == "tiny-b"
        assert 'default="true",name="poster-genres",runtime="litert",version="tiny-b"' in (
            client.get("/metrics").text
        )
        unknown = client.put("/admin/default-version", json={"version": "v9"}, headers=ADMIN)
        assert unknown.status_code == 404
        back = client.put("/admin/default-version", json={"version": "tiny"}, headers=ADMIN)
        assert back.json()["default_version"] == "tiny"  # a rollback is the same switch
        assert predict(client)["version"] == "tiny"


def test_admin_calls_are_refused_when_no_admin_key_is_configured(two_version_store: Path) -> None:
    with two_versions(two_version_store, api_key="a-client-key-of-16+") as client:
        answer = client.put(
            "/admin/default-version",
            json={"version": "tiny-b"},
            headers={"X-Admin-Key": "a-client-key-of-16+", "X-API-Key": "a-client-key-of-16+"},
        )
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "forbidden"


def test_all_serves_every_version_of_the_store_with_the_newest_as_default(
    two_version_store: Path,
) -> None:
    with TestClient(create_app(make_settings(two_version_store, model_versions=["all"]))) as c:
        assert c.get("/model").json()["versions"] == ["tiny-b", "tiny"]


def test_the_version_list_reads_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTER_MODEL_VERSIONS", "v1, v2")
    assert Settings().model_versions == ["v1", "v2"]
    monkeypatch.setenv("POSTER_MODEL_VERSIONS", "all,v2")
    with pytest.raises(ValueError, match="either `all` or a list"):
        Settings()
