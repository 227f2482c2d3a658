"""A bounded walk of an upload's container structure, before Pillow reads it.

Pillow reads a JPEG's marker segments up to the first scan, a PNG's chunks (before and after the
pixel data) and a GIF's extension blocks in Python, one at a time. Each costs microseconds, so a file
made of nothing else costs seconds: a 3.9 MB JPEG of a million empty comments held the event loop
for 2.5 s while its header was read, and 10 MiB of empty PNG chunks or one-byte GIF comment blocks
cost as much in a decode thread, holding the interpreter's lock. Real images have tens of such
pieces (a PNG's pixel data comes in chunks of about 8 KiB, hence the allowance per 4 KiB below).

`excessive_structure` walks the same pieces with at most a few thousand steps, and says what is
excessive; it never judges a file otherwise (Pillow does).
"""

from __future__ import annotations

# JPEG: marker segments, fill bytes and stray bytes before the first scan; GIF: blocks and sub-blocks
# before the first image. Real files have tens.
MAX_HEADER_STEPS = 4096
# PNG: chunks in the whole file, beyond one per 4 KiB of the file.
MAX_PNG_CHUNKS = 1024
PNG_CHUNK_ALLOWANCE_BYTES = 4096


def excessive_structure(data: bytes) -> str | None:
    """What is excessive about `data`'s structure (a sentence for the client), or None."""
    if data[:2] == b"\xff\xd8" and _jpeg_steps(data) > MAX_HEADER_STEPS:
        return (
            f"the JPEG has more than {MAX_HEADER_STEPS:,} marker segments or stray bytes before "
            "its first scan"
        )
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        limit = MAX_PNG_CHUNKS + len(data) // PNG_CHUNK_ALLOWANCE_BYTES
        if _png_chunks(data, limit) > limit:
            return f"the PNG has more than {limit:,} chunks"
    if data[:6] in (b"GIF87a", b"GIF89a") and _gif_steps(data) > MAX_HEADER_STEPS:
        return f"the GIF has more than {MAX_HEADER_STEPS:,} blocks before its first image"
    return None


def _jpeg_steps(data: bytes) -> int:
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
        elif 0xD0 <= marker <= 0xD8 or marker in (0x00, 0x01):  # no length field
            pos += 2
        elif pos + 3 < size:
            pos += 2 + ((data[pos + 2] << 8) | data[pos + 3])
        else:
            break
    return steps


def _png_chunks(data: bytes, limit: int) -> int:
    pos, chunks, size = 8, 0, len(data)
    while pos + 8 <= size and chunks <= limit:
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks += 1
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos += 12 + length
    return chunks


def _gif_steps(data: bytes) -> int:
    size = len(data)
    if size < 13:
        return 0
    packed = data[10]
    pos = 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)
    steps = 0
    while pos < size and data[pos] == 0x21 and steps <= MAX_HEADER_STEPS:  # an extension
        pos += 2  # the introducer and the label
        steps += 1
        while pos < size and steps <= MAX_HEADER_STEPS:  # its sub-blocks, up to an empty one
            length = data[pos]
            pos += 1 + length
            steps += 1
            if length == 0:
                break
    return steps
