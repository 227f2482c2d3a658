"""A bounded walk of an upload's container structure, before Pillow reads it.

Pillow reads a JPEG's marker segments up to the first scan, a PNG's chunks (before and after the
pixel data) and a GIF's extension blocks in Python, one at a time, and some segments piece by piece
(quantization tables, Photoshop resources, repeated Exif segments, which it joins). Each piece costs
microseconds, so a file made of nothing else costs seconds: a 3.9 MB JPEG of a million empty
comments held the event loop for 2.5 s while its header was read, and 10 MiB of empty PNG chunks
or one-byte GIF comment blocks cost as much in a decode thread, holding the interpreter's lock.
Real images have tens of such pieces (a PNG's pixel data comes in chunks of about 8 KiB, hence the
allowance per 4 KiB below).

`excessive_structure` counts the same pieces with at most a few thousand steps, and says what is
excessive; it never judges a file otherwise (Pillow does).
"""

from __future__ import annotations

import re

from PIL import JpegImagePlugin

# JPEG: the pieces Pillow reads before the first scan; GIF: blocks, sub-blocks and stray bytes
# before the first image. Real files have tens.
MAX_HEADER_STEPS = 4096
# PNG: chunks in the whole file, beyond one per 4 KiB of the file.
MAX_PNG_CHUNKS = 1024
PNG_CHUNK_ALLOWANCE_BYTES = 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GIF_SIGNATURES = (b"GIF87a", b"GIF89a")


def excessive_structure(data: bytes) -> str | None:
    """What is excessive about `data`'s structure (a sentence for the client), or None."""
    if data[:2] == b"\xff\xd8" and _jpeg_steps(data) > MAX_HEADER_STEPS:
        return (
            f"the JPEG has more than {MAX_HEADER_STEPS:,} marker segments or stray bytes before "
            "its first scan"
        )
    if data[:8] == PNG_SIGNATURE:
        limit = MAX_PNG_CHUNKS + len(data) // PNG_CHUNK_ALLOWANCE_BYTES
        if _png_chunks(data, limit) > limit:
            return f"the PNG has more than {limit:,} chunks"
    if data[:6] in GIF_SIGNATURES and _gif_steps(data) > MAX_HEADER_STEPS:
        return f"the GIF has more than {MAX_HEADER_STEPS:,} blocks before its first image"
    return None


# Markers Pillow reads without a length field; any other marker outside its table ends its reading.
_NO_LENGTH = frozenset(
    k & 0xFF for k, (_, _, handler) in JpegImagePlugin.MARKER.items() if handler is None
)
_KNOWN = frozenset(k & 0xFF for k in JpegImagePlugin.MARKER)
# Pillow joins repeated Exif segments (quadratic in their number); real files have one.
_EXIF_SEGMENT_STEPS = 128


def _jpeg_steps(data: bytes) -> int:
    """Steps of Pillow's own header reading, up to the first scan: a step per marker segment, per
    fill or stray byte, per quantization table and per Photoshop resource."""
    pos, steps, size = 2, 0, len(data)
    while pos + 1 < size and steps <= MAX_HEADER_STEPS:
        if data[pos] != 0xFF:
            # Stray bytes: Pillow skips them one at a time.
            found = data.find(b"\xff", pos)
            following = size if found < 0 else found
            steps += following - pos
            pos = following
            continue
        marker = data[pos + 1]
        steps += 1
        if marker == 0xFF:  # a fill byte
            pos += 1
        elif marker == 0xDA:  # the first scan: libjpeg, in C, reads the rest
            break
        elif marker == 0x00 or marker in _NO_LENGTH:
            pos += 2
        elif marker not in _KNOWN or pos + 3 >= size:
            break  # Pillow refuses the file here
        else:
            length = (data[pos + 2] << 8) | data[pos + 3]
            steps += _segment_steps(marker, data, pos + 4, pos + 2 + length)
            pos += 2 + length
    return steps


def _segment_steps(marker: int, data: bytes, start: int, end: int) -> int:
    """Steps beyond the first for the segments Pillow parses piece by piece in Python."""
    if marker == 0xDB:  # quantization tables, 65 bytes or more each
        return max(end - start, 0) // 65
    if marker == 0xE1 and data[start : start + 6] == b"Exif\x00\x00":
        return _EXIF_SEGMENT_STEPS
    if marker == 0xED and data[start : start + 14] == b"Photoshop 3.0\x00":
        return _photoshop_resources(data, start + 14, end)
    return 0


def _photoshop_resources(data: bytes, offset: int, end: int) -> int:
    """Photoshop's image resources in one segment, walked as Pillow walks them (up to the limit)."""
    resources = 0
    while data[offset : offset + 4] == b"8BIM" and offset < end and resources <= MAX_HEADER_STEPS:
        resources += 1
        offset += 6
        if offset >= end:
            break
        offset += 1 + data[offset]
        offset += offset & 1
        offset += 4 + int.from_bytes(data[offset : offset + 4], "big")
        offset += offset & 1
    return resources


def _png_chunks(data: bytes, limit: int) -> int:
    pos, chunks, size = 8, 0, len(data)
    while pos + 8 <= size and chunks <= limit:
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks += 1
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos += 12 + length
    return chunks


_GIF_BLOCK = re.compile(rb"[!,;]")


def _gif_steps(data: bytes) -> int:
    """Steps of Pillow's reading up to the first image: a step per extension, per sub-block and
    per stray byte (Pillow skips those one at a time)."""
    size = len(data)
    if size < 13:
        return 0
    packed = data[10]
    pos = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    steps = 0
    while pos < size and steps <= MAX_HEADER_STEPS:
        found = _GIF_BLOCK.search(data, pos)
        following = size if found is None else found.start()
        steps += following - pos
        pos = following
        if pos >= size or data[pos] != 0x21:  # the first image, the end, or no more data
            break
        pos += 2  # an extension: the introducer and the label
        steps += 1
        while pos < size and steps <= MAX_HEADER_STEPS:  # its sub-blocks, up to an empty one
            length = data[pos]
            pos += 1 + length
            steps += 1
            if length == 0:
                break
    return steps
