"""The Keras port of EfficientNet-Lite0 reproduces the PyTorch reference (no torch needed)."""

from __future__ import annotations

import keras
import numpy as np

from tools.lite0_reference import REFERENCE_SIZE, reference_inputs
from training.efficientnet_lite import (
    REFERENCE,
    build_backbone,
    build_lite0_classifier,
    imagenet_classifier_weights,
    load_imagenet_weights,
    open_backbone,
    scale_pixels,
)


def test_port_reproduces_reference_activations() -> None:
    reference = np.load(REFERENCE)
    backbone = build_backbone(REFERENCE_SIZE)
    load_imagenet_weights(backbone)
    scaled = keras.ops.convert_to_numpy(scale_pixels()(reference_inputs()))
    pooled = keras.ops.convert_to_numpy(backbone(scaled, training=False)).mean(axis=(1, 2))
    kernel, bias = imagenet_classifier_weights()
    assert np.abs(pooled - reference["pooled"]).max() < 1e-4
    assert np.abs(pooled @ kernel + bias - reference["logits"]).max() < 1e-4


def test_random_weights_do_not_match_the_reference() -> None:
    keras.utils.set_random_seed(0)
    backbone = build_backbone(REFERENCE_SIZE)
    scaled = keras.ops.convert_to_numpy(scale_pixels()(reference_inputs()))
    pooled = keras.ops.convert_to_numpy(backbone(scaled, training=False)).mean(axis=(1, 2))
    assert np.abs(pooled - np.load(REFERENCE)["pooled"]).max() > 0.1


def test_classifier_keeps_the_service_contract_and_starts_frozen() -> None:
    model = build_lite0_classifier(7)
    assert model.input_shape == (None, 400, 400, 3) and model.output_shape == (None, 7)
    assert model.get_layer("efficientnet_lite0").trainable is False
    assert len(model.trainable_weights) == 2  # only the head's kernel and bias
    opened = open_backbone(model, from_block=14)
    assert len(opened) == 7  # blocks 14 and 15 (three convolutions each) and the head conv
