"""Request bodies -> decoded images, safely.

Order of checks, cheapest first: the Content-Type header (415; ``application/octet-stream`` is accepted and the format
sniffed like for every declared image type), the body size (413), the body's magic bytes (400 for a
non-image), the image dimensions read from the header *before* decoding (413 for a decompression bomb such as a
20000x20000 PNG whose compressed body is a few kilobytes), then OpenCV's decoder (400 for corrupt data).
Supported formats: PNG, JPEG, BMP, WebP, GIF (first frame).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

import numpy as np

from trtalign.serve.errors import RequestError

#: MIME types accepted for a raw image body (image/* types whose format we can sniff and decode)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/pjpeg", "image/bmp", "image/x-ms-bmp", "image/webp",
               "image/gif")
#: untyped raw bytes, what most HTTP clients send for a file body: the format is sniffed from the magic bytes, exactly as
#: for the image/* types (whose declared format is not trusted either)
OCTET_STREAM_TYPE = "application/octet-stream"
MULTIPART_TYPE = "multipart/form-data"
FORMATS = ("png", "jpeg", "bmp", "webp", "gif")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what a request may make the server allocate."""

    max_bytes: int = 16 * 1024 * 1024  # request body
    max_pixels: int = 40_000_000  # width * height of the decoded image (8K UHD is 33 MP)
    max_side: int = 16384

    def to_dict(self) -> dict:
        return {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels, "max_side": self.max_side}


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


def media_type(content_type: str | None) -> str:
    """``'image/PNG; charset=x'`` -> ``'image/png'``; ``''`` when absent."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: str | None) -> str:
    """Return the media type if the server accepts it, else raise a 415 listing the accepted types."""
    mt = media_type(content_type)
    if mt in IMAGE_TYPES or mt in (OCTET_STREAM_TYPE, MULTIPART_TYPE):
        return mt
    raise RequestError(415, "unsupported_media_type",
                       f"Content-Type {mt or '(none)'!r} is not accepted; send raw image bytes as one of "
                       f"{', '.join(IMAGE_TYPES)}, {OCTET_STREAM_TYPE} (format sniffed), or {MULTIPART_TYPE} with "
                       f"an 'image' field")


def check_content_length(length: int | None, limits: DecodeLimits) -> int:
    """Validate the declared body size before reading it."""
    if length is None:
        raise RequestError(411, "length_required", "a Content-Length header is required")
    if length <= 0:
        raise RequestError(400, "empty_body", "the request body is empty; expected image bytes")
    if length > limits.max_bytes:
        raise RequestError(413, "payload_too_large",
                           f"request body is {length} bytes; the limit is {limits.max_bytes} bytes")
    return length


# ---------------------------------------------------------------------------------------------------- headers
def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise RequestError(400, "malformed_image", "PNG signature present but no IHDR chunk")
    w, h = struct.unpack(">II", data[16:24])
    return w, h


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise RequestError(400, "malformed_image", f"JPEG: expected a marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            i += 2
            continue
        (seg_len,) = struct.unpack(">H", data[i + 2:i + 4])
        if seg_len < 2:
            break
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        i += 2 + seg_len
    raise RequestError(400, "malformed_image", "JPEG: no frame header (SOF) found")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise RequestError(400, "malformed_image", "BMP header is truncated")
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # BITMAPCOREHEADER
        w, h = struct.unpack("<HH", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


def _webp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise RequestError(400, "malformed_image", "WebP header is truncated")
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise RequestError(400, "malformed_image", f"WebP: unknown chunk {chunk!r}")


def _gif_size(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise RequestError(400, "malformed_image", "GIF header is truncated")
    return struct.unpack("<HH", data[6:10])


def read_image_header(data: bytes) -> ImageHeader:
    """Format and dimensions from the first bytes of an image, without decoding it. Raises 400 for a non-image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        fmt, (w, h) = "png", _png_size(data)
    elif data.startswith(b"\xff\xd8"):
        fmt, (w, h) = "jpeg", _jpeg_size(data)
    elif data.startswith(b"BM"):
        fmt, (w, h) = "bmp", _bmp_size(data)
    elif data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        fmt, (w, h) = "webp", _webp_size(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        fmt, (w, h) = "gif", _gif_size(data)
    else:
        raise RequestError(400, "not_an_image",
                           f"the body is not a supported image (first bytes {data[:8]!r}); supported formats: "
                           f"{', '.join(FORMATS)}")
    return ImageHeader(fmt, int(w), int(h))


def check_dimensions(header: ImageHeader, limits: DecodeLimits) -> None:
    w, h = header.width, header.height
    if w <= 0 or h <= 0:
        raise RequestError(400, "malformed_image", f"{header.format} header declares a {w}x{h} image")
    if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
        raise RequestError(413, "image_too_large",
                           f"{header.format} header declares {w}x{h} = {w * h} pixels; limits are "
                           f"{limits.max_side} per side and {limits.max_pixels} pixels (refused before decoding)")


# ---------------------------------------------------------------------------------------------------- bodies
def image_bytes_from_multipart(body: bytes, content_type: str, field: str = "image") -> bytes:
    """The bytes of the form field ``field`` of a multipart/form-data body."""
    if "boundary=" not in content_type:
        raise RequestError(400, "bad_multipart", "multipart/form-data without a boundary parameter")
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise RequestError(400, "bad_multipart", "the multipart/form-data body could not be parsed")
    names = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        names.append(name)
        if name == field:
            payload = part.get_payload(decode=True)
            return payload or b""
    raise RequestError(400, "missing_field", f"multipart body has no {field!r} field (fields: {names})")


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """Image bytes -> ``uint8 [H, W, 3]`` BGR array (OpenCV's order), with every safety check before decoding."""
    import cv2

    if not data:
        raise RequestError(400, "empty_body", "the image is empty; expected image bytes")
    if len(data) > limits.max_bytes:
        raise RequestError(413, "payload_too_large", f"image is {len(data)} bytes; limit {limits.max_bytes}")
    header = read_image_header(data)
    check_dimensions(header, limits)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.size == 0:
        raise RequestError(400, "malformed_image", f"the {header.format} data could not be decoded (corrupt or "
                                                   f"truncated)")
    if image.shape[:2] != (header.height, header.width):
        raise RequestError(400, "malformed_image", f"{header.format} header says {header.width}x{header.height} but "
                                                   f"the data decodes to {image.shape[1]}x{image.shape[0]}")
    return image


def decode_request_body(body: bytes, content_type: str | None, limits: DecodeLimits = DecodeLimits()) -> np.ndarray:
    """A POST body with its Content-Type -> BGR image (raw image/* bytes or multipart with an ``image`` field)."""
    mt = check_content_type(content_type)
    if not body:
        raise RequestError(400, "empty_body", "the request body is empty; expected image bytes")
    if mt == MULTIPART_TYPE:
        body = image_bytes_from_multipart(body, content_type or "")
    return decode_image(body, limits)
