"""The runtime seam: Keras and LiteRT give the same answers, share one thread budget, and the
serving path runs with TensorFlow absent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from poster_genres.artifact import open_version, resolve_version_dir
from poster_genres.classifier import GenreClassifier
from poster_genres.decision import shown
from poster_genres.errors import ModelStoreError
from poster_genres.preprocessing import decode_poster, to_model_pixels
from poster_genres.runtimes import resolve_runtime
from poster_genres.runtimes.threads import ThreadBudget, available_cpus, cgroup_cpu_limit
from tests.conftest import poster_bytes

PROJECT = Path(__file__).resolve().parents[1]
STORE = PROJECT / "model_store"


def tiny_pixels() -> np.ndarray:
    colours = [(200, 30, 30), (30, 30, 200), (40, 40, 40), (220, 220, 30), (10, 200, 90)]
    return np.stack(
        [
            to_model_pixels(decode_poster(poster_bytes(c, square=i % 2 == 0)).image)
            for i, c in enumerate(colours)
        ]
    )


def test_both_runtimes_load_in_one_process_and_agree(tiny_version: Path) -> None:
    keras_side = GenreClassifier.open(tiny_version, runtime="keras", max_batch=4)
    litert_side = GenreClassifier.open(tiny_version, runtime="litert", max_batch=4)
    assert (keras_side.runtime, litert_side.runtime) == ("keras", "litert")
    pixels = tiny_pixels()
    expected, got = keras_side.predict(pixels), litert_side.predict(pixels)
    assert got.shape == expected.shape == (5, 4) and got.dtype == np.float32
    assert float(np.abs(expected - got).max()) <= 1e-4
    rule = keras_side.rule
    assert (rule.predicted_matrix(expected) == rule.predicted_matrix(got)).all()


def test_auto_is_litert_only_with_a_recorded_tflite(tiny_version: Path, broken_store: Path) -> None:
    assert resolve_runtime("auto", open_version(tiny_version)) == "litert"
    copy = broken_store / "poster-genres" / "tiny"
    (copy / "model.tflite").unlink()
    metadata = json.loads((copy / "metadata.json").read_text())
    del metadata["litert"]
    (copy / "metadata.json").write_text(json.dumps(metadata))
    assert resolve_runtime("auto", open_version(copy)) == "keras"
    with pytest.raises(ModelStoreError, match=r"no model\.tflite"):
        resolve_runtime("litert", open_version(copy))


def test_a_tflite_the_metadata_does_not_record_is_refused(broken_store: Path) -> None:
    copy = broken_store / "poster-genres" / "tiny"
    metadata = json.loads((copy / "metadata.json").read_text())
    del metadata["litert"]
    (copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelStoreError, match=r"not recorded in metadata\.json"):
        open_version(copy)


def test_the_serving_path_runs_with_tensorflow_blocked(tiny_store: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.without_tensorflow", str(tiny_store)],
        cwd=PROJECT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    statuses, modules = result.stdout.strip().splitlines()[-2:]
    assert statuses == "[200, 200, 200] litert cam"
    assert modules == "[]"


def test_cgroup_quotas_cap_the_budget(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert available_cpus(tmp_path) == min(2, len(__import__("os").sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(v1) == 1.0 and available_cpus(v1) == 1


def test_the_budget_never_runs_more_threads_than_it_has() -> None:
    budget = ThreadBudget(2)
    running, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 2
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 2

    workers = [threading.Thread(target=budget.run, args=(2, work)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert peak[0] == 2  # calls that take the whole budget run one at a time


@pytest.mark.real_data
@pytest.mark.parametrize("version", ["20261127-lite0", None])
def test_real_posters_get_the_same_answers_under_both_runtimes(
    real_data: Path, version: str | None
) -> None:
    """Both shipped versions (v1 included: its answers must not change with the export)."""
    path = resolve_version_dir(STORE, "poster-genres", version)
    posters = sorted((real_data / "Images").glob("*.jpg"))[:24]
    pixels = np.stack([to_model_pixels(decode_poster(p.read_bytes()).image) for p in posters])
    keras_side = GenreClassifier.open(path, runtime="keras", max_batch=8)
    litert_side = GenreClassifier.open(path, runtime="litert", max_batch=8)
    expected, got = keras_side.predict(pixels), litert_side.predict(pixels)
    assert float(np.abs(expected - got).max()) <= 1e-4
    rule = keras_side.rule
    assert (rule.predicted_matrix(expected) == rule.predicted_matrix(got)).all()
    top = [[shown(p) for p in row] for row in expected]
    assert (
        sum(a != [shown(p) for p in b] for a, b in zip(top, got, strict=True)) <= len(posters) // 4
    )


def test_a_call_that_needs_the_whole_budget_is_served_in_turn() -> None:
    """One-thread calls that keep arriving never starve a call that needs both threads."""
    budget = ThreadBudget(2)
    order: list[str] = []
    first = threading.Event()

    def small(name: str) -> None:
        with budget.threads(1):
            order.append(name)
            first.set()
            time.sleep(0.05)

    holder = threading.Thread(target=small, args=("small-0",))
    holder.start()
    first.wait(2)
    whole = threading.Thread(target=lambda: budget.run(2, lambda: order.append("whole")))
    whole.start()
    time.sleep(0.01)  # it is waiting now: later small calls queue behind it
    later = [threading.Thread(target=small, args=(f"small-{i}",)) for i in (1, 2)]
    for thread in later:
        thread.start()
    for thread in (holder, whole, *later):
        thread.join(5)
    assert order[:2] == ["small-0", "whole"]


def test_runtime_choices_are_checked(tiny_version: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import poster_genres.runtimes as runtimes

    version = open_version(tiny_version)
    with pytest.raises(ModelStoreError, match="unknown runtime 'LiteRT'"):
        resolve_runtime("LiteRT", version)  # type: ignore[arg-type]  # what an env var can hold
    monkeypatch.setattr(runtimes, "litert_importable", lambda: False)
    assert resolve_runtime("auto", version) == "keras"  # installed with [keras] only
    with pytest.raises(ModelStoreError, match=r"install poster-genres\[litert\]"):
        resolve_runtime("litert", version)
