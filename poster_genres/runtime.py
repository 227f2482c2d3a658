"""Loading TensorFlow without its start-up chatter, for the command-line tools.

TensorFlow's native code prints oneDNN and absl lines on stderr at import, before any setting is
read, so the only way to keep a CLI's output to what the user asked for is to hold file descriptor
2 while importing. What was held is replayed if the import fails, so no real error is lost.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow(*, verbose: bool = False) -> None:
    """Import TensorFlow and Keras now; silently unless `verbose`."""
    if verbose:
        import keras

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf

            # The first operation initialises the runtime, which prints its banner once more.
            tf.constant(1.0) + 1.0
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
