"""`model.tflite` for a version: converted from its Keras model, checked on real posters, recorded.

TensorFlow's own converter turns the uint8 serving function (pixels scaled in the graph, as the
Keras runtime does) into a float32 LiteRT model; no quantisation, so answers stay the same. Where
the head is global average pooling then Dense, the file also outputs each cell's score for each
genre (the last feature map times the Dense kernel): CAM maps, which LiteRT serves `/explain` from.

The export refuses to write anything unless, on posters the model never trained on, every
probability is within `MAX_PROBABILITY_DIFFERENCE` of Keras's and no `predicted` list changes.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from poster_genres.artifact import (
    LITERT_FILE,
    ModelVersion,
    load_version,
    open_version,
    update_metadata,
)
from poster_genres.decision import shown
from poster_genres.explain import GenreExplainer
from poster_genres.metadata import LiteRTRecord, ModelMetadata
from poster_genres.preprocessing import INPUT_SHAPE, decode_poster, to_model_pixels
from poster_genres.runtimes.keras_runtime import KerasRunner, scale_pixels
from poster_genres.runtimes.litert_runtime import LiteRTExplainer, LiteRTRunner
from poster_genres.runtimes.threads import process_budget

MAX_PROBABILITY_DIFFERENCE = 1e-4
MAX_MAP_DIFFERENCE = 1e-4
DEFAULT_POSTERS = 320
MAP_POSTERS = 8
PARITY_BATCH = 16


class ExportRefused(Exception):
    """The LiteRT model does not answer as the Keras one does, or cannot be checked."""


def antialiased_resize(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """`tf.image.resize(..., antialias=True)` as two matrix products. LiteRT has no builtin for
    TensorFlow's antialiased resize (ScaleAndTranslate); the resize is linear and separable, so its
    weights are read off the op itself, applied to the identity."""
    rows, cols = int(images.shape[1]), int(images.shape[2])

    def weights(size_in: int, size_out: int) -> tf.Tensor:
        with tf.init_scope():  # eagerly, even while the serving function is traced
            identity = tf.eye(size_in)[None, :, :, None]
            resized = tf.image.resize(identity, (size_out, size_in), antialias=True)
            values = resized[0, :, :, 0].numpy()
        return tf.constant(values)

    along_rows, along_cols = weights(rows, height), weights(cols, width)
    return tf.einsum("hH,bHWc,wW->bhwc", along_rows, images, along_cols)


def chain(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's layers in order, each fed the previous one's output (every shipped
    architecture is such a chain at the top level). Shapes must follow on; anything the walk
    still gets wrong fails the parity check, which compares with the model itself."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    shape = tuple(model.inputs[0].shape)
    for layer in layers:
        if tuple(layer.input.shape) != shape:
            raise ExportRefused(f"{model.name} is not a chain of layers at {layer.name}")
        shape = tuple(layer.output.shape)
    return layers


def convert(model: keras.Model) -> tuple[bytes, list[str]]:
    """The float32 LiteRT model of the uint8 serving function, and the names of its outputs."""
    layers = chain(model)
    collapsing = next(
        (
            i
            for i, layer in enumerate(layers)
            if len(layer.input.shape) == 4 and len(layer.output.shape) == 2
        ),
        None,
    )
    head = layers[-1]
    with_maps = (
        collapsing is not None
        and isinstance(layers[collapsing], keras.layers.GlobalAveragePooling2D)
        and isinstance(head, keras.layers.Dense)
    )

    def serve(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        x = scale_pixels(pixels)
        out: dict[str, tf.Tensor] = {}
        for index, layer in enumerate(layers):
            if with_maps and index == collapsing:
                out["class_maps"] = tf.einsum("bhwc,cn->bhwn", x, head.kernel)
            if isinstance(layer, keras.layers.Resizing) and layer.get_config()["antialias"]:
                x = antialiased_resize(x, layer.get_config()["height"], layer.get_config()["width"])
            else:
                x = layer(x, training=False)
        out["probabilities"] = x
        return out

    function = tf.function(
        serve, input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.uint8)], autograph=False
    )
    with warnings.catch_warnings():
        # TF 2.21 warns that tf.lite is moving to LiteRT; the converter itself is what we want.
        warnings.simplefilter("ignore")
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [function.get_concrete_function()], model
        )
        content: bytes = converter.convert()
    return content, sorted(["probabilities", *(["class_maps"] if with_maps else [])])


def held_out_posters(version: ModelVersion, images: Path, count: int) -> list[Path]:
    """Posters of the version's splits it never trained on (test first), that exist in `images`."""
    split = version.metadata.split
    if split is None:
        return []
    trained = set(split.trained_on)
    ids = [
        i for part in ("test", "validation") if part not in trained for i in split.ids.get(part, [])
    ]
    found = [images / f"{poster_id}.jpg" for poster_id in ids]
    return [p for p in found if p.is_file()][:count]


def parity(
    version: ModelVersion, keras_model: keras.Model, content: bytes, posters: list[Path]
) -> dict[str, Any]:
    """Keras against LiteRT on `posters`: probabilities, `predicted` lists, and (with class maps)
    the explanation maps."""
    budget = process_budget()
    sizes = (PARITY_BATCH,)
    reference = KerasRunner(version, sizes, budget, model=keras_model)
    candidate = LiteRTRunner(version, sizes, budget, content=content)
    pixels = np.stack([to_model_pixels(decode_poster(p.read_bytes()).image) for p in posters])
    padded = np.concatenate(
        [pixels, np.zeros((-len(pixels) % PARITY_BATCH, *INPUT_SHAPE), dtype=np.uint8)]
    )
    expected, got = [], []
    for start in range(0, len(padded), PARITY_BATCH):
        chunk = padded[start : start + PARITY_BATCH]
        expected.append(reference.run(chunk))
        got.append(candidate.run(chunk))
    keras_probs = np.concatenate(expected)[: len(pixels)]
    litert_probs = np.concatenate(got)[: len(pixels)]
    rule = version.decision_rule()
    changed = int(
        (rule.predicted_matrix(keras_probs) != rule.predicted_matrix(litert_probs))
        .any(axis=1)
        .sum()
    )
    shown_changed = int(
        sum(
            [shown(a) for a in row_a] != [shown(b) for b in row_b]
            for row_a, row_b in zip(keras_probs, litert_probs, strict=True)
        )
    )
    return {
        "posters": len(posters),
        "splits": [p for p in ("test", "validation") if p not in _trained_on(version)],
        "max_abs_difference": float(np.abs(keras_probs - litert_probs).max()),
        "changed_predicted": changed,
        "changed_shown_probabilities": shown_changed,
    }


def map_parity(
    version: ModelVersion, keras_model: keras.Model, content: bytes, posters: list[Path]
) -> float:
    """The largest difference between Keras's Grad-CAM maps and LiteRT's CAM maps (each scaled to
    a peak of 1), for each poster's two most probable genres."""
    from poster_genres.artifact import LoadedModel

    loaded = LoadedModel(metadata=version.metadata, path=version.path, model=keras_model)
    grad_cam = GenreExplainer(loaded)
    cam = LiteRTExplainer(version, process_budget(), content=content)
    worst = 0.0
    for path in posters:
        pixels = to_model_pixels(decode_poster(path.read_bytes()).image)
        first = grad_cam.explain(pixels)
        second = int(np.argsort(-first.probabilities)[1])
        for genre in (first.genre_index, second):
            a = grad_cam.explain(pixels, genre).grid
            b = cam.explain(pixels, genre).grid
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def _trained_on(version: ModelVersion) -> list[str]:
    return version.metadata.split.trained_on if version.metadata.split else []


def export_litert(
    model_dir: Path, images: Path, *, posters: int = DEFAULT_POSTERS
) -> dict[str, Any]:
    """Convert, check and record `model_dir`'s `model.tflite`; its parity record. Raises
    `ExportRefused` (nothing written) when the check fails or there is nothing to check on."""
    loaded = load_version(model_dir)
    checked_on = held_out_posters(loaded, images, posters)
    if not checked_on:
        raise ExportRefused(
            f"no poster the model never trained on was found in {images}: the export is checked "
            "on real held-out posters (--images, the dataset's Images folder)"
        )
    content, outputs = convert(loaded.model)
    staged = open_version_with(loaded, content, outputs)
    record = parity(staged, loaded.model, content, checked_on)
    if record["max_abs_difference"] > MAX_PROBABILITY_DIFFERENCE or record["changed_predicted"]:
        raise ExportRefused(
            f"LiteRT differs from Keras: max |Δp| {record['max_abs_difference']:.2e} "
            f"(limit {MAX_PROBABILITY_DIFFERENCE:.0e}), {record['changed_predicted']} of "
            f"{record['posters']} predicted lists changed"
        )
    if "class_maps" in outputs:
        record["max_map_difference"] = map_parity(
            staged, loaded.model, content, checked_on[:MAP_POSTERS]
        )
        record["map_posters"] = min(MAP_POSTERS, len(checked_on))
        if record["max_map_difference"] > MAX_MAP_DIFFERENCE:
            # The maps stay in the file, unused: under LiteRT /explain answers 501.
            outputs = ["probabilities"]
    staging = model_dir / f".{LITERT_FILE}.tmp"
    staging.write_bytes(content)
    os.replace(staging, model_dir / LITERT_FILE)
    final = _record(content, outputs, record)
    update_metadata(model_dir, lambda m: m.model_copy(update={"litert": final}))
    open_version(model_dir)  # what was written verifies
    return final.model_dump()


def _record(content: bytes, outputs: list[str], record: dict[str, Any]) -> LiteRTRecord:
    return LiteRTRecord(
        sha256=hashlib.sha256(content).hexdigest(),
        outputs=outputs,
        parity=record,
        converter=f"tf.lite.TFLiteConverter (TensorFlow {tf.__version__}), float32",
        exported_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def open_version_with(loaded: ModelVersion, content: bytes, outputs: list[str]) -> ModelVersion:
    """The version as it will be once `content` is its model.tflite (nothing written yet)."""
    metadata: ModelMetadata = loaded.metadata.model_copy(
        update={"litert": _record(content, outputs, {})}
    )
    return ModelVersion(metadata=metadata, path=loaded.path)
