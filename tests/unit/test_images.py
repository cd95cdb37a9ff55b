"""gtseg.images: image type and size from leading bytes, checked against Pillow-encoded files."""

from __future__ import annotations

import io
import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gtseg.core.images import (
    ImageFormat,
    ImageHeaderError,
    ImageInfo,
    TruncatedHeaderError,
    UnsupportedImageError,
    exif_orientation,
    probe_image,
    read_image_info,
)


def encode(width: int, height: int, fmt: str, **save_args: object) -> bytes:
    mode = save_args.pop("mode", "RGB")
    image = Image.new(str(mode), (width, height), color=None)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_args)
    return buf.getvalue()


def bytes_reader(data: bytes, calls: list[tuple[int, int]] | None = None):
    """A ranged reader over in-memory bytes that behaves like S3 (inclusive range, total size)."""

    def read(first: int, last: int) -> tuple[bytes, int | None]:
        if calls is not None:
            calls.append((first, last))
        return data[first : last + 1], len(data)

    return read


sizes = st.integers(min_value=1, max_value=700)


@settings(max_examples=40, deadline=None)
@given(width=sizes, height=sizes, mode=st.sampled_from(["RGB", "RGBA", "L", "P", "1"]))
def test_png_size_matches_pillow(width: int, height: int, mode: str) -> None:
    data = encode(width, height, "PNG", mode=mode)
    assert read_image_info(data) == ImageInfo(ImageFormat.PNG, width, height)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=sizes,
    height=sizes,
    progressive=st.booleans(),
    mode=st.sampled_from(["RGB", "L", "CMYK"]),
    exif_size=st.integers(min_value=0, max_value=60_000),
    icc_size=st.integers(min_value=0, max_value=200_000),
    seed=st.binary(min_size=1, max_size=8),
)
def test_jpeg_size_matches_pillow_with_metadata_of_any_size(
    width: int, height: int, progressive: bool, mode: str, exif_size: int, icc_size: int, seed: bytes
) -> None:
    extra: dict[str, object] = {"progressive": progressive, "mode": mode}
    if exif_size:
        extra["exif"] = b"Exif\x00\x00" + (seed * exif_size)[:exif_size]
    if icc_size:
        extra["icc_profile"] = (seed * icc_size)[:icc_size]  # big ICC profiles span several APP2 segments
    data = encode(width, height, "JPEG", **extra)
    with Image.open(io.BytesIO(data)) as pil:
        assert pil.size == (width, height)
    info = read_image_info(data)
    assert (info.format, info.width, info.height) == (ImageFormat.JPEG, width, height)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2048))
def test_random_bytes_give_info_or_a_header_error(data: bytes) -> None:
    try:
        info = read_image_info(data)
    except TruncatedHeaderError as exc:
        assert exc.needed > len(data)  # the reader must always be asked for more than it had
    except ImageHeaderError:
        pass
    else:
        assert info.width > 0 and info.height > 0


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(["PNG", "JPEG"]),
    width=sizes,
    height=sizes,
    exif_size=st.integers(min_value=0, max_value=3000),
    cut=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_prefix_is_either_enough_or_asks_for_more_never_wrong(
    fmt: str, width: int, height: int, exif_size: int, cut: float
) -> None:
    extra = {"exif": b"Exif\x00\x00" + b"\x01" * exif_size} if fmt == "JPEG" and exif_size else {}
    data = encode(width, height, fmt, **extra)
    prefix = data[: int(len(data) * cut)]
    try:
        info = read_image_info(prefix)
    except TruncatedHeaderError as exc:
        assert exc.needed > len(prefix)
    else:
        assert (info.width, info.height) == (width, height)


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF"), ("WEBP", "WebP")],
)
def test_other_formats_are_named(fmt: str, name: str) -> None:
    with pytest.raises(UnsupportedImageError, match=name):
        read_image_info(encode(8, 8, fmt))


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageHeaderError, match="not a JPEG or PNG"):
        read_image_info(b"hello, this is not an image at all")


def test_png_with_a_broken_ihdr_is_rejected() -> None:
    data = bytearray(encode(10, 10, "PNG"))
    data[12:16] = b"IDAT"
    with pytest.raises(ImageHeaderError, match="IHDR"):
        read_image_info(bytes(data))


def test_png_with_zero_width_is_rejected() -> None:
    data = bytearray(encode(10, 10, "PNG"))
    data[16:20] = struct.pack(">I", 0)
    with pytest.raises(ImageHeaderError, match="invalid size 0x10"):
        read_image_info(bytes(data))


def test_jpeg_with_image_data_before_any_frame_header_is_rejected() -> None:
    data = b"\xff\xd8" + b"\xff\xe0\x00\x04ab" + b"\xff\xda\x00\x02"
    with pytest.raises(ImageHeaderError, match="no frame header"):
        read_image_info(data)


def test_jpeg_fill_bytes_before_a_marker_are_skipped() -> None:
    data = encode(33, 17, "JPEG")
    padded = data[:2] + b"\xff\xff\xff" + data[2:]  # 0xFF fill bytes are legal before a marker
    assert read_image_info(padded) == ImageInfo(ImageFormat.JPEG, 33, 17)


def test_probe_reads_only_the_header_of_a_large_png() -> None:
    data = encode(40, 30, "PNG") + b"\x00" * 1_000_000
    calls: list[tuple[int, int]] = []
    info, total = probe_image(bytes_reader(data, calls))
    assert info == ImageInfo(ImageFormat.PNG, 40, 30)
    assert total == len(data)
    assert calls == [(0, 64 * 1024 - 1)]


def test_probe_follows_big_metadata_with_more_reads() -> None:
    data = encode(50, 40, "JPEG", icc_profile=b"\x07" * 300_000)
    calls: list[tuple[int, int]] = []
    info, _total = probe_image(bytes_reader(data, calls), first_read=1024)
    assert info == ImageInfo(ImageFormat.JPEG, 50, 40)
    assert len(calls) > 1
    # each read continues where the previous one stopped: nothing is fetched twice
    for (_, prev_last), (first, _) in itertools.pairwise(calls):
        assert first == prev_last + 1


def test_probe_gives_up_after_its_budget() -> None:
    data = encode(50, 40, "JPEG", icc_profile=b"\x07" * 300_000)
    with pytest.raises(ImageHeaderError, match="within the first 100000 bytes"):
        probe_image(bytes_reader(data), first_read=1024, budget=100_000)


def test_probe_reports_a_file_that_ends_before_its_size() -> None:
    data = encode(50, 40, "PNG")[:20]
    with pytest.raises(ImageHeaderError, match="ends before its size"):
        probe_image(bytes_reader(data))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4096), first_read=st.integers(min_value=1, max_value=512))
def test_probe_on_random_bytes_gives_info_or_a_header_error(data: bytes, first_read: int) -> None:
    try:
        info, total = probe_image(bytes_reader(data), first_read=first_read, budget=8192)
    except ImageHeaderError:
        return
    assert info.width > 0 and info.height > 0
    assert total == len(data)


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_read(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    info = read_image_info(encode(40, 30, "JPEG", exif=exif.tobytes()))
    assert info.orientation == orientation
    assert (info.width, info.height) == (40, 30)  # stored size, whatever the orientation
    assert info.display_size == ((30, 40) if orientation >= 5 else (40, 30))


def test_little_endian_exif_orientation_is_read() -> None:
    # II*\0, IFD at 8, one entry: tag 0x0112, SHORT, count 1, value 8
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIH2x", 0x0112, 3, 1, 8)
    assert exif_orientation(tiff) == 8
    app1 = b"Exif\x00\x00" + tiff
    data = encode(20, 10, "JPEG")
    with_exif = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    assert read_image_info(with_exif) == ImageInfo(ImageFormat.JPEG, 20, 10, orientation=8)


def test_no_exif_means_orientation_1() -> None:
    assert read_image_info(encode(20, 10, "JPEG")).orientation == 1
    assert read_image_info(encode(20, 10, "PNG")).display_size == (20, 10)


@settings(max_examples=200)
@given(st.binary(max_size=200) | st.binary(max_size=60).map(lambda b: b"MM\x00*\x00\x00\x00\x08" + b))
def test_malformed_exif_never_fails_and_gives_a_valid_orientation(tiff: bytes) -> None:
    assert 1 <= exif_orientation(tiff) <= 8
