"""Image type and size from the first bytes of a file, so a Lambda never downloads a 40 MB image
just to learn that it is 12000x9000.

Pure Python (no Pillow, no boto3): PNG keeps its size in the fixed IHDR chunk (24 bytes in);
a JPEG keeps it in the first SOFn frame header, which follows the APPn/metadata segments and is
found by walking segment lengths. A JPEG with large EXIF/XMP/ICC blocks needs more than one
read: ``TruncatedHeaderError.needed`` says how many leading bytes the next attempt needs, and
``probe_image`` drives a ranged reader until the header is found or a byte budget runs out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"

# Start-of-frame markers carry the frame size. C4 (DHT), C8 (JPG extension) and CC (DAC) share
# the 0xC_ range but are not frame headers.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Markers with no length field (RSTn, TEM, and a repeated SOI).
_STANDALONE_MARKERS = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_EOI, _SOS = 0xD9, 0xDA
_APP1 = 0xE1
_EXIF_HEADER = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
# Orientations 5..8 swap width and height on display.
_TRANSPOSING = frozenset({5, 6, 7, 8})

# Magic numbers of formats people put in manifests by mistake, so the reason can name them.
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
)

# Enough for PNG and for a JPEG with ordinary EXIF; bigger metadata triggers another read.
DEFAULT_FIRST_READ = 64 * 1024
# A JPEG whose frame header is further in than this is not worth chasing in a pre-annotation call.
DEFAULT_READ_BUDGET = 4 * 1024 * 1024


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"


class ImageHeaderError(ValueError):
    """Bytes that are not a readable JPEG/PNG header; the message says what is wrong."""


class UnsupportedImageError(ImageHeaderError):
    """A recognisable file that is not JPEG or PNG (Ground Truth accepts only jpg/jpeg/png)."""


class TruncatedHeaderError(ImageHeaderError):
    """The bytes end before the size: read at least ``needed`` leading bytes and try again."""

    def __init__(self, message: str, needed: int) -> None:
        super().__init__(message)
        self.needed = needed


@dataclass(frozen=True)
class ImageInfo:
    format: ImageFormat
    width: int  # as stored in the file, before any EXIF rotation
    height: int
    # EXIF Orientation tag of a JPEG (1 = as stored; 2..8 = mirrored and/or rotated on display).
    orientation: int = 1

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a browser that honours EXIF orientation shows the image."""
        return (self.height, self.width) if self.orientation in _TRANSPOSING else (self.width, self.height)


def read_image_info(data: bytes) -> ImageInfo:
    """Type and (width, height) from the leading bytes of a JPEG or PNG file.

    Raises ``TruncatedHeaderError`` when ``data`` stops before the size (it may be only a prefix
    of the file), ``UnsupportedImageError`` for other formats, ``ImageHeaderError`` otherwise.
    """
    data = bytes(data)
    if data.startswith(PNG_SIGNATURE):
        return _png_info(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_info(data)
    if len(data) < len(PNG_SIGNATURE) and (PNG_SIGNATURE.startswith(data) or JPEG_SOI.startswith(data[:2])):
        raise TruncatedHeaderError(f"only {len(data)} bytes: too short to tell the image type", 32)
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            raise UnsupportedImageError(f"{name} image; Ground Truth needs JPEG or PNG")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise UnsupportedImageError("WebP image; Ground Truth needs JPEG or PNG")
    if data[4:8] == b"ftyp":
        raise UnsupportedImageError("HEIF/AVIF/MP4 file; Ground Truth needs JPEG or PNG")
    raise ImageHeaderError("not a JPEG or PNG file (unknown leading bytes)")


def _png_info(data: bytes) -> ImageInfo:
    # signature(8) + chunk length(4) + "IHDR"(4) + width(4) + height(4)
    if len(data) < 24:
        raise TruncatedHeaderError("PNG ends inside its IHDR chunk", 24)
    length, chunk_type, width, height = struct.unpack(">I4sII", data[8:24])
    if chunk_type != b"IHDR" or length != 13:
        raise ImageHeaderError("PNG does not start with a valid IHDR chunk")
    # The PNG spec limits both sides to 2**31 - 1 and forbids zero.
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise ImageHeaderError(f"PNG has an invalid size {width}x{height}")
    return ImageInfo(ImageFormat.PNG, width, height)


def _jpeg_info(data: bytes) -> ImageInfo:
    pos = 2
    end = len(data)
    orientation = 1
    while True:
        # Each segment starts with 0xFF, optionally padded with more 0xFF fill bytes.
        if pos >= end:
            raise TruncatedHeaderError("JPEG ends before its frame header", pos + 4)
        if data[pos] != 0xFF:
            raise ImageHeaderError(f"JPEG is corrupt: expected a marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:
            pos += 1
        if pos >= end:
            raise TruncatedHeaderError("JPEG ends before its frame header", pos + 4)
        marker = data[pos]
        pos += 1
        if marker == 0x00:
            raise ImageHeaderError(f"JPEG is corrupt: stuffed byte outside entropy data at byte {pos - 1}")
        if marker in _STANDALONE_MARKERS:
            continue
        if marker in (_EOI, _SOS):
            raise ImageHeaderError("JPEG has no frame header before its image data")
        if pos + 2 > end:
            raise TruncatedHeaderError("JPEG ends inside a segment length", pos + 2)
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise ImageHeaderError(f"JPEG is corrupt: segment length {length} at byte {pos}")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise ImageHeaderError(f"JPEG frame header is too short ({length} bytes)")
            if pos + 7 > end:
                raise TruncatedHeaderError("JPEG ends inside its frame header", pos + 7)
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if width == 0 or height == 0:
                # height 0 means "defined later by a DNL marker": legal, vanishingly rare, and
                # not worth a second parser; width 0 is always invalid.
                raise ImageHeaderError(f"JPEG frame header gives size {width}x{height}")
            return ImageInfo(ImageFormat.JPEG, width, height, orientation)
        if marker == _APP1 and pos + length <= end:
            segment = data[pos + 2 : pos + length]
            if segment.startswith(_EXIF_HEADER):
                orientation = exif_orientation(segment[len(_EXIF_HEADER) :])
        pos += length  # skip APPn/COM/DQT/DHT/... and look at the next marker


def exif_orientation(tiff: bytes) -> int:
    """The Orientation tag from the TIFF structure inside an EXIF block; 1 when absent or unreadable.

    Metadata is advisory: a malformed EXIF block never makes the image unusable.
    """
    if len(tiff) < 8 or tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind, n = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == _ORIENTATION_TAG:
            if kind != 3 or n != 1:  # SHORT, one value, stored in the entry itself
                return 1
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if 1 <= value <= 8 else 1
    return 1


RangeReader = Callable[[int, int], tuple[bytes, int | None]]


def probe_image(
    read_range: RangeReader,
    *,
    first_read: int = DEFAULT_FIRST_READ,
    budget: int = DEFAULT_READ_BUDGET,
) -> tuple[ImageInfo, int | None]:
    """Read just enough leading bytes to learn type and size.

    ``read_range(first, last)`` returns bytes ``first..last`` inclusive (fewer at end of file)
    and the file's total size if known (S3 reports it in Content-Range). Returns the image info
    and that total size.
    """
    data, total = read_range(0, first_read - 1)
    while True:
        try:
            return read_image_info(data), total
        except TruncatedHeaderError as exc:
            at_end = total is not None and len(data) >= total
            if at_end or not data:
                raise ImageHeaderError(
                    f"file is {len(data)} bytes and ends before its size is known"
                ) from exc
            if len(data) >= budget:
                raise ImageHeaderError(f"no image size within the first {budget} bytes") from exc
            # Jump straight to what the parser needs (a big APP segment), at least a chunk more.
            want = min(budget, max(exc.needed, len(data) + first_read))
            more, more_total = read_range(len(data), want - 1)
            if not more:
                raise ImageHeaderError(
                    f"file is {len(data)} bytes and ends before its size is known"
                ) from exc
            data += more
            total = more_total if more_total is not None else total
