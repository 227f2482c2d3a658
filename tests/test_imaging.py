"""The shared preprocessing: what each kind of upload becomes, and what is refused."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from poster_genres.errors import EmptyFile, ImageTooLarge, InvalidImage, UnsupportedFormat
from poster_genres.preprocessing import INPUT_SHAPE, decode_poster, poster_to_input, to_model_input
from tests.conftest import poster_bytes


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height with a single tiny IDAT: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_output_is_float32_400x400x3_in_unit_range() -> None:
    x = poster_to_input(poster_bytes((255, 0, 128), size=(300, 444)))
    assert x.shape == INPUT_SHAPE
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(x[200, 200], [1.0, 0.0, 128 / 255], atol=0.02)


def test_poster_to_input_is_decode_then_to_model_input() -> None:
    data = poster_bytes((10, 120, 240), square=True)
    np.testing.assert_array_equal(poster_to_input(data), to_model_input(decode_poster(data).image))


def test_resize_is_bilinear_to_the_pixel() -> None:
    """Upscaling a steep 20-pixel gradient: every value equals linear interpolation between the
    two nearest source pixels (edges clamped), computed here with numpy alone."""
    source = np.linspace(0, 255, 20).round().astype(np.uint8)
    rows = np.tile(source, (30, 1))
    image = Image.fromarray(np.stack([rows, rows[:, ::-1], np.full_like(rows, 77)], axis=-1))
    x = to_model_input(image)
    centres = (np.arange(400) + 0.5) * 20 / 400 - 0.5
    expected = np.interp(np.clip(centres, 0, 19), np.arange(20), source.astype(np.float64)) / 255
    np.testing.assert_allclose(x[123, :, 0], expected, atol=0.6 / 255)  # 8-bit rounding only
    np.testing.assert_allclose(x[7, :, 1], expected[::-1], atol=0.6 / 255)
    assert np.all(x[:, :, 2] == np.float32(77 / 255))
    # Every row is the same: no vertical change in the source, none in the input.
    assert np.all(x == x[:1])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_allowed_formats_decode_and_report_their_format(fmt: str) -> None:
    decoded = decode_poster(poster_bytes((0, 200, 0), size=(30, 40), fmt=fmt))
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (30, 40)
    assert decoded.image.mode == "RGB"


def test_empty_file_is_empty_file() -> None:
    with pytest.raises(EmptyFile):
        decode_poster(b"")


@pytest.mark.parametrize(
    "data",
    [
        b"just some text",
        b"<html><body>hello</body></html>",
        b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b"\xff\xd8\xff",
    ],
    ids=["text", "html", "pdf", "svg", "jpeg-magic-only"],
)
def test_non_images_are_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_poster(data)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "ICO"])
def test_recognised_formats_outside_allow_list_are_unsupported(fmt: str) -> None:
    with pytest.raises(UnsupportedFormat):
        decode_poster(poster_bytes(size=(32, 32), fmt=fmt))


def test_eps_is_refused_without_starting_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    def no_programs(*args: object, **kwargs: object) -> None:
        raise AssertionError("an external program was started")

    monkeypatch.setattr(subprocess, "Popen", no_programs)
    with pytest.raises(UnsupportedFormat):
        decode_poster(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
def test_truncated_jpeg_is_invalid_image(keep: float) -> None:
    data = poster_bytes(size=(200, 300), quality=95)
    with pytest.raises(InvalidImage):
        decode_poster(data[: int(len(data) * keep)])


def jpeg_claiming(size: tuple[int, int], data_size: tuple[int, int] = (400, 600)) -> bytes:
    """A complete JPEG of `data_size` whose frame header claims `size`: its coded data, end marker
    included, runs out long before the declared image does."""
    data = bytearray(poster_bytes(size=data_size, quality=90))
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", size[1], size[0])
    return bytes(data)


def test_a_jpeg_whose_data_ends_before_its_declared_size_is_invalid_not_grey() -> None:
    """libjpeg fills the missing part with grey and only warns; docs/api.md promises 400."""
    assert decode_poster(jpeg_claiming((400, 600))).width == 400  # the header unchanged: decodes
    with pytest.raises(InvalidImage, match=r"declares 4000x4000 pixels but its data ends"):
        decode_poster(jpeg_claiming((4000, 4000)))
    with pytest.raises(InvalidImage, match="truncated"):
        decode_poster(jpeg_claiming((400, 616)))  # one row of 16x16 blocks short is enough


def test_a_cmyk_jpeg_is_checked_for_truncation_and_still_decodes() -> None:
    cmyk = Image.new("CMYK", (64, 96), (10, 200, 30, 0))
    buffer = io.BytesIO()
    cmyk.save(buffer, "JPEG")
    assert decode_poster(buffer.getvalue()).image.mode == "RGB"
    with pytest.raises(InvalidImage):
        decode_poster(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def test_png_with_broken_crc_is_invalid_image() -> None:
    data = bytearray(poster_bytes(size=(20, 20), fmt="PNG"))
    idat = data.index(b"IDAT")
    data[idat + 6] ^= 0xFF  # flip a byte inside the compressed data: its CRC no longer matches
    with pytest.raises(InvalidImage):
        decode_poster(bytes(data))


@pytest.mark.parametrize("size", [(20000, 20000), (9000, 9000)])
def test_huge_declared_images_are_refused_before_any_pixel_is_decoded(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(ImageFile.ImageFile, "load", must_not_decode)
    with pytest.raises(ImageTooLarge):
        decode_poster(png_header_only(*size))


def test_real_9000x9000_png_is_refused() -> None:
    data = poster_bytes((0, 0, 0), size=(9000, 9000), fmt="PNG", optimize=True)
    assert len(data) < 1_000_000
    with pytest.raises(ImageTooLarge):
        decode_poster(data)


@pytest.mark.parametrize("size", [(1, 65535), (65535, 1)])
def test_extreme_aspect_ratios_are_answered(size: tuple[int, int]) -> None:
    assert poster_to_input(poster_bytes(size=size, fmt="PNG")).shape == INPUT_SHAPE


def test_grayscale_becomes_equal_rgb_channels() -> None:
    x = poster_to_input(poster_bytes((90, 90, 90), fmt="PNG", mode="L"))
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 1], x[..., 2])


def test_alpha_is_composited_over_white() -> None:
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    np.testing.assert_allclose(poster_to_input(buffer.getvalue())[10, 10], [1.0, 1.0, 1.0])


def test_half_transparent_black_becomes_mid_grey() -> None:
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 128))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    np.testing.assert_allclose(
        poster_to_input(buffer.getvalue())[10, 10], [127 / 255] * 3, atol=0.01
    )


def test_palette_with_transparency_is_composited_over_white() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0] * 256)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    np.testing.assert_allclose(poster_to_input(buffer.getvalue())[5, 5], [1.0, 1.0, 1.0])


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    decoded = decode_poster(poster_bytes((255, 0, 0), fmt="JPEG", mode="CMYK"))
    assert decoded.image.mode == "RGB"
    red, green, blue = np.asarray(decoded.image)[20, 20]
    assert red > 200 and green < 60 and blue < 60


def test_16_bit_png_is_scaled_to_8_bits() -> None:
    image = Image.fromarray(np.full((10, 10), 65535 // 2, dtype=np.uint16))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I")
    np.testing.assert_allclose(
        poster_to_input(buffer.getvalue())[0, 0], [127 / 255] * 3, atol=0.005
    )


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    decoded = decode_poster(buffer.getvalue())
    assert decoded.image.size == (20, 40)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_images_use_the_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=50)
    x = poster_to_input(buffer.getvalue())
    assert x[8, 8, 0] > 0.9 and x[8, 8, 2] < 0.1


def test_jpeg_with_zip_appended_is_answered_as_the_jpeg() -> None:
    data = poster_bytes((0, 0, 255))
    appended = data + b"PK\x03\x04" + b"\0" * 200
    np.testing.assert_array_equal(poster_to_input(appended), poster_to_input(data))


def test_pixel_limit_is_a_parameter() -> None:
    data = poster_bytes(size=(100, 100))
    with pytest.raises(ImageTooLarge):
        decode_poster(data, max_pixels=9_999)
    assert decode_poster(data, max_pixels=10_000).width == 100


def test_size_errors_speak_in_megapixels() -> None:
    with pytest.raises(ImageTooLarge) as refused:
        decode_poster(png_header_only(5000, 4000))
    assert (
        refused.value.message
        == "The image is 5000x4000 (20 megapixels); the limit is 16 megapixels."
    )


@pytest.mark.parametrize(
    ("n", "shown"),
    [(512, "512 bytes"), (1536, "1.5 KiB"), (10 * 1024 * 1024, "10 MiB"), (64 << 20, "64 MiB")],
)
def test_body_sizes_are_shown_in_binary_units(n: int, shown: str) -> None:
    from app.units import human_bytes

    assert human_bytes(n) == shown


def test_a_multi_picture_jpeg_is_a_jpeg_decoded_at_reduced_scale() -> None:
    first, second = Image.new("RGB", (3200, 2400), (200, 30, 30)), Image.new("RGB", (64, 48))
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    decoded = decode_poster(buffer.getvalue())
    assert decoded.format == "JPEG" and (decoded.width, decoded.height) == (3200, 2400)
    assert decoded.image.size == (800, 600)  # libjpeg's 1/4 scale: the JPEG shortcut was taken


def test_large_images_are_reduced_before_any_conversion() -> None:
    from poster_genres.preprocessing import SHRINK_ABOVE

    half_transparent = Image.new("RGBA", (3300, 1700), (0, 0, 0, 128))
    buffer = io.BytesIO()
    half_transparent.save(buffer, format="PNG")
    decoded = decode_poster(buffer.getvalue())
    assert (decoded.width, decoded.height) == (3300, 1700)  # what the client sent
    assert decoded.image.size == (3300 // 4, 1700 // 2)  # whole factors per axis
    assert max(decoded.image.size) <= SHRINK_ABOVE + SHRINK_ABOVE // 2
    np.testing.assert_allclose(np.asarray(decoded.image), 127, atol=1)  # composited over white


def test_a_large_16_bit_image_keeps_its_levels_through_the_reduction() -> None:
    levels = np.full((2400, 1700), 65535 // 3, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    x = poster_to_input(buffer.getvalue())
    np.testing.assert_allclose(x, round(21845 / 257) / 255, atol=1e-6)  # 85


def test_a_side_over_65535_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="no side may be over 65,535 pixels"):
        decode_poster(png_header_only(70_000, 10))


NOT_AN_IMAGE = "The file is not a readable JPEG, PNG, WebP or GIF image."


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", EmptyFile, "The uploaded file is empty."),
        (b"<html></html>", InvalidImage, NOT_AN_IMAGE),
        # PPM: an image format Pillow knows but the service never decodes.
        (b"P6\n1 1\n255\n\x00\x00\x00", InvalidImage, NOT_AN_IMAGE),
        (
            poster_bytes(fmt="BMP"),
            UnsupportedFormat,
            "BMP images are not supported; send JPEG, PNG, WebP or GIF.",
        ),
        (
            poster_bytes(size=(300, 400), fmt="PNG")[:-300],
            InvalidImage,
            "The image is corrupt or truncated and cannot be decoded.",
        ),
    ],
)
def test_each_refusal_says_exactly_what_went_wrong(
    data: bytes, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as refused:
        decode_poster(data)
    assert refused.value.message == message  # type: ignore[attr-defined]  # our errors have one


@pytest.mark.parametrize("transparent", [True, False])
def test_a_large_palette_image_is_widened_before_it_is_reduced(transparent: bool) -> None:
    palette = Image.new("P", (1700, 1700), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", **({"transparency": 1} if transparent else {}))
    decoded = decode_poster(buffer.getvalue())
    assert decoded.image.mode == "RGB" and decoded.image.size == (850, 850)
    expected = (255, 255, 255) if transparent else (200, 30, 30)  # over white / the colour
    assert decoded.image.getpixel((10, 10)) == expected


def test_a_large_bilevel_image_is_reduced_as_greys() -> None:
    checker = Image.fromarray((np.indices((1700, 1700)).sum(axis=0) % 2 * 255).astype(np.uint8))
    buffer = io.BytesIO()
    checker.convert("1").save(buffer, format="PNG")
    decoded = decode_poster(buffer.getvalue())
    assert decoded.image.size == (850, 850)
    np.testing.assert_allclose(np.asarray(decoded.image), 127.5, atol=1)  # 2x2 black and white


# The first bytes of each format the service refuses, written out (not read from the code).
REFUSED_HEADERS = [
    (b"II*\x00\x08\x00\x00\x00", "TIFF"),
    (b"MM\x00*\x00\x00\x00\x08", "TIFF"),
    (b"BM6\x00\x00\x00\x00\x00", "BMP"),
    (b"8BPS\x00\x01\x00\x00", "PSD"),
    (b"%!PS-Adobe-3.0 EPSF-3.0", "EPS"),
    (b"\xc5\xd0\xd3\xc6\x1e\x00\x00\x00", "EPS"),
    (b"\x00\x00\x01\x00\x01\x00\x10\x10", "ICO"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xffO\xffQ\x00/\x00\x00", "JPEG2000"),
    (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIF"),
    (b"\x00\x00\x00\x18ftypheix\x00\x00\x00\x00", "HEIF"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00", "HEIF"),
    (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", "AVIF"),
    (b"qoif\x00\x00\x00\x10\x00\x00\x00\x10\x03\x00", "QOI"),
]


@pytest.mark.parametrize(("header", "name"), REFUSED_HEADERS)
def test_every_refused_format_is_named_from_its_first_bytes(header: bytes, name: str) -> None:
    with pytest.raises(UnsupportedFormat) as refused:
        decode_poster(header + b"\x00" * 64)
    assert refused.value.message == f"{name} images are not supported; send JPEG, PNG, WebP or GIF."


@pytest.mark.parametrize(
    "near_miss",
    [b"B", b"II*", b"qoi", b"\x00\x00\x00\x18ftyphei", b"\x00\x00\x00ftypheic\x00"],
)
def test_a_near_miss_of_a_signature_is_not_taken_for_that_format(near_miss: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_poster(near_miss)


def test_16_bit_levels_round_to_the_nearest_8_bit_level_at_the_boundaries() -> None:
    levels = np.array([0, 128, 129, 385, 386, 257 * 100 + 128, 257 * 100 + 129, 65535])
    image = Image.fromarray(np.tile(levels.astype(np.uint16), (4, 1)))
    assert image.mode.startswith("I;16")
    from poster_genres.preprocessing import _to_rgb

    got = np.asarray(_to_rgb(image))[0, :, 0]
    np.testing.assert_array_equal(got, [0, 0, 1, 1, 2, 100, 101, 255])  # value / 257, rounded


def test_grey_with_alpha_is_composited_over_white_too() -> None:
    buffer = io.BytesIO()
    Image.new("LA", (20, 30), (0, 128)).save(buffer, format="PNG")
    np.testing.assert_allclose(np.asarray(decode_poster(buffer.getvalue()).image), 127, atol=1)


def progressive_jpeg(extra_scans: int = 0, size: tuple[int, int] = (400, 600)) -> bytes:
    """A real progressive JPEG (libjpeg's 10 scans), with its last scan repeated `extra_scans`
    times: each repeat decodes as a further pass over the whole image (a scan bomb)."""
    ramp = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    buffer = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint8)).save(buffer, "JPEG", progressive=True, quality=80)
    data = buffer.getvalue()
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * extra_scans + data[end:]


def test_a_progressive_jpeg_decodes_and_a_scan_bomb_is_refused_before_decoding() -> None:
    from poster_genres.preprocessing import MAX_JPEG_SCANS

    normal = progressive_jpeg()
    assert normal.count(b"\xff\xda") == 10
    assert decode_poster(normal).format == "JPEG"
    bomb = progressive_jpeg(extra_scans=190)
    assert bomb.count(b"\xff\xda") == 200
    with pytest.raises(ImageTooLarge, match=f"200 scans; at most {MAX_JPEG_SCANS}"):
        decode_poster(bomb)
    assert decode_poster(progressive_jpeg(MAX_JPEG_SCANS - 10)).format == "JPEG"  # at the cap


def test_a_progressive_jpeg_is_refused_when_pixels_times_scans_are_too_many() -> None:
    """Under the scan cap, 56 scans over 16 MP cost 2 s of CPU: the work is bounded too."""
    from poster_genres.preprocessing import MAX_DECODE_WORK

    big = progressive_jpeg(size=(2000, 3200))  # 6.4 MP x 10 scans = 64 M: the limit, decoded
    assert MAX_DECODE_WORK == 2000 * 3200 * 10
    assert decode_poster(big).width == 2000
    with pytest.raises(ImageTooLarge, match=r"11 passes over 6.4 megapixels"):
        decode_poster(progressive_jpeg(extra_scans=1, size=(2000, 3200)))
    baseline = poster_bytes(size=(4000, 4000))
    assert decode_poster(baseline).width == 4000  # 16 MP in one pass is fine


@pytest.mark.parametrize(
    "variant",
    ["4:4:4", "4:2:2", "4:2:0", "progressive", "grey", "grey progressive", "restart markers"],
)
def test_a_plain_jpeg_decodes_in_one_pass_to_pillows_own_pixels(variant: str) -> None:
    from poster_genres.preprocessing import _plain_jpeg_to_rgb, decode_poster

    rng = np.random.default_rng(7)
    image = Image.fromarray(rng.integers(0, 256, (451, 299, 3), dtype=np.uint8))
    options: dict[str, object] = {"quality": 85}
    if variant.startswith("4:"):
        options["subsampling"] = variant
    if "progressive" in variant:
        options["progressive"] = True
    if "grey" in variant:
        image = image.convert("L")
    if variant == "restart markers":
        options["restart_marker_blocks"] = 3
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as opened:
        assert _plain_jpeg_to_rgb(opened, data) is not None
        pillow = np.asarray(opened.convert("RGB"))
    assert np.array_equal(np.asarray(decode_poster(data).image), pillow)


def test_jpegs_with_something_to_transform_take_pillows_path() -> None:
    from poster_genres.preprocessing import _plain_jpeg_to_rgb

    def jpeg(image: Image.Image, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        return buffer.getvalue()

    rotated = Image.Exif()
    rotated[0x0112] = 6
    upright = Image.Exif()
    upright[0x0112] = 1
    plain = Image.new("RGB", (300, 450), (10, 120, 200))
    cases = {
        "cmyk": (jpeg(plain.convert("CMYK")), False),
        "rotated": (jpeg(plain, exif=rotated), False),
        "upright": (jpeg(plain, exif=upright), True),
        "800 px high": (jpeg(plain.resize((300, 800))), False),
        "799 px high": (jpeg(plain.resize((300, 799))), True),
    }
    for name, (data, plain_path) in cases.items():
        with Image.open(io.BytesIO(data)) as opened:
            assert (_plain_jpeg_to_rgb(opened, data) is not None) is plain_path, name


def _jpeg_with(pieces: bytes) -> bytes:
    data = poster_bytes(size=(30, 45))
    return data[:2] + pieces + data[2:]


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(body) + 2) + body


def _png_with(before: bytes = b"", after: bytes = b"") -> bytes:
    data = poster_bytes(size=(30, 45), fmt="PNG")
    ihdr_end, iend = 8 + 25, data.rindex(b"IEND") - 4
    return data[:ihdr_end] + before + data[ihdr_end:iend] + after + data[iend:]


def _png_chunk(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _gif_with(extension: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (30, 45), 3).save(buffer, "GIF")
    data = buffer.getvalue()
    packed = data[10]
    start = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    return data[:start] + extension + data[start:]


@pytest.mark.parametrize(
    "name, data",
    [
        ("jpeg comments", _jpeg_with(b"\xff\xfe\x00\x02" * 100_000)),
        ("jpeg stray bytes", _jpeg_with(b"\xff\xfe\x00\x02" + b"A" * 100_000)),
        ("png chunks before the pixels", _png_with(before=_png_chunk(b"abCd") * 100_000)),
        ("png chunks after the pixels", _png_with(after=_png_chunk(b"abCd") * 100_000)),
        ("gif comment sub-blocks", _gif_with(b"\x21\xfe" + b"\x01A" * 100_000 + b"\x00")),
        ("gif stray bytes", _gif_with(b"\x00" * 100_000)),
        ("jpeg end-of-image markers", _jpeg_with(b"\xff\xd9" * 100_000)),
        (
            "jpeg exif segments",
            _jpeg_with(_jpeg_segment(0xE1, b"Exif\x00\x00MM" + b"\x00" * 64) * 64),
        ),
        (
            "jpeg quantization tables",
            _jpeg_with(_jpeg_segment(0xDB, b"\x00" + b"\x01" * 64) * 5000),
        ),
        (
            "jpeg photoshop resources",
            _jpeg_with(
                _jpeg_segment(0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00" + b"\x00" * 4)
                * 100
                + _jpeg_segment(
                    0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x00" * 5000
                )
            ),
        ),
    ],
)
def test_files_made_of_thousands_of_header_pieces_are_refused_before_pillow_reads_them(
    name: str, data: bytes
) -> None:
    """Pillow reads each piece in Python: a million empty JPEG comments held the event loop for
    2.5 s. Each of these files is a valid image that Pillow would decode."""
    from poster_genres.preprocessing import declared_work

    with pytest.raises(InvalidImage, match="is not read"):
        decode_poster(data)
    assert declared_work(data) is None


def test_ordinary_header_pieces_are_read() -> None:
    from poster_genres.preprocessing import declared_work

    buffer = io.BytesIO()
    noisy = Image.fromarray(np.random.default_rng(3).integers(0, 256, (600, 500, 3), np.uint8))
    noisy.save(buffer, "PNG", compress_level=0)
    whole = buffer.getvalue()
    pixels, pos = b"", 8
    while pos < len(whole):  # every IDAT's data, to split as libpng does: 8 KiB a chunk
        length = struct.unpack(">I", whole[pos : pos + 4])[0]
        if whole[pos + 4 : pos + 8] == b"IDAT":
            pixels += whole[pos + 8 : pos + 8 + length]
        pos += 12 + length
    idat = b"".join(_png_chunk(b"IDAT", pixels[i : i + 8192]) for i in range(0, len(pixels), 8192))
    libpng_like = whole[:33] + idat + _png_chunk(b"IEND")  # 110 chunks, ~900 KB
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    thumbnail = b"8BIM\x04\x0c\x00\x00" + struct.pack(">I", 30_000) + b"\x00" * 30_000
    camera = (
        _jpeg_segment(0xE1, exif.tobytes() + b"\x00" * 60_000)
        + _jpeg_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 3_000)
        + _jpeg_segment(
            0xED, b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x00" * 20 + thumbnail
        )
        + _jpeg_segment(0xE1, b"http://ns.adobe.com/xmp/extension/\x00" + b"x" * 60_000) * 30
    )
    for data in (
        _jpeg_with(b"\xff\xfe\x00\x05abc" * 200),
        _jpeg_with(camera),
        _png_with(before=_png_chunk(b"tEXt", b"k\x00v") * 500),
        _gif_with(b"\x21\xfe" + b"\x01A" * 1000 + b"\x00"),
        libpng_like,
    ):
        assert decode_poster(data).image.mode == "RGB"
        assert declared_work(data) is not None


def test_a_jpeg_with_a_malformed_exif_segment_decodes_like_any_other() -> None:
    """Reading the EXIF orientation raised SyntaxError (a 500) once the JFIF density meant Pillow
    had not read the EXIF itself while opening; the image is fine without its EXIF."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (5, 6, 7)).save(buffer, "JPEG", dpi=(72, 72))
    data = buffer.getvalue()
    malformed = data[:2] + _jpeg_segment(0xE1, b"Exif\x00\x00NOTATIFF") + data[2:]
    assert decode_poster(malformed).image.size == (16, 16)


def test_the_declared_size_of_a_png_or_gif_is_read_without_pillow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pillow's header reading inflates a PNG's compressed text chunks (up to 64 MB), and the
    declared work is read on the event loop."""
    from poster_genres.preprocessing import DeclaredWork, declared_work

    text = _png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"x" * 1_000_000))
    png = _png_with(before=text)
    gif = _gif_with(b"")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Pillow was asked")

    monkeypatch.setattr(Image, "open", refuse)
    assert declared_work(png) == DeclaredWork(30, 45, 1)
    assert declared_work(gif) == DeclaredWork(30, 45, 1)
