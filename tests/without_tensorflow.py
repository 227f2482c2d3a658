"""`python -m tests.without_tensorflow STORE`: the whole serving path with TensorFlow and Keras
made unimportable, as in the slim image. Prints the statuses of /health/ready, /predict and
/explain, the runtime and map method, then every TensorFlow or Keras module that got loaded."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

BLOCKED = ("tensorflow", "keras")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the slim image has no TensorFlow")
        return None


def main(store: str) -> None:
    sys.meta_path.insert(0, Blocker())
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app
    from tests.conftest import poster_bytes

    settings = Settings(model_store=store, max_batch_size=4, log_level="WARNING")  # type: ignore[arg-type]  # pydantic converts the str
    with TestClient(create_app(settings)) as client:
        files = {"file": ("p.jpg", poster_bytes())}
        ready = client.get("/health/ready")
        answers = [
            ready,
            client.post("/predict", files=files),
            client.post("/explain", files=files),
        ]
    print([a.status_code for a in answers], ready.json()["runtime"], answers[2].json()["method"])
    print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))


if __name__ == "__main__":
    main(sys.argv[1])
