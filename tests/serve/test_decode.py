"""Safe decoding: header dimensions read before decoding, limits, content types, multipart bodies."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from trtalign.serve.decode import (DecodeLimits, check_content_length, check_content_type, decode_image,
                                   decode_request_body, image_bytes_from_multipart, read_image_header)
from trtalign.serve.errors import RequestError


def _img(h=37, w=53):
    img = np.zeros((h, w, 3), np.uint8)
    img[5:20, 7:30] = (200, 100, 50)
    return img


ENCODINGS = [
    # (extension, encoder params, expected format)
    (".png", [], "png"),
    (".jpg", [], "jpeg"),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "jpeg"),  # progressive: SOF2 frame header
    (".bmp", [], "bmp"),
    (".webp", [], "webp"),  # lossless: VP8L chunk
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 50], "webp"),  # lossy: VP8 chunk
    (".gif", [], "gif"),
]


@pytest.mark.parametrize("ext,params,fmt", ENCODINGS, ids=[f"{e}-{f}-{len(p)}" for e, p, f in ENCODINGS])
def test_header_dimensions_match_the_encoded_image(ext, params, fmt):
    ok, buf = cv2.imencode(ext, _img(), params)
    assert ok
    header = read_image_header(buf.tobytes())
    assert (header.format, header.width, header.height) == (fmt, 53, 37)
    decoded = decode_image(buf.tobytes())
    assert decoded.shape == (37, 53, 3) and decoded.dtype == np.uint8


def test_decode_equals_opencv_for_lossless_png():
    img = _img(64, 80)
    ok, buf = cv2.imencode(".png", img)
    np.testing.assert_array_equal(decode_image(buf.tobytes()), img)


def test_webp_vp8x_header():
    data = b"RIFF" + struct.pack("<I", 100) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\x00" * 4
    data += (19999).to_bytes(3, "little") + (29999).to_bytes(3, "little")
    h = read_image_header(data)
    assert (h.width, h.height) == (20000, 30000)


def _png_header(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF))


REFUSED = [
    # (id, body, limits, status, code)
    ("bomb-20000x20000", _png_header(20000, 20000) + zlib.compress(b"\x00" * 60001), DecodeLimits(), 413,
     "image_too_large"),
    ("side-over-limit", _png_header(20000, 10), DecodeLimits(), 413, "image_too_large"),
    ("pixels-over-custom-limit", _png_header(1000, 1000), DecodeLimits(max_pixels=999_999), 413, "image_too_large"),
    ("zero-width", _png_header(0, 10), DecodeLimits(), 400, "malformed_image"),
    ("png-without-ihdr", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, DecodeLimits(), 400, "malformed_image"),
    ("png-header-only", _png_header(10, 10), DecodeLimits(), 400, "malformed_image"),  # no pixel data
    ("text", b"GET / HTTP/1.1\r\n", DecodeLimits(), 400, "not_an_image"),
    ("empty", b"", DecodeLimits(), 400, "empty_body"),
    ("jpeg-no-sof", b"\xff\xd8\xff\xd9", DecodeLimits(), 400, "malformed_image"),
    ("too-many-bytes", b"\x89PNG" + b"\x00" * 2000, DecodeLimits(max_bytes=1000), 413, "payload_too_large"),
]


@pytest.mark.parametrize("name,body,limits,status,code", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_before_or_at_decoding(name, body, limits, status, code):
    with pytest.raises(RequestError) as info:
        decode_image(body, limits)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.to_dict()["error"]["message"]


def test_bomb_is_refused_without_allocating():
    import tracemalloc

    body = _png_header(20000, 20000) + zlib.compress(b"\x00" * 60001)
    tracemalloc.start()
    with pytest.raises(RequestError):
        decode_image(body)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5_000_000  # a decode would need 20000 * 20000 * 3 = 1.2 GB


CONTENT_TYPES = [
    # (header, accepted)
    ("image/png", True),
    ("IMAGE/JPEG; charset=binary", True),
    ("image/webp", True),
    ("multipart/form-data; boundary=x", True),
    ("text/plain", False),
    ("application/json", False),
    ("application/octet-stream", True),  # raw bytes of unknown type: accepted, the format is sniffed
    ("image/svg+xml", False),  # an image type we cannot decode safely
    (None, False),
]


@pytest.mark.parametrize("header,accepted", CONTENT_TYPES)
def test_content_types(header, accepted):
    if accepted:
        assert check_content_type(header)
    else:
        with pytest.raises(RequestError) as info:
            check_content_type(header)
        assert info.value.status == 415 and "image/png" in info.value.message


@pytest.mark.parametrize("length,status", [(None, 411), (0, 400), (-5, 400), (10_000_001, 413)])
def test_content_length_checks(length, status):
    with pytest.raises(RequestError) as info:
        check_content_length(length, DecodeLimits(max_bytes=10_000_000))
    assert info.value.status == status
    assert check_content_length(10_000_000, DecodeLimits(max_bytes=10_000_000)) == 10_000_000


def test_multipart_image_field():
    ok, buf = cv2.imencode(".png", _img())
    boundary = "XyZ"
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"meta\"\r\n\r\n{}\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + buf.tobytes() + b"\r\n--XyZ--\r\n")
    ctype = f"multipart/form-data; boundary={boundary}"
    assert image_bytes_from_multipart(body, ctype) == buf.tobytes()
    np.testing.assert_array_equal(decode_request_body(body, ctype), _img())
    with pytest.raises(RequestError) as info:
        image_bytes_from_multipart(body, ctype, field="picture")
    assert info.value.code == "missing_field" and "'meta'" in info.value.message
    with pytest.raises(RequestError) as info:
        image_bytes_from_multipart(body, "multipart/form-data")
    assert info.value.code == "bad_multipart"
