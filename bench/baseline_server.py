"""The tutorial-style server the benchmark compares against, written the way its readers would.

A synchronous route, one uvicorn worker, per request Keras' `load_img(..., target_size=(400, 400))`,
`img_to_array / 255`, `model.predict` on a batch of one, top-3 by `argsort`. Model and genres come from
the same model store version as our service (BASELINE_MODEL_DIR).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import keras
import numpy as np
from fastapi import FastAPI, File, UploadFile

MODEL_DIR = Path(os.environ["BASELINE_MODEL_DIR"])
model = keras.saving.load_model(MODEL_DIR / "model.keras", compile=False)
genres = json.loads((MODEL_DIR / "genres.json").read_text())
app = FastAPI()


@app.get("/health/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(file: UploadFile = File(...)) -> dict[str, object]:  # noqa: B008 (the tutorial's style)
    img = keras.preprocessing.image.load_img(io.BytesIO(file.file.read()), target_size=(400, 400))
    x = keras.preprocessing.image.img_to_array(img) / 255.0
    proba = model.predict(x.reshape(1, 400, 400, 3), verbose=0)[0]
    top_3 = np.argsort(proba)[:-4:-1]
    return {"top_k": [{"genre": genres[i], "probability": float(proba[i])} for i in top_3]}
