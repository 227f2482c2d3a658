"""The runtime seam: what runs a model version's network on a batch of pixels.

One small interface, `ModelRunner`, and two implementations: Keras/TensorFlow, the reference
(`keras_runtime`), and LiteRT (`litert_runtime`), which runs the version's `model.tflite` through
`ai-edge-litert` without TensorFlow. Only those two modules import a runtime to predict; the
classifier, the service, the scorer, evaluation and the benchmarks all go through `open_runner`.
"""

from __future__ import annotations

import importlib.util
from typing import Literal, Protocol

import numpy as np

from poster_genres.artifact import ModelVersion
from poster_genres.errors import ModelStoreError
from poster_genres.runtimes.threads import ThreadBudget, process_budget

RuntimeName = Literal["keras", "litert"]
RuntimeChoice = Literal["auto", "keras", "litert"]
RUNTIME_CHOICES: tuple[RuntimeChoice, ...] = ("auto", "keras", "litert")


class ModelRunner(Protocol):
    """Runs one version's network: uint8 pixels (n, 400, 400, 3) -> float32 probabilities (n, N),
    for n in `sizes` only (the shapes it was prepared for; the classifier pads to them)."""

    @property
    def runtime(self) -> RuntimeName: ...

    @property
    def sizes(self) -> tuple[int, ...]: ...

    @property
    def parallel(self) -> int:
        """Model calls that may run at once (each on its own interpreter)."""
        ...

    def run(self, pixels: np.ndarray) -> np.ndarray: ...

    def warm_up(self) -> None: ...


def litert_importable() -> bool:
    """Whether this installation has LiteRT (`poster-genres[litert]`)."""
    try:
        return importlib.util.find_spec("ai_edge_litert") is not None
    except ImportError:
        return False


def keras_importable() -> bool:
    """Whether this installation has TensorFlow and Keras (the slim image has neither)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))
    except ImportError:  # an import hook that forbids them
        return False


def resolve_runtime(choice: RuntimeChoice, version: ModelVersion) -> RuntimeName:
    """The runtime `choice` means for `version`: `auto` is LiteRT when the version has a verified
    `model.tflite` (or when TensorFlow is not installed), else Keras."""
    if choice not in RUNTIME_CHOICES:
        raise ModelStoreError(f"unknown runtime {choice!r}; choose {', '.join(RUNTIME_CHOICES)}")
    if choice == "auto":
        if version.litert is not None and litert_importable():
            return "litert"
        if not keras_importable():
            raise ModelStoreError(
                f"{version.path}: neither LiteRT with a model.tflite nor TensorFlow is available: "
                "install poster-genres[litert] (python -m training export-litert writes the file) "
                "or poster-genres[keras]"
            )
        return "keras"
    if choice == "litert" and version.litert is None:
        raise ModelStoreError(
            f"{version.path} has no model.tflite for POSTER_RUNTIME=litert "
            "(python -m training export-litert writes one)"
        )
    if choice == "litert" and not litert_importable():
        raise ModelStoreError("POSTER_RUNTIME=litert needs LiteRT: install poster-genres[litert]")
    if choice == "keras" and not keras_importable():
        raise ModelStoreError("POSTER_RUNTIME=keras needs TensorFlow: install poster-genres[keras]")
    return choice


def open_runner(
    version: ModelVersion,
    runtime: RuntimeChoice,
    sizes: tuple[int, ...],
    *,
    budget: ThreadBudget | None = None,
    interpreters: int | None = None,
) -> ModelRunner:
    """Load `version`'s network under `runtime`, prepared for the batch `sizes`. LiteRT runs
    `interpreters` calls at once, each with an equal share of the budget's threads (default one,
    with all of them: two single-threaded interpreters matched its throughput at concurrency 16
    on a 2-core AVX2 CPU but took half again as long per poster alone, bench/RUNTIMES.md);
    Keras runs one call at a time on the whole budget."""
    budget = budget or process_budget()
    if resolve_runtime(runtime, version) == "litert":
        from poster_genres.runtimes.litert_runtime import LiteRTRunner

        count = min(interpreters or 1, budget.size)
        return LiteRTRunner(
            version, sizes, budget, interpreters=count, threads=budget.size // count
        )
    from poster_genres.runtimes.keras_runtime import KerasRunner

    return KerasRunner(version, sizes, budget)
