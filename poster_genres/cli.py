"""For the command-line processes (service, scorer, training): loading TensorFlow without its
start-up chatter (`quiet`), and ending on Ctrl+C with one line instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from poster_genres.quiet import native_stderr_held


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


def import_tensorflow(*, verbose: bool = False, threads: int | None = None) -> None:
    """Import TensorFlow and Keras now; silently unless `verbose`. `threads`: the size of
    TensorFlow's pool (the process's thread budget), which TensorFlow reads once, as it starts."""
    # The one place TensorFlow's C++ log level is set: warnings and notices off, errors kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads is not None:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    with native_stderr_held(verbose=verbose):
        import keras  # noqa: F401
        import tensorflow as tf

        # The first operation initialises the runtime, which prints its banner once more.
        tf.constant(1.0) + 1.0
