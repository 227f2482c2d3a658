"""EfficientNet-Lite0 in Keras, loading the ImageNet weights converted from the PyTorch reference.

Built from stock layers only (Conv2D, DepthwiseConv2D, BatchNormalization, ReLU6, Add), so a saved
model loads in the service in Keras safe mode without this module. The port is pinned by
`tests/test_efficientnet_lite.py` against reference activations computed once with torch
(`tools/convert_efficientnet_lite0.py`). Weights: Apache-2.0, see training/weights/NOTICE.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

from poster_genres.preprocessing import INPUT_SHAPE

WEIGHTS = Path(__file__).resolve().parent / "weights" / "efficientnet_lite0.npz"
REFERENCE = Path(__file__).resolve().parent / "weights" / "efficientnet_lite0_reference.npz"
BN_EPSILON = 1e-3
FEATURES = 1280

# (repeats, kernel, first stride, expand ratio, output filters): the Lite0 stages.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _block(
    x: keras.KerasTensor, index: int, kernel: int, stride: int, expand: int, out: int
) -> keras.KerasTensor:
    prefix = f"blocks_{index}_"
    inputs = x
    channels = x.shape[-1]
    if expand != 1:
        x = layers.Conv2D(channels * expand, 1, use_bias=False, name=prefix + "expand_conv")(x)
        x = _bn(prefix + "bn0")(x)
        x = _relu6(prefix + "relu0")(x)
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise_conv"
    )(x)
    x = _bn(prefix + "bn1")(x)
    x = _relu6(prefix + "relu1")(x)
    x = layers.Conv2D(out, 1, use_bias=False, name=prefix + "project_conv")(x)
    x = _bn(prefix + "bn2")(x)
    if stride == 1 and channels == out:
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def build_backbone(input_size: int) -> keras.Model:
    """Lite0 from scaled pixels ((p - 127) / 128) to the 1280-channel feature map."""
    inputs = keras.Input(shape=(input_size, input_size, 3), name="scaled_pixels")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)
    index = 0
    for repeats, kernel, stride, expand, out in STAGES:
        for repeat in range(repeats):
            x = _block(x, index, kernel, stride if repeat == 0 else 1, expand, out)
            index += 1
    x = layers.Conv2D(FEATURES, 1, use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    x = _relu6("head_relu")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _torch_name(keras_name: str) -> str:
    fixed = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "head_conv": "_conv_head",
        "head_bn": "_bn1",
    }
    if keras_name in fixed:
        return fixed[keras_name]
    _, index, part = keras_name.split("_", 2)
    return f"_blocks.{index}._{part}"


def load_imagenet_weights(backbone: keras.Model, path: Path = WEIGHTS) -> None:
    """Copy the converted PyTorch state dict into the backbone, transposing to Keras layouts."""
    state = np.load(path)
    for layer in backbone.layers:
        source = _torch_name(layer.name) if layer.weights else None
        if source is None:
            continue
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights(
                [state[f"{source}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
            )
        elif isinstance(layer, layers.DepthwiseConv2D):
            # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
            layer.set_weights([state[f"{source}.weight"].transpose(2, 3, 0, 1)])
        elif isinstance(layer, layers.Conv2D):
            # torch (out, in, kh, kw) -> keras (kh, kw, in, out)
            layer.set_weights([state[f"{source}.weight"].transpose(2, 3, 1, 0)])


def imagenet_classifier_weights(path: Path = WEIGHTS) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet head (kernel (1280, 1000), bias), only used to check the port."""
    state = np.load(path)
    return state["_fc.weight"].T, state["_fc.bias"]


def scale_pixels() -> layers.Rescaling:
    """[0, 1] pixels -> the Lite models' own input scaling, (255 p - 127) / 128."""
    return layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="lite_scaling")


def build_lite0_classifier(
    n_genres: int,
    internal_size: int = 224,
    pretrained: bool = True,
    dropout: float = 0.3,
    *,
    antialias: bool = True,
    translate: float = 0.0,
) -> keras.Model:
    """400x400 [0, 1] poster -> resize and scale inside the graph -> Lite0 -> N sigmoids.

    The backbone starts frozen (BatchNorm always in inference mode); `open_backbone` makes its
    convolutions trainable. `translate` adds a random shift with reflected borders while training
    (a reflect-pad crop); like the flip, it is the identity when serving.
    """
    backbone = build_backbone(internal_size)
    if pretrained:
        load_imagenet_weights(backbone)
    backbone.trainable = False
    inputs = keras.Input(shape=INPUT_SHAPE, name="poster")
    x = layers.Resizing(internal_size, internal_size, antialias=antialias, name="internal_resize")(
        inputs
    )
    x = layers.RandomFlip("horizontal", name="augment_flip")(x)
    if translate:
        x = layers.RandomTranslation(
            translate, translate, fill_mode="reflect", name="augment_shift"
        )(x)
    x = scale_pixels()(x)
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(n_genres, activation="sigmoid", name="genres")(x)
    return keras.Model(inputs, outputs, name="lite0")


def open_backbone(model: keras.Model, from_block: int = 0) -> list[keras.Variable]:
    """Make blocks `from_block`.. (0: the stem too) and the head conv trainable; BatchNorm stays
    frozen. Returns the backbone's trainable variables (for a smaller learning rate)."""
    backbone = model.get_layer("efficientnet_lite0")
    backbone.trainable = True
    for layer in backbone.layers:
        opened = (
            layer.name.startswith("head_")
            or (layer.name.startswith("stem_") and from_block == 0)
            or (layer.name.startswith("blocks_") and int(layer.name.split("_")[1]) >= from_block)
        )
        layer.trainable = opened and not isinstance(layer, layers.BatchNormalization)
    return list(backbone.trainable_variables)
