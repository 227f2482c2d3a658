"""The single "bytes of a poster -> model input" implementation, shared by training and serving.

`poster_to_input` is the contract. `decode_poster` and `to_model_input` are its two stages, exposed so
the service can time them separately; composing them is exactly `poster_to_input`. `to_model_input`
is itself `pixels_to_input(to_model_pixels(...))`: the service keeps the 8-bit pixels (a quarter of
the memory) until the model, which applies the same scaling in its compiled call (bit-identical, tested).

How user uploads are normalised (pinned by tests):
- The format is judged by the bytes, never by a file name or Content-Type. JPEG, PNG, WebP and GIF are
  decoded; TIFF, BMP, PSD, EPS/PostScript, ICO, JPEG 2000 and HEIF/AVIF are recognised and refused;
  anything else is not an image.
- A file made of thousands of header pieces (JPEG markers, PNG chunks, GIF blocks), which Pillow would
  read one at a time in Python, is refused before Pillow sees it (`poster_genres.structure`).
- The declared pixel count (and a JPEG's scans) is checked from the header, before any pixel is
  decoded (`declared_work`, `check_declared_work`).
- A plain poster JPEG (both sides under 800 px, no EXIF rotation, not CMYK) is decoded in one pass by
  libjpeg-turbo through simplejpeg, which also catches truncation; its pixels are Pillow's own
  (tested on every dataset poster). Everything else goes through Pillow.
- EXIF orientation is applied; animated images use their first frame.
- Transparency (RGBA, LA, palette with transparency) is composited over white, as posters are printed.
- Grayscale and palette images become RGB; CMYK uses Pillow's CMYK->RGB conversion; 16-bit and 32-bit
  integer images are scaled linearly to 8 bits (value / 257).
- The RGB image is resized (stretched, like the original tutorial) to 400x400 with Pillow's bilinear
  filter and scaled to float32 in [0, 1].
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import simplejpeg
from PIL import ExifTags, Image, ImageOps

from poster_genres.errors import EmptyFile, ImageTooLarge, InvalidImage, UnsupportedFormat
from poster_genres.structure import GIF_SIGNATURES, PNG_SIGNATURE, excessive_structure

INPUT_SIZE = 400
INPUT_SHAPE = (INPUT_SIZE, INPUT_SIZE, 3)
DEFAULT_MAX_PIXELS = 16_000_000
SHRINK_ABOVE = 2 * INPUT_SIZE
MAX_SIDE = 65_535  # JPEG's own limit; PNG would allow 2^31
# Each scan of a progressive JPEG is a pass over the whole image, so the pixel limit alone does not
# bound decoding time: 20,000 empty scans fit in 671 KB. libjpeg's progressive JPEGs have 6 (grey)
# or 10 (colour) scans; none of the dataset's posters is progressive.
MAX_JPEG_SCANS = 64
# And pixels x scans: a 16 MP progressive JPEG of 56 scans (62 KiB) cost 2 s of CPU. 64 million
# pixel-passes is a 6.4 MP progressive JPEG of 10 scans, or any baseline one under the pixel limit.
MAX_DECODE_WORK = 64_000_000
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

# Formats we recognise by magic bytes and refuse (415) without handing them to any decoder.
_REFUSED_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
    (b"8BPS", 0, "PSD"),
    (b"%!PS", 0, "EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG2000"),
    (b"ftypheic", 4, "HEIF"),
    (b"ftypheix", 4, "HEIF"),
    (b"ftypmif1", 4, "HEIF"),
    (b"ftypavif", 4, "AVIF"),
    (b"qoif", 0, "QOI"),
)

PREPROCESSING_SPEC = {
    "input_shape": list(INPUT_SHAPE),
    "dtype": "float32",
    "range": [0.0, 1.0],
    "resize": f"stretch to {INPUT_SIZE}x{INPUT_SIZE}, Pillow bilinear",
    "alpha": "composited over white",
    "orientation": "EXIF applied",
    "animated": "first frame",
    "formats": list(ALLOWED_FORMATS),
}


@dataclass(frozen=True)
class DecodedPoster:
    """An upload decoded to 8-bit RGB, with what the client sent."""

    image: Image.Image
    format: str
    width: int
    height: int


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f}".removesuffix(".0") + " megapixels"


def _refused_format(data: bytes) -> str | None:
    for signature, offset, name in _REFUSED_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return name
    return None


# Modes Image.reduce() averages correctly; others are widened first (palette indices and bilevel
# pixels cannot be averaged, 16-bit is not supported).
_REDUCIBLE = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "I", "CMYK")


def _reducible_mode(image: Image.Image) -> str:
    if image.mode.startswith("I;16"):
        return "I"
    if image.mode == "1":
        return "L"
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        return "RGBA"
    return "RGB"


def _reduce_to_useful_size(image: Image.Image) -> Image.Image:
    """Box-reduce by whole factors per axis until no side is over SHRINK_ABOVE pixels.

    Decoding cost then follows what the model can use, not what the file declares: mode
    conversion, compositing and the final resize never see more than ~2x the input size (a
    16-bit 4000x4000 PNG or a 16,000,000x1 strip included). Posters at or under SHRINK_ABOVE
    pixels a side (the whole dataset) are untouched.
    """
    factor_x = max(1, image.width // SHRINK_ABOVE)
    factor_y = max(1, image.height // SHRINK_ABOVE)
    if factor_x == factor_y == 1:
        return image
    if image.mode not in _REDUCIBLE:
        image = image.convert(_reducible_mode(image))
    return image.reduce((factor_x, factor_y))


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode == "I":
        # value / 257 rounded, in integers: (v + 128) // 257 never meets an exact .5.
        values = np.asarray(image).astype(np.int64)
        eight_bit = np.clip((values + 128) // 257, 0, 255).astype(np.uint8)
        return Image.fromarray(eight_bit).convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _jpeg_data_ends_early(data: bytes) -> bool:
    """Whether libjpeg runs out of coded data before the declared image is complete.

    libjpeg fills what is missing with grey and only warns, and Pillow drops its warnings, so a
    header claiming 4000x4000 over 400x600 of data would decode "successfully". simplejpeg (the
    same libjpeg-turbo) raises on warnings; decoding at 1/8 scale still reads every coded bit.
    Only the end-of-data warnings count: others (e.g. stray bytes between markers) are common in
    cameras' files that decode fine.
    """
    try:
        colorspace = simplejpeg.decode_jpeg_header(data)[2]
        simplejpeg.decode_jpeg(
            data,
            colorspace="CMYK" if colorspace in ("CMYK", "YCCK") else "GRAY",
            min_factor=8,
            strict=True,
        )
    except ValueError as exc:
        return "premature end" in str(exc).lower()
    return False


@dataclass(frozen=True)
class DeclaredWork:
    """What decoding an upload will cost, read from its header alone."""

    width: int
    height: int
    scans: int  # passes over the pixels: a JPEG's scans (a progressive one has several), else 1

    @property
    def passes(self) -> int:
        """Pixels times passes over them."""
        return self.width * self.height * self.scans


def _scans(data: bytes) -> int:
    # Start-of-scan markers, counted before decoding. Entropy-coded data cannot hold FF DA (an FF
    # there is followed by 00 or a restart code), so only an embedded thumbnail's own scans add to
    # the real ones: the count errs towards refusing, never towards decoding.
    return max(data.count(b"\xff\xda"), 1)


def _png_or_gif_size(data: bytes) -> tuple[int, int] | None:
    """A PNG's size from its IHDR, a GIF's from its logical screen, as Pillow reads them. Read
    directly: Pillow's header reading would also inflate a PNG's compressed text chunks (up to
    64 MB) on the caller's thread, which here is the event loop."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in GIF_SIGNATURES and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    return None


def declared_work(data: bytes) -> DeclaredWork | None:
    """The decoding work `data` declares, from its header; None for a header that cannot be read
    (`decode_poster` refuses those at once), or whose structure is excessive (it is never handed
    to Pillow's header parser here, on the caller's thread)."""
    if excessive_structure(data) is not None:
        return None
    declared = _png_or_gif_size(data)
    if declared is not None:
        return DeclaredWork(*declared, 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
                return _work_of(image, data)
    except Exception:
        return None


def _work_of(image: Image.Image, data: bytes) -> DeclaredWork:
    """The work an opened image declares: a JPEG (or an MPO, whose first picture is a JPEG) makes
    one pass per scan."""
    jpeg = image.format in ("JPEG", "MPO")
    return DeclaredWork(image.width, image.height, _scans(data) if jpeg else 1)


def check_declared_work(work: DeclaredWork, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise ImageTooLarge when the declared work is more than any poster needs: too many pixels,
    a side over JPEG's limit, or (a progressive JPEG) too many scans or pixel-passes."""
    width, height, pixels = work.width, work.height, work.width * work.height
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} ({_megapixels(pixels)}); "
            f"the limit is {_megapixels(max_pixels)}."
        )
    if max(width, height) > MAX_SIDE:
        # A decoder holds whole rows: a 16,000,000 x 1 strip costs ~150 MB before any reduction.
        raise ImageTooLarge(
            f"The image is {width}x{height}; no side may be over {MAX_SIDE:,} pixels."
        )
    if work.scans > MAX_JPEG_SCANS:
        raise ImageTooLarge(
            f"The JPEG has {work.scans} scans; at most {MAX_JPEG_SCANS} are decoded "
            "(a progressive JPEG has about 10)."
        )
    if work.passes > MAX_DECODE_WORK:
        raise ImageTooLarge(
            f"The JPEG is progressive: {work.scans} passes over {_megapixels(pixels)} "
            f"would be decoded, more than the {MAX_DECODE_WORK // 1_000_000} million "
            "pixel-passes allowed; send it as a baseline JPEG, or smaller."
        )


def _truncated(width: int, height: int) -> InvalidImage:
    return InvalidImage(
        f"The JPEG declares {width}x{height} pixels but its data ends before the image does "
        "(truncated)."
    )


def _plain_jpeg_to_rgb(image: Image.Image, data: bytes) -> Image.Image | None:
    """A poster-sized JPEG with nothing to transform, decoded once by libjpeg-turbo through
    simplejpeg: the same pixels as Pillow's decoder (the same library and settings: accurate
    DCT, fancy upsampling; tested on every dataset poster), and the truncation check of the same
    pass, in about half the time of Pillow's decode plus the separate check. None when the
    general path must decide: a side of 800 or more (draft scaling), CMYK, an EXIF rotation, an
    MPO, or a warning that is not the end of the data."""
    if image.format != "JPEG" or image.mode not in ("RGB", "L") or max(image.size) >= SHRINK_ABOVE:
        return None
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return None  # malformed EXIF: the general path decides (and refuses it as corrupt)
    if orientation != 1:
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        if "premature end" in str(exc).lower():
            raise _truncated(*image.size) from exc
        return None
    if pixels.shape[1::-1] != image.size:
        return None
    return Image.fromarray(pixels)


def decode_poster(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedPoster:
    """Decode uploaded bytes into an RGB image, or raise one of `poster_genres.errors.DECODE_ERRORS`."""
    if not data:
        raise EmptyFile("The uploaded file is empty.")
    refused = _refused_format(data)
    if refused:
        raise UnsupportedFormat(f"{refused} images are not supported; send JPEG, PNG, WebP or GIF.")
    excessive = excessive_structure(data)
    if excessive is not None:
        raise InvalidImage(f"The file is not read: {excessive}.")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is stricter; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"The image declares too many pixels (the limit is {_megapixels(max_pixels)})."
        ) from exc
    except Exception as exc:
        raise InvalidImage("The file is not a readable JPEG, PNG, WebP or GIF image.") from exc
    width, height = image.size
    # An MPO (a camera's multi-picture JPEG) is a JPEG whose first picture is the poster.
    fmt = "JPEG" if image.format == "MPO" else image.format or "UNKNOWN"
    check_declared_work(_work_of(image, data), max_pixels=max_pixels)
    if fmt == "JPEG":
        rgb = _plain_jpeg_to_rgb(image, data)
        if rgb is not None:
            return DecodedPoster(image=rgb, format=fmt, width=width, height=height)
        if _jpeg_data_ends_early(data):
            raise _truncated(width, height)
    try:
        if fmt == "JPEG":
            # Lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the poster is far larger than needed.
            image.draft("RGB", (INPUT_SIZE, INPUT_SIZE))
        image.load()
        rgb = _to_rgb(ImageOps.exif_transpose(_reduce_to_useful_size(image)))
        rgb.load()
    except Exception as exc:
        raise InvalidImage("The image is corrupt or truncated and cannot be decoded.") from exc
    return DecodedPoster(image=rgb, format=fmt, width=width, height=height)


def to_model_pixels(image: Image.Image) -> np.ndarray:
    """Resize an RGB image to the model's input size: uint8 (400, 400, 3)."""
    resized = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def pixels_to_input(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels (any leading shape) -> float32 in [0, 1]: value / 255, correctly rounded."""
    return pixels.astype(np.float32) / np.float32(255.0)


def to_model_input(image: Image.Image) -> np.ndarray:
    """Resize an RGB image to the model's input: float32 (400, 400, 3) in [0, 1]."""
    return pixels_to_input(to_model_pixels(image))


def poster_to_input(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of a poster -> model input. The one function training and serving both rely on."""
    return to_model_input(decode_poster(data, max_pixels=max_pixels).image)
