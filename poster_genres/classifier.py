"""GenreClassifier: a version's network behind its runtime, at fixed batch shapes, plus its
decision rule. The offline scorer, the evaluation CLI and the HTTP service all use this class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poster_genres.artifact import ModelVersion, open_version
from poster_genres.decision import Decision
from poster_genres.maps import Explainer
from poster_genres.preprocessing import INPUT_SHAPE
from poster_genres.runtimes import ModelRunner, RuntimeChoice, open_runner
from poster_genres.runtimes.threads import process_budget


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """The only batch shapes ever prepared: powers of two and their 1.5x (1, 2, 3, 4, 6, 8, 12,
    16, ...) up to `max_batch`, and `max_batch` itself. The batcher runs exactly these sizes, so a
    CPU-bound model never computes padding."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    sizes = {max_batch}
    for i in range(max_batch.bit_length()):
        sizes |= {s for s in (1 << i, 3 << i >> 1) if 1 <= s <= max_batch}
    return tuple(sorted(sizes))


def as_pixels(inputs: np.ndarray) -> np.ndarray:
    """uint8 pixels from model inputs: uint8 as they are; float32 in [0, 1] as
    `preprocessing.pixels_to_input` makes them (value / 255), back to their exact 8-bit values.
    The runtimes scale in their graph, bit-identically to that division (tested)."""
    if inputs.dtype == np.uint8:
        return inputs
    pixels: np.ndarray = np.rint(np.clip(inputs, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    return pixels


class GenreClassifier:
    """Turns batches of model inputs into genre probabilities and decisions.

    The service sends uint8 pixels (`preprocessing.to_model_pixels`): a queued image then holds
    480 KB instead of 1.9 MB, and the scaling to [0, 1] runs inside the runtime's graph. Float32
    inputs (`preprocessing.poster_to_input`, as training and evaluation use) are accepted too.
    """

    def __init__(self, version: ModelVersion, runner: ModelRunner) -> None:
        self.version_info = version
        self.genres = version.genres
        self.rule = version.decision_rule()
        self.runner = runner
        self.buckets = runner.sizes
        self.max_batch = self.buckets[-1]

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        runtime: RuntimeChoice = "auto",
        max_batch: int = 16,
        interpreters: int | None = None,
    ) -> GenreClassifier:
        """Verify the version at `path` and load its network under `runtime`."""
        return cls.from_version(
            open_version(path), runtime=runtime, max_batch=max_batch, interpreters=interpreters
        )

    @classmethod
    def from_version(
        cls,
        version: ModelVersion,
        *,
        runtime: RuntimeChoice = "auto",
        max_batch: int = 16,
        interpreters: int | None = None,
    ) -> GenreClassifier:
        """Load an already verified version's network under `runtime`."""
        runner = open_runner(version, runtime, bucket_sizes(max_batch), interpreters=interpreters)
        return cls(version, runner)

    @property
    def name(self) -> str:
        return self.version_info.name

    @property
    def version(self) -> str:
        return self.version_info.version

    @property
    def runtime(self) -> str:
        return self.runner.runtime

    def explainer(self) -> Explainer:
        """The explainer that fits this runtime: CAM from the LiteRT model's class maps, or
        Grad-CAM on the Keras model already loaded. ValueError when the version cannot explain."""
        budget = process_budget()
        if self.runner.runtime == "litert":
            from poster_genres.runtimes.litert_runtime import LiteRTExplainer

            return LiteRTExplainer(self.version_info, budget)
        from poster_genres.artifact import LoadedModel
        from poster_genres.explain import GenreExplainer

        model = getattr(self.runner, "model", None)
        if model is None:
            raise ValueError("this runtime has no Keras model to explain with")
        version = self.version_info
        return GenreExplainer(
            LoadedModel(metadata=version.metadata, path=version.path, model=model)
        )

    def warm_up(self) -> None:
        """Run every batch shape once, so the first request pays no preparation cost."""
        self.runner.warm_up()

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities (n, N) for model inputs (n, 400, 400, 3), uint8 pixels or float32 in
        [0, 1]; any n, run in bounded chunks."""
        if inputs.ndim != 4 or inputs.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected inputs of shape (n, {INPUT_SHAPE}), got {inputs.shape}")
        if inputs.dtype not in (np.uint8, np.float32):
            raise ValueError(f"expected uint8 or float32 inputs, got {inputs.dtype}")
        pixels = as_pixels(inputs)
        outputs = []
        for start in range(0, len(pixels), self.max_batch):
            chunk = pixels[start : start + self.max_batch]
            size = next(b for b in self.buckets if b >= len(chunk))
            if size > len(chunk):
                padding = np.zeros((size - len(chunk), *INPUT_SHAPE), dtype=np.uint8)
                chunk = np.concatenate([chunk, padding])
            outputs.append(self.runner.run(chunk)[: min(self.max_batch, len(pixels) - start)])
        if not outputs:
            return np.zeros((0, len(self.genres)), dtype=np.float32)
        return np.concatenate(outputs)

    def decide(self, probabilities: np.ndarray, top_k: int) -> Decision:
        """Top-k genres and the predicted ones, by this version's rule (poster_genres.decision)."""
        return self.rule.decide(probabilities, top_k)
