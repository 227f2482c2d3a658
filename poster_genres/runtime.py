"""For the command-line tools: loading TensorFlow without its start-up chatter, and ending on
Ctrl+C with one line instead of a traceback.

TensorFlow's native code prints oneDNN and absl lines on stderr at import, before any setting is
read, so the only way to keep a CLI's output to what the user asked for is to hold file descriptor
2 while importing. What was held is replayed if the import fails, so no real error is lost.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable
from typing import NoReturn


def run_command(main: Callable[[], int]) -> NoReturn:
    """Exit with `main()`'s status; Ctrl+C ends it with status 130 and one line on stderr."""
    try:
        status = main()
    except KeyboardInterrupt:
        for handler in logging.getLogger().handlers:
            handler.flush()  # what was logged before comes before this line
        print("interrupted (Ctrl+C)", file=sys.stderr)
        status = 130
    sys.exit(status)


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
        except KeyboardInterrupt:
            raise  # the user stopped it: TensorFlow's chatter would only hide that
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
