"""facedet.imageio.read_image: EXIF orientation, pixel limits read from headers, JPEGs with trailing data.

Every fixture is made here: JPEGs with an EXIF block written byte by byte, PNGs whose
header lies about their size, and a real (valid, highly compressible) 250-megapixel PNG.
"""

from __future__ import annotations

import math
import struct
import zlib

import cv2
import numpy as np
import pytest

from facedet.errors import FacedetError
from facedet.imageio import DEFAULT_MAX_PIXELS, header_size, read_image


# --------------------------------------------------------------------------- fixtures made by hand


def exif_app1(orientation: int, byte_order: str = "MM") -> bytes:
    """A JPEG APP1 segment holding a TIFF header and one IFD entry: Orientation (0x0112), SHORT."""
    e = ">" if byte_order == "MM" else "<"
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0)
    payload = b"Exif\x00\x00" + byte_order.encode() + struct.pack(e + "HI", 42, 8) + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_orientation(image: np.ndarray, orientation: int, byte_order: str = "MM") -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    assert data[:2] == b"\xff\xd8"
    return data[:2] + exif_app1(orientation, byte_order) + data[2:]  # right after SOI, as cameras write it


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def lying_png(width: int, height: int) -> bytes:
    """A 68-byte PNG whose header claims width x height pixels (RGB), with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + png_chunk(b"IEND", b"")


def real_big_png(width: int, height: int) -> bytes:
    """A complete, valid black-and-white (1 bit a pixel) PNG of width x height black pixels."""
    z = zlib.compressobj(1)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def marker_image(h: int = 48, w: int = 80) -> np.ndarray:
    """Large flat blocks (JPEG keeps them) that make every flip and rotation distinguishable."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[: h // 2, : w // 4] = (255, 255, 255)  # top-left: white
    img[h // 2 :, w // 2 :] = (0, 0, 200)  # bottom-right: red
    img[: h // 4, w // 2 : w * 3 // 4] = (0, 200, 0)  # top, middle: green
    return img


# what a viewer shows for each EXIF orientation of the stored pixels (EXIF 2.3, tag 0x0112)
VIEWER = {
    1: lambda a: a,
    2: np.fliplr,  # mirrored horizontally
    3: lambda a: np.rot90(a, 2),  # rotated 180
    4: np.flipud,  # mirrored vertically
    5: lambda a: a.transpose(1, 0, 2),  # mirrored horizontally, then rotated 90 counter-clockwise
    6: lambda a: np.rot90(a, -1),  # rotated 90 clockwise (portrait phone photo)
    7: lambda a: np.rot90(np.fliplr(a), -1),  # mirrored horizontally, then rotated 90 clockwise
    8: lambda a: np.rot90(a, 1),  # rotated 90 counter-clockwise
}


# --------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("byte_order", ["MM", "II"])
@pytest.mark.parametrize("orientation", sorted(VIEWER))
def test_exif_orientation_is_applied(tmp_path, orientation, byte_order):
    stored = marker_image()
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_with_orientation(stored, orientation, byte_order))
    got = read_image(path)
    want = np.ascontiguousarray(VIEWER[orientation](stored))
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 4  # JPEG noise only


def test_portrait_phone_photo_is_upright(tmp_path):
    """Orientation 6: the sensor stored the photo lying on its side, 80 wide; the viewer shows it 48 wide."""
    path = tmp_path / "portrait.jpg"
    path.write_bytes(jpeg_with_orientation(marker_image(48, 80), 6))
    assert read_image(path).shape == (80, 48, 3)
    assert header_size(np.fromfile(str(path), np.uint8)) == (80, 48)  # the header size is the stored one


# --------------------------------------------------------------------------- trailing data and truncation


def _photo(progressive: bool = False) -> tuple[np.ndarray, bytes]:
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR), buf.tobytes()


def _fake_motion_photo_video() -> bytes:
    """What a phone appends to a "motion photo": an MP4 (ftyp box, then media data with any bytes, FF D9 included)."""
    media = np.random.default_rng(1).integers(0, 255, 20000, dtype=np.uint8)  # no FF byte ...
    media[5000:5002] = (0xFF, 0xD9)  # ... but one end-of-image pair, far from the end of the file
    return struct.pack(">I", 24) + b"ftypmp42" + b"\x00" * 12 + struct.pack(">I", 8 + media.size) + b"mdat" + media.tobytes()


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("trailer", ["zero padding", "motion photo", "second JPEG"])
def test_jpeg_with_trailing_data_is_decoded(tmp_path, trailer, progressive):
    want, data = _photo(progressive)
    extra = {"zero padding": b"\x00" * 8192, "motion photo": _fake_motion_photo_video(), "second JPEG": _photo()[1]}[trailer]
    (tmp_path / "x.jpg").write_bytes(data + extra)
    got = read_image(tmp_path / "x.jpg")
    assert np.array_equal(got, want)


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_still_refused(tmp_path, progressive):
    _, data = _photo(progressive)
    cases = {
        "half": data[: len(data) // 2],
        "all but the EOI marker": data[:-2],
        "cut, then zero padding": data[: len(data) * 3 // 4] + b"\x00" * 8192,
        "header only": data[:300],
    }
    for what, cut in cases.items():
        (tmp_path / "cut.jpg").write_bytes(cut)
        with pytest.raises(FacedetError, match="truncated JPEG") as exc:
            read_image(tmp_path / "cut.jpg")
        assert "\n" not in str(exc.value), what


# --------------------------------------------------------------------------- pixel limit


def test_lying_png_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "liar.png"
    path.write_bytes(lying_png(50000, 50000))
    assert path.stat().st_size < 100
    with pytest.raises(FacedetError, match=r"liar\.png: 50000x50000 pixels is over the limit of 250,000,000 pixels \(--max-pixels"):
        read_image(path)
    # without facedet's limit, OpenCV's own (2^30 pixels) still gives one line, not an assertion
    with pytest.raises(FacedetError, match="larger than OpenCV decodes") as exc:
        read_image(path, max_pixels=None)
    assert "\n" not in str(exc.value) and "Assertion" not in str(exc.value)


def test_lying_jpeg_header_is_refused_before_decoding(tmp_path):
    _, data = _photo()
    sof = data.index(b"\xff\xc0")
    liar = bytearray(data)
    liar[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width in the SOF segment
    (tmp_path / "liar.jpg").write_bytes(bytes(liar))
    with pytest.raises(FacedetError, match="60000x60000 pixels is over the limit"):
        read_image(tmp_path / "liar.jpg")


def test_real_image_just_over_the_default_limit_is_refused_from_its_header(tmp_path):
    side = math.isqrt(DEFAULT_MAX_PIXELS) + 1  # 15812 x 15812: 250,019,344 pixels
    path = tmp_path / "big.png"
    path.write_bytes(real_big_png(side, side))
    assert header_size(np.fromfile(str(path), np.uint8)) == (side, side)
    with pytest.raises(FacedetError, match=f"{side}x{side} pixels is over the limit"):
        read_image(path)
    # the default lets the largest phone photos through (a 200 MP sensor: 16320 x 12240)
    assert 16320 * 12240 <= DEFAULT_MAX_PIXELS


def test_max_pixels_is_exact_and_also_checked_after_decoding(tmp_path, monkeypatch):
    import facedet.imageio as imageio

    img = marker_image(120, 160)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    assert read_image(tmp_path / "a.png", max_pixels=160 * 120).shape == (120, 160, 3)
    with pytest.raises(FacedetError, match="160x120 pixels is over the limit of 19,199 pixels"):
        read_image(tmp_path / "a.png", max_pixels=160 * 120 - 1)
    # formats whose header facedet does not read are checked once decoded
    monkeypatch.setattr(imageio, "header_size", lambda data: None)
    with pytest.raises(FacedetError, match="160x120 pixels is over the limit"):
        read_image(tmp_path / "a.png", max_pixels=1000)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".tif", ".webp", ".ppm", ".pgm", ".pbm", ".pam", ".ras", ".hdr", ".jp2", ".pfm"])
def test_header_size_of_every_format_opencv_writes(ext):
    img = np.random.default_rng(2).integers(0, 255, (300, 470, 3), dtype=np.uint8)
    if ext in (".pgm", ".pbm"):
        img = img[:, :, 0]
    if ext in (".hdr", ".pfm"):
        img = img.astype(np.float32) / 255
    try:
        ok, buf = cv2.imencode(ext, img)
    except cv2.error:
        pytest.skip(f"this OpenCV cannot write {ext}")
    assert ok
    assert header_size(buf.tobytes()) == (470, 300)
    assert header_size(buf.ravel()) == (470, 300)


def test_header_size_of_unknown_or_short_data():
    assert header_size(b"hello, not an image") is None
    assert header_size(b"\x89PNG\r\n\x1a\n") is None
    assert header_size(b"II*\x00\xff\xff\xff\xff") is None  # IFD offset past the end
