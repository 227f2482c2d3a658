"""A genre's evidence map drawn over the poster, at the poster's own aspect ratio.

The model sees the poster stretched to a square, so grid cell (r, c) covers the same fraction of the
poster's height and width whatever its shape: stretching the grid back over the poster is exact.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_OVERLAY_SIDE = 512
# A dark-to-bright ramp (black, purple, red, orange, pale yellow): strong evidence reads as light.
_STOPS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


def _colour(heat: np.ndarray) -> np.ndarray:
    """Map heat in [0, 1] (h, w) to RGB float (h, w, 3) along the ramp."""
    position = np.clip(heat, 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.minimum(position.astype(np.int64), len(_STOPS) - 2)
    t = (position - low)[..., None]
    colours: np.ndarray = _STOPS[low] * (1 - t) + _STOPS[low + 1] * t
    return colours


def overlay(poster: Image.Image, grid: np.ndarray, max_side: int = MAX_OVERLAY_SIDE) -> Image.Image:
    """The poster (longest side at most `max_side`) with `grid` (values in [0, 1]) blended over it:
    where there is no evidence the poster shows through, dimmed; where it is strongest, the colour."""
    base = poster.convert("RGB")
    base.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    heat_image = Image.fromarray(np.asarray(grid, dtype=np.float32), mode="F")
    heat = np.asarray(heat_image.resize(base.size, Image.Resampling.BILINEAR), dtype=np.float32)
    heat = np.clip(heat, 0.0, 1.0)
    alpha = (0.25 + 0.6 * heat)[..., None]
    blended = np.asarray(base, dtype=np.float32) * (1 - alpha) + _colour(heat) * alpha
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def png_bytes(image: Image.Image) -> bytes:
    """PNG-encode with a fast setting: the overlay is made per request."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
