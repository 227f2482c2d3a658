"""LiteRT: the version's `model.tflite` run by `ai-edge-litert`'s interpreter (XNNPACK), with no
TensorFlow in the process. The file was exported from the Keras model and checked against it
(`training export-litert`); its SHA-256 was verified when the version was opened."""

from __future__ import annotations

import queue
from typing import Any, Literal

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from poster_genres.artifact import ModelVersion
from poster_genres.errors import ModelStoreError
from poster_genres.maps import GenreMap, MapMethod, check_request, peak_scaled
from poster_genres.preprocessing import INPUT_SHAPE
from poster_genres.quiet import native_stderr_held
from poster_genres.runtimes.threads import ThreadBudget


def prepared_interpreter(
    content: bytes, size: int, version: ModelVersion, threads: int
) -> Interpreter:
    """An interpreter for batches of `size`, its input and outputs checked against the version."""
    try:
        with native_stderr_held():  # XNNPACK's one INFO line per interpreter
            interpreter = Interpreter(model_content=content, num_threads=threads)
            (source,) = interpreter.get_input_details()
            interpreter.resize_tensor_input(source["index"], [size, *INPUT_SHAPE], strict=True)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelStoreError(f"{version.path}: model.tflite cannot be run: {exc}") from exc
    (source,) = interpreter.get_input_details()
    probabilities = output_of(interpreter, rank=2)
    if source["dtype"] is not np.uint8 or int(probabilities["shape"][-1]) != len(version.genres):
        raise ModelStoreError(
            f"{version.path}: model.tflite takes {source['dtype'].__name__} and gives "
            f"{int(probabilities['shape'][-1])} outputs; expected uint8 pixels and "
            f"{len(version.genres)} genres"
        )
    return interpreter


def output_of(interpreter: Interpreter, rank: int) -> dict[str, Any]:
    """The output of that rank: probabilities (n, N) are rank 2, class maps (n, h, w, N) rank 4
    (the converter does not keep the names' order, so the shape tells them apart)."""
    found = [d for d in interpreter.get_output_details() if len(d["shape"]) == rank]
    if len(found) != 1:
        raise ModelStoreError(f"model.tflite has {len(found)} outputs of rank {rank}, not 1")
    detail: dict[str, Any] = found[0]
    return detail


def invoke(interpreter: Interpreter, pixels: np.ndarray) -> np.ndarray:
    """Probabilities for a batch of the interpreter's size."""
    (source,) = interpreter.get_input_details()
    interpreter.set_tensor(source["index"], np.ascontiguousarray(pixels, dtype=np.uint8))
    interpreter.invoke()
    return np.array(interpreter.get_tensor(output_of(interpreter, 2)["index"]), dtype=np.float32)


class LiteRTRunner:
    """Interpreters resized to each prepared batch size. Several may run at once (an interpreter
    is not thread-safe, so each call takes one from its size's pool); each holds its threads of
    the process budget while it runs."""

    runtime: Literal["litert"] = "litert"

    def __init__(
        self,
        version: ModelVersion,
        sizes: tuple[int, ...],
        budget: ThreadBudget,
        *,
        interpreters: int = 1,
        threads: int | None = None,
        content: bytes | None = None,
    ) -> None:
        if version.litert is None:
            raise ModelStoreError(f"{version.path} has no model.tflite")
        self.sizes = sizes
        self.parallel = interpreters
        self.threads = min(threads or budget.size, budget.size)
        self._budget = budget
        # `content`: a file being exported, not yet written (the export checks it first).
        content = content if content is not None else version.litert_bytes()
        self._pools: dict[int, queue.SimpleQueue[Interpreter]] = {}
        for size in sizes:
            pool: queue.SimpleQueue[Interpreter] = queue.SimpleQueue()
            for _ in range(interpreters):
                pool.put(prepared_interpreter(content, size, version, self.threads))
            self._pools[size] = pool

    def warm_up(self) -> None:
        """Run every prepared interpreter once (XNNPACK packs its weights on the first call)."""
        for size, pool in self._pools.items():
            held = [pool.get() for _ in range(pool.qsize())]
            try:
                for interpreter in held:
                    invoke(interpreter, np.zeros((size, *INPUT_SHAPE), dtype=np.uint8))
            finally:
                for interpreter in held:
                    pool.put(interpreter)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        pool = self._pools[len(pixels)]
        interpreter = pool.get()
        try:
            return self._budget.run(self.threads, lambda: invoke(interpreter, pixels))
        finally:
            pool.put(interpreter)


class LiteRTExplainer:
    """CAM maps from the class maps `model.tflite` outputs beside the probabilities: each cell's
    score for each genre (the last feature map times the Dense kernel). For the shipped heads
    (global average pooling, then Dense) this is Grad-CAM's map exactly; the export checked it
    against the Keras Grad-CAM maps."""

    method: MapMethod = "cam"

    def __init__(
        self, version: ModelVersion, budget: ThreadBudget, *, content: bytes | None = None
    ) -> None:
        record = version.litert
        if record is None or "class_maps" not in record.outputs:
            raise ValueError("this version's model.tflite has no class maps to explain with")
        self.genres = version.genres
        self.threads = budget.size
        self._budget = budget
        content = content if content is not None else version.litert_bytes()
        self._interpreter = prepared_interpreter(content, 1, version, self.threads)
        rows, cols = output_of(self._interpreter, 4)["shape"][1:3]
        self.grid_shape = (int(rows), int(cols))

    def warm_up(self) -> None:
        self.explain(np.zeros(INPUT_SHAPE, dtype=np.uint8))

    def explain(self, pixels: np.ndarray, genre_index: int | None = None) -> GenreMap:
        """The map of genre `genre_index` (default: the most probable) for one poster."""
        check_request(pixels, genre_index, len(self.genres))
        interpreter = self._interpreter
        with self._budget.threads(self.threads):
            probabilities = invoke(interpreter, pixels[None])[0]
            maps = interpreter.get_tensor(output_of(interpreter, 4)["index"])[0]
        index = int(np.argmax(probabilities)) if genre_index is None else genre_index
        grid = peak_scaled(maps[:, :, index])
        return GenreMap(index, float(probabilities[index]), probabilities, grid)
