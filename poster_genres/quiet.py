"""Native libraries' start-up chatter kept off stderr.

TensorFlow prints oneDNN and absl lines, and LiteRT "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.", straight onto file descriptor 2 from native code, before any setting is read.
The only way to keep a command's output to what the user asked for is to hold descriptor 2 while
they start. What was held is replayed if starting fails, so no real error is lost.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_held(*, verbose: bool = False) -> Iterator[None]:
    """Hold what native code writes on descriptor 2 while the block runs (unless `verbose`);
    replay it if the block raises anything but Ctrl+C."""
    if verbose:
        yield
        return
    for handler in logging.getLogger().handlers:
        handler.flush()  # a record logged just before is written, not held with the chatter
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except KeyboardInterrupt:
            raise  # the user stopped it: the chatter would only hide that
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
