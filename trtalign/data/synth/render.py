"""Draw one synthetic image and its labels from a seeded ``np.random.Generator``.

Pipeline: background (gradient + low-frequency noise + pattern, or a crop of a sample photograph) -> labelled objects
and distractors in random depth order (each a polygon filled with a gradient, noise, optional stripes and outline,
anti-aliased) -> clutter lines and letters -> global contrast / brightness / blur / noise. Labels are computed from the
rendered masks after occlusion: objects mostly hidden or mostly out of frame get no label.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trtalign.core.geometry import rotated_corners
from trtalign.data.synth import shapes
from trtalign.data.synth.params import CLASS_NAMES, SynthParams

STRIPED = CLASS_NAMES.index("striped_rect")


@dataclass(frozen=True)
class SynthObject:
    """One labelled object. ``box`` is the axis-aligned box (x, y, w, h) in pixels of what is visible (detect) or of
    the oriented box's corners clipped to the image (obb). ``obb`` is (cx, cy, w, h, theta) with theta in radians in
    [0, pi), image axes (y down), w along the rotated x axis; ``corners`` its four (x, y) corners."""

    class_id: int
    box: tuple[float, float, float, float]
    area: float
    visible: float
    obb: tuple[float, float, float, float, float] | None = None
    corners: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict:
        return {"class_id": self.class_id, "name": CLASS_NAMES[self.class_id], "box": list(self.box),
                "area": self.area, "visible": self.visible,
                "obb": None if self.obb is None else list(self.obb),
                "corners": None if self.corners is None else [list(c) for c in self.corners]}


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def sample_data_dir() -> Path | None:
    """matplotlib's bundled sample-data folder, found without importing matplotlib; None if absent."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "mpl-data" / "sample_data"
    return folder if folder.is_dir() else None


PHOTO_FILES = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "jacksboro_fault_dem.npz")


@functools.lru_cache(maxsize=1)
def sample_photos() -> tuple[tuple[str, np.ndarray], ...]:
    """(name, BGR uint8 image) of the sample photographs found locally (an elevation map is colour-mapped)."""
    folder = sample_data_dir()
    found = []
    if folder is None:
        return ()
    for name in PHOTO_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".npz"):
            with np.load(path) as z:
                dem = z["elevation"].astype(np.float32)
            dem = (dem - dem.min()) / max(float(np.ptp(dem)), 1e-6) * 255.0
            img = cv2.applyColorMap(dem.astype(np.uint8), cv2.COLORMAP_EARTH if hasattr(cv2, "COLORMAP_EARTH")
                                    else cv2.COLORMAP_JET)
        else:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None and min(img.shape[:2]) >= 64:
            found.append((name, np.ascontiguousarray(img)))
    return tuple(found)


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _background(p: SynthParams, rng: np.random.Generator) -> np.ndarray:
    s = p.imgsz
    photos = sample_photos()
    if photos and rng.random() < p.photo_background_prob:
        _, photo = photos[int(rng.integers(len(photos)))]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (s, s), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        img = crop.astype(np.float32) * rng.uniform(0.6, 1.3, 3).astype(np.float32)
        return img + rng.uniform(-30, 30, 3).astype(np.float32)
    xs, ys = _grid(s)
    a = rng.uniform(0, 2 * np.pi)
    g = xs * float(np.cos(a) / (s * 1.42)) + ys * float(np.sin(a) / (s * 1.42)) + 0.5
    c1, c2 = _color(rng), _color(rng)
    img = c1 + (c2 - c1) * g[..., None]
    k = int(rng.integers(3, 10))
    low = rng.normal(0, rng.uniform(5, 35), (k, k, 3)).astype(np.float32)
    img += cv2.resize(low, (s, s), interpolation=cv2.INTER_CUBIC)
    kind = rng.random()
    if kind < 0.25:  # stripes
        b = rng.uniform(0, np.pi)
        period = rng.uniform(6, 40)
        wave = np.sin(xs * float(np.cos(b) * 2 * np.pi / period) + ys * float(np.sin(b) * 2 * np.pi / period))
        img += wave[..., None] * float(rng.uniform(4, 25))
    elif kind < 0.45:  # checker
        cell = rng.uniform(8, 48)
        chk = ((np.floor(xs / cell) + np.floor(ys / cell)) % 2).astype(np.float32) - 0.5
        img += chk[..., None] * float(rng.uniform(6, 30))
    elif kind < 0.7:  # soft blotches
        q = max(s // 4, 8)  # drawn at quarter size, blurred and scaled up
        blot = np.zeros((q, q, 3), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            center = (int(rng.integers(0, q)), int(rng.integers(0, q)))
            axes = (int(rng.integers(1, q // 3)), int(rng.integers(1, q // 3)))
            cv2.ellipse(blot, center, axes, float(rng.uniform(0, 180)), 0, 360,
                        tuple(float(v) for v in rng.uniform(-40, 40, 3)), -1)
        img += cv2.resize(cv2.GaussianBlur(blot, (0, 0), 1), (s, s), interpolation=cv2.INTER_LINEAR)
    return img


def _to_fixed(pts: np.ndarray) -> np.ndarray:
    """Continuous image coordinates (pixel i spans [i, i+1], as in COCO / YOLO) -> cv2 fixed point (4 fractional
    bits), where a vertex at integer (x, y) is the centre of pixel (x, y): hence the half-pixel shift."""
    return np.round((pts - 0.5) * 16.0).astype(np.int32).reshape(-1, 1, 2)


@dataclass
class _Item:
    outer: np.ndarray          # (n, 2) px
    holes: list
    class_id: int              # -1 for distractors
    center: tuple[float, float]
    size: tuple[float, float]  # tight local extent (w along rotated x, h)
    theta: float
    region: tuple[int, int, int, int] = (0, 0, 0, 0)
    mask: np.ndarray | None = None


def _place(p: SynthParams, rng: np.random.Generator, class_id: int, builder, taken: list, labelled: bool) -> _Item | None:
    s = p.imgsz
    long_side = s * float(np.exp(rng.uniform(np.log(p.min_size), np.log(p.max_size))))
    if p.task == "obb" and labelled:
        short_side = long_side / rng.uniform(p.obb_min_aspect, p.obb_max_aspect)
    else:
        short_side = long_side * rng.uniform(p.detect_min_aspect, 1.0)
    outer, holes = builder(rng)
    if len(outer) <= 14:
        outer = shapes.jitter(outer, rng, p.shape_jitter)
    lo, hi = outer.min(0), outer.max(0)
    scale = np.array([long_side / (hi[0] - lo[0]), short_side / (hi[1] - lo[1])])
    offset = (lo + hi) / 2.0
    theta = float(rng.uniform(0, 2 * np.pi))
    c, sn = np.cos(theta), np.sin(theta)
    rot = np.array([[c, -sn], [sn, c]])
    ex = (abs(c) * long_side + abs(sn) * short_side) / 2.0
    ey = (abs(sn) * long_side + abs(c) * short_side) / 2.0
    for _ in range(20 if labelled else 1):
        if p.task == "obb" and labelled:
            if 2 * ex > s - 2 or 2 * ey > s - 2:
                return None
            cx, cy = rng.uniform(ex + 1, s - ex - 1), rng.uniform(ey + 1, s - ey - 1)
        else:
            cx, cy = rng.uniform(0, s), rng.uniform(0, s)
        box = (cx - ex, cy - ey, cx + ex, cy + ey)
        if labelled and any(_overlap(box, t) > p.max_overlap for t in taken):
            continue
        if labelled:
            taken.append(box)
        to_px = lambda poly: ((poly - offset) * scale) @ rot.T + (cx, cy)  # noqa: E731
        return _Item(to_px(outer), [to_px(h) for h in holes], class_id, (cx, cy), (long_side, short_side), theta)
    return None


def _overlap(a: tuple, b: tuple) -> float:
    """Fraction of the smaller of two boxes (x0, y0, x1, y1) covered by their intersection."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(small, 1e-6)


def _paint(img: np.ndarray, item: _Item, p: SynthParams, rng: np.random.Generator) -> None:
    s = p.imgsz
    pts = np.concatenate([item.outer] + item.holes)
    x0, y0 = (np.floor(pts.min(0)) - 3).astype(int)
    x1, y1 = (np.ceil(pts.max(0)) + 4).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, s), min(y1, s)
    item.region = (x0, y0, x1, y1)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    shift = np.array([x0, y0])
    cv2.fillPoly(mask, [_to_fixed(item.outer - shift)], 255, cv2.LINE_AA, shift=4)
    for hole in item.holes:
        cv2.fillPoly(mask, [_to_fixed(hole - shift)], 0, cv2.LINE_AA, shift=4)
    xs, ys = _grid(s)
    xs, ys = xs[y0:y1, x0:x1] - item.center[0], ys[y0:y1, x0:x1] - item.center[1]
    c, sn = float(np.cos(item.theta)), float(np.sin(item.theta))
    u = xs * c + ys * sn
    v = ys * c - xs * sn
    gdir = rng.uniform(0, 2 * np.pi)
    inv = 1.0 / max(item.size[0], 1.0)
    g = np.clip(u * float(np.cos(gdir) * inv) + v * float(np.sin(gdir) * inv) + 0.5, 0, 1)
    c1 = _color(rng)
    c2 = np.clip(c1 + rng.normal(0, 45, 3), 0, 255).astype(np.float32)
    fill = c1 + (c2 - c1) * g[..., None]
    if item.class_id == STRIPED:
        stripes = int(rng.integers(3, 8))
        band = np.floor((u * inv + 0.5) * stripes) % 2 == 1
        c3 = ((c1 + rng.uniform(70, 185, 3)) % 256).astype(np.float32)
        fill[band] = c3 + (c2 - c1) * g[band][:, None]
    sigma = rng.uniform(0, 14)
    if sigma > 1:
        fill += rng.standard_normal(fill.shape[:2] + (1,), dtype=np.float32) * float(sigma)
    alpha = mask.astype(np.float32)[..., None] * np.float32(1 / 255)
    view = img[y0:y1, x0:x1]
    view *= 1 - alpha
    view += fill * alpha
    if rng.random() < p.outline_prob:
        line = np.zeros_like(mask)
        thick = int(rng.integers(1, max(2, min(4, int(min(item.size) / 12)) + 1)))
        polys = [_to_fixed(item.outer - shift)] + [_to_fixed(h - shift) for h in item.holes]
        cv2.polylines(line, polys, True, 255, thick, cv2.LINE_AA, shift=4)
        tone = c1 * rng.uniform(0.15, 0.5) if rng.random() < 0.7 else np.minimum(c1 + 110, 255)
        la = line.astype(np.float32)[..., None] * np.float32(1 / 255)
        view *= 1 - la
        view += tone.astype(np.float32) * la
        np.maximum(mask, line, out=mask)
    item.mask = mask


def _clutter(img: np.ndarray, p: SynthParams, rng: np.random.Generator, count: int) -> None:
    s = p.imgsz
    for _ in range(count):
        color = _color(rng)
        ink = np.zeros((s, s), np.uint8)
        if rng.random() < 0.75:
            a = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
            b = tuple(int(v) for v in rng.integers(-s // 4, s + s // 4, 2))
            cv2.line(ink, a, b, 255, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(1, 5))))
            org = (int(rng.integers(0, s - 20)), int(rng.integers(12, s)))
            cv2.putText(ink, text, org, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.3, 1.2)), 255,
                        int(rng.integers(1, 3)), cv2.LINE_AA)
        bx, by, bw, bh = cv2.boundingRect(ink)
        if bw == 0 or bh == 0:
            continue
        ys, xs = np.nonzero(ink[by:by + bh, bx:bx + bw])
        ys += by
        xs += bx
        a = ink[ys, xs].astype(np.float32)[:, None] * np.float32(1 / 255)
        img[ys, xs] = img[ys, xs] * (1 - a) + color * a


def _polygon_area(item: _Item) -> float:
    area = abs(cv2.contourArea(item.outer.astype(np.float32)))
    return area - sum(abs(cv2.contourArea(h.astype(np.float32))) for h in item.holes)


def _label(item: _Item, visible: np.ndarray, p: SynthParams) -> SynthObject | None:
    count = int(cv2.countNonZero(visible))
    frac = count / max(_polygon_area(item), 1.0)
    if frac < p.min_visible:
        return None
    x0, y0 = item.region[:2]
    bx, by, bw, bh = cv2.boundingRect(visible)
    if min(bw, bh) < p.min_box_px:
        return None
    vis = round(min(frac, 1.0), 4)
    if p.task == "detect":
        return SynthObject(item.class_id, (float(bx + x0), float(by + y0), float(bw), float(bh)), float(count), vis)
    w, h = item.size
    corners = rotated_corners(np.array([item.center[0], item.center[1], w, h, item.theta], dtype=np.float64))
    lo = np.clip(corners.min(0), 0, p.imgsz)
    hi = np.clip(corners.max(0), 0, p.imgsz)
    theta = float(np.mod(item.theta, np.pi))
    return SynthObject(item.class_id, (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
                       float(w * h), vis, (float(item.center[0]), float(item.center[1]), float(w), float(h), theta),
                       tuple((float(x), float(y)) for x, y in corners))


def render_image(p: SynthParams, rng: np.random.Generator) -> tuple[np.ndarray, list[SynthObject]]:
    """Draw one image (uint8 BGR, ``imgsz`` x ``imgsz``) and its labels, consuming ``rng``."""
    img = _background(p, rng)
    n_lines = int(rng.integers(0, p.max_lines + 1))
    under = int(rng.integers(0, n_lines + 1))
    _clutter(img, p, rng, under)
    taken: list = []
    items = []
    for _ in range(int(rng.integers(p.min_objects, p.max_objects + 1))):
        cls = int(rng.integers(len(CLASS_NAMES)))
        item = _place(p, rng, cls, shapes.CLASS_BUILDERS[cls], taken, labelled=True)
        if item is not None:
            items.append(item)
    for _ in range(int(rng.integers(0, p.max_distractors + 1))):
        builder = shapes.DISTRACTOR_BUILDERS[int(rng.integers(len(shapes.DISTRACTOR_BUILDERS)))]
        item = _place(p, rng, -1, builder, taken, labelled=False)
        if item is not None:
            items.append(item)
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    for item in items:
        _paint(img, item, p, rng)
    _clutter(img, p, rng, n_lines - under)
    # labels from the masks, front to back
    cover = np.zeros((p.imgsz, p.imgsz), bool)
    labels = []
    for item in reversed(items):
        if item.mask is None:
            continue
        x0, y0, x1, y1 = item.region
        solid = item.mask >= 128
        if item.class_id >= 0:
            visible = (solid & ~cover[y0:y1, x0:x1]).astype(np.uint8)
            obj = _label(item, visible, p)
            if obj is not None:
                labels.append(obj)
        cover[y0:y1, x0:x1] |= solid
    labels.reverse()
    # global photometric changes
    contrast = np.float32(rng.uniform(p.min_contrast, p.max_contrast))
    img *= contrast
    img += np.float32(128.0 + 0.5 + rng.uniform(-p.brightness, p.brightness)) - 128 * contrast  # +0.5: rounding
    if rng.random() < p.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, p.max_blur_sigma)))
    sigma = rng.uniform(0, p.max_noise_sigma)
    if sigma > 0.5:  # luminance noise, one draw per pixel
        img += rng.standard_normal((p.imgsz, p.imgsz, 1), dtype=np.float32) * np.float32(sigma)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8), labels


def encode_image(img: np.ndarray, p: SynthParams) -> bytes:
    """Encode with fixed parameters so the bytes are a function of the pixels (on a given OpenCV build)."""
    if p.image_format == "png":
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality,
                                             cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arguments
        raise RuntimeError(f"cv2 could not encode a {img.shape} image as {p.image_format}")
    return buf.tobytes()
