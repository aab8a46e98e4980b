"""Datasets: COCO json + image folder, ultralytics YOLO / OBB label folders (+ data.yaml) and DOTA txt -> one form.

The internal form is a :class:`Dataset`: images (id, path, size), per-image ground truth (``xyxy`` boxes for detect,
``xywhr`` boxes for rotated, a contiguous class index, an ``ignore`` flag for COCO ``iscrowd`` / DOTA ``difficult``,
and the area used for COCO's small/medium/large ranges), class names, and the map between contiguous class indices and
the dataset's own category ids (COCO's 80 categories use ids 1..90 with gaps; index ``i`` is the ``i``-th id in sorted
order, which is exactly the ``coco80 -> coco91`` map ultralytics models use).

Loaders: :func:`load_coco`, :func:`load_yolo`, :func:`load_dota`, and :func:`load_dataset` which detects the format.
Every problem (missing image, malformed json, class out of range, non-normalised label) raises ``InputError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from trtalign.core.enums import Task
from trtalign.core.errors import ConfigError, InputError, choices_text
from trtalign.core.geometry import rotated_bounds

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FORMATS = ("auto", "coco", "yolo", "dota")


@dataclass(frozen=True)
class ImageRecord:
    """One image: ``id`` (COCO image id, or the position in sorted file order), file name, path and size in pixels."""

    id: int
    file_name: str
    path: Path
    width: int
    height: int

    def to_dict(self) -> dict:
        return {"id": self.id, "file_name": self.file_name, "path": str(self.path), "width": self.width,
                "height": self.height}


@dataclass
class GroundTruth:
    """Ground truth of one image. ``boxes``: ``[N, 4]`` xyxy or ``[N, 5]`` xywhr (float64, pixels);
    ``class_ids``: contiguous indices; ``ignore``: crowd / difficult; ``areas``: COCO area (or w*h)."""

    boxes: np.ndarray
    class_ids: np.ndarray
    ignore: np.ndarray
    areas: np.ndarray

    @classmethod
    def empty(cls, rotated: bool = False) -> "GroundTruth":
        return cls(np.zeros((0, 5 if rotated else 4)), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0))

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class Dataset:
    """Images + ground truth in one form, whatever the file format."""

    task: Task
    images: list
    annotations: dict  # image id -> GroundTruth
    names: list
    category_ids: list  # contiguous index -> the dataset's category id
    source: str = ""  # "coco" | "yolo" | "dota"
    root: Optional[Path] = None
    _by_id: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {im.id: im for im in self.images}
        if len(self._by_id) != len(self.images):
            raise InputError(f"dataset {self.root}: image ids are not unique")
        if len(self.names) != len(self.category_ids):
            raise InputError(f"dataset {self.root}: {len(self.names)} names but {len(self.category_ids)} category ids")

    @property
    def rotated(self) -> bool:
        return self.task is Task.OBB

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def num_boxes(self) -> int:
        return sum(len(gt) for gt in self.annotations.values())

    def __len__(self) -> int:
        return len(self.images)

    def require_boxes(self, purpose: str = "mAP") -> "Dataset":
        """``self`` if it holds at least one labelled box; else an InputError saying where labels were looked for
        (mAP over no ground truth is NaN, not a result)."""
        if self.num_boxes > 0:
            return self
        where = {"yolo": "one .txt per image under labels/ next to images/ (ultralytics layout)",
                 "coco": "the 'annotations' list of the COCO json",
                 "dota": "one .txt per image under labelTxt/ (DOTA layout)"}.get(self.source, "the label files")
        raise InputError(f"dataset {self.root}: {len(self.images)} images but no labelled boxes ({self.source or '?'} "
                         f"format: labels are read from {where}); {purpose} needs ground truth: point --data at a "
                         f"labelled dataset")

    def image(self, image_id: int) -> ImageRecord:
        try:
            return self._by_id[image_id]
        except KeyError:
            raise InputError(f"unknown image id {image_id!r}; the dataset has {len(self.images)} images "
                             f"(ids {self.images[0].id}..{self.images[-1].id})" if self.images else
                             f"unknown image id {image_id!r}; the dataset has no images") from None

    def has_image(self, image_id: int) -> bool:
        return image_id in self._by_id

    def ground_truth(self, image_id: int) -> GroundTruth:
        self.image(image_id)
        return self.annotations.get(image_id) or GroundTruth.empty(self.rotated)

    def category_id(self, index: int) -> int:
        if not 0 <= int(index) < len(self.category_ids):
            raise InputError(f"class index {index} out of range: the dataset has {len(self.category_ids)} classes")
        return int(self.category_ids[int(index)])

    def class_index(self, category_id: int) -> int:
        try:
            return self.category_ids.index(int(category_id))
        except ValueError:
            raise InputError(f"unknown category id {category_id}; valid: {choices_text(self.category_ids)}") from None

    def subset(self, max_images: int | None) -> "Dataset":
        """The first ``max_images`` images (all when None), with their ground truth."""
        if max_images is None or max_images >= len(self.images):
            return self
        if max_images < 1:
            raise InputError(f"max_images must be >= 1, got {max_images}")
        images = self.images[:max_images]
        keep = {im.id for im in images}
        return replace(self, images=images, annotations={k: v for k, v in self.annotations.items() if k in keep})

    def to_coco(self) -> dict:
        """Ground truth as a COCO json dict (bbox ``[x, y, w, h]``; rotated boxes give their enclosing box and a
        ``"xywhr"`` field) with the dataset's own category ids."""
        images = [{"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
                  for im in self.images]
        anns = []
        for im in self.images:
            gt = self.annotations.get(im.id)
            if gt is None:
                continue
            xyxy = gt.boxes if not self.rotated else xywhr_to_enclosing_xyxy(gt.boxes)
            for j in range(len(gt)):
                x1, y1, x2, y2 = (float(v) for v in xyxy[j])
                ann = {"id": len(anns) + 1, "image_id": im.id, "category_id": self.category_id(gt.class_ids[j]),
                       "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(gt.areas[j]),
                       "iscrowd": int(gt.ignore[j])}
                if self.rotated:
                    ann["xywhr"] = [float(v) for v in gt.boxes[j]]
                anns.append(ann)
        cats = [{"id": int(c), "name": str(n)} for c, n in zip(self.category_ids, self.names)]
        return {"images": images, "annotations": anns, "categories": cats}

    def summary(self) -> dict:
        return {"source": self.source, "root": str(self.root) if self.root else None, "task": self.task.value,
                "images": len(self.images), "boxes": self.num_boxes, "classes": self.num_classes,
                "names": list(self.names)}


# ---------------------------------------------------------------------------------------------------------- helpers
def xywhr_to_enclosing_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Enclosing axis-aligned boxes of rotated ones (:func:`trtalign.core.geometry.rotated_bounds`)."""
    return rotated_bounds(boxes)


def polygons_to_xywhr(points: np.ndarray) -> np.ndarray:
    """``[N, 8]`` corner coordinates -> ``[N, 5]`` (cx, cy, w, h, angle rad) by the minimum-area rectangle, as
    ultralytics converts DOTA / OBB labels."""
    import cv2

    pts = np.asarray(points, np.float32).reshape(-1, 4, 2)
    out = np.zeros((len(pts), 5))
    for i, p in enumerate(pts):
        (cx, cy), (w, h), angle = cv2.minAreaRect(p)
        out[i] = (cx, cy, w, h, math.radians(angle))
    return out


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    from trtalign.core.preprocess import lfs_pointer_error

    pointer = lfs_pointer_error(path)
    if pointer is not None:
        raise pointer
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - ultralytics patches Image.open to try an optional HEIF plugin
        raise InputError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def _label_file_image(iid: int, path: Path, images_dir: Path) -> ImageRecord:
    """The record of an image of a label-file dataset (YOLO, DOTA): id ``iid`` (its position in sorted file order),
    its name relative to ``images_dir``, its size read from the file. Raises InputError when it cannot be read."""
    w, h = _image_size(path)
    return ImageRecord(iid, str(path.relative_to(images_dir)), path, w, h)


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _missing_images_error(missing: Sequence[str], folder: Path, total: int) -> InputError:
    shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
    return InputError(f"{len(missing)} of {total} images listed in the annotations are missing under {folder}: {shown}")


# ---------------------------------------------------------------------------------------------------------- COCO
def _read_json(path: Path) -> object:
    if not path.is_file():
        raise InputError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from None


def _guess_coco_images_dir(json_path: Path, file_names: list[str], split: str) -> Path:
    base = json_path.parent
    candidates = [base / "images" / split, base / "images", base / split, base.parent / "images" / split,
                  base.parent / "images", base.parent / split, base]
    probe = file_names[0] if file_names else None
    for c in candidates:
        if c.is_dir() and (probe is None or (c / probe).is_file()):
            return c
    raise InputError(f"cannot find the image folder of {json_path}: looked for {probe!r} in "
                     f"{', '.join(str(c) for c in candidates)}; pass images_dir (--images)")


def load_coco(json_path: str | Path, images_dir: str | Path | None = None, split: str = "val",
              check_images: bool = True) -> Dataset:
    """Read a COCO detection json (images, annotations with bbox xywh, categories) and its image folder."""
    json_path = Path(json_path)
    data = _read_json(json_path)
    if not isinstance(data, dict):
        raise InputError(f"{json_path}: expected a COCO json object with 'images', 'annotations', 'categories', "
                         f"got {type(data).__name__}")
    missing_keys = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing_keys:
        raise InputError(f"{json_path}: missing or non-list COCO keys {missing_keys}; expected 'images', "
                         f"'annotations' and 'categories' lists")
    try:
        cats = sorted(((int(c["id"]), str(c.get("name", c["id"]))) for c in data["categories"]), key=lambda t: t[0])
        raw_images = [(int(im["id"]), str(im["file_name"]), im.get("width"), im.get("height"))
                      for im in data["images"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{json_path}: malformed image or category entry ({type(exc).__name__}: {exc}); images "
                         f"need id and file_name, categories need id") from None
    if not cats:
        raise InputError(f"{json_path}: no categories")
    cat_ids = [c for c, _ in cats]
    if len(set(cat_ids)) != len(cat_ids):
        raise InputError(f"{json_path}: duplicate category ids")
    index_of = {c: i for i, c in enumerate(cat_ids)}
    folder = Path(images_dir) if images_dir is not None else _guess_coco_images_dir(
        json_path, [f for _, f, _, _ in raw_images], split)
    if check_images:
        missing = [f for _, f, _, _ in raw_images if not (folder / f).is_file()]
        if missing:
            raise _missing_images_error(missing, folder, len(raw_images))
    images = []
    for iid, fname, w, h in raw_images:
        if w is None or h is None:
            w, h = _image_size(folder / fname)
        images.append(ImageRecord(iid, fname, folder / fname, int(w), int(h)))
    known = {im.id for im in images}
    per_image: dict[int, list] = {}
    for k, ann in enumerate(data["annotations"]):
        try:
            iid, cid = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{json_path}: annotation #{k} is malformed ({type(exc).__name__}: {exc}); expected "
                             f"image_id, category_id and bbox [x, y, w, h]") from None
        if iid not in known:
            raise InputError(f"{json_path}: annotation #{k} refers to image_id {iid}, which is not in 'images'")
        if cid not in index_of:
            raise InputError(f"{json_path}: annotation #{k} has category_id {cid}, not one of the categories "
                             f"{choices_text(cat_ids)}")
        area = float(ann.get("area", w * h))
        per_image.setdefault(iid, []).append((x, y, x + w, y + h, index_of[cid], bool(ann.get("iscrowd", 0)), area))
    annotations = {}
    for iid, rows in per_image.items():
        a = np.asarray([r[:4] for r in rows], np.float64)
        annotations[iid] = GroundTruth(a, np.asarray([r[4] for r in rows], np.int64),
                                       np.asarray([r[5] for r in rows], bool), np.asarray([r[6] for r in rows]))
    return Dataset(Task.DETECT, images, annotations, [n for _, n in cats], cat_ids, "coco", json_path)


# ---------------------------------------------------------------------------------------------------------- YOLO
def _names_from_yaml(value: object, where: Path) -> list[str]:
    if isinstance(value, dict):
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'names' keys must be class indices 0..N-1") from None
        if keys != list(range(len(keys))):
            raise InputError(f"{where}: 'names' keys must be 0..{len(keys) - 1} without gaps, got {keys}")
        return [str(value[k] if k in value else value[str(k)]) for k in keys]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise InputError(f"{where}: 'names' must be a list or a {{index: name}} mapping")


def _labels_dir_for(images_dir: Path) -> Path:
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir.parent / "labels" / images_dir.name


def load_yolo(path: str | Path, split: str = "val", names: Sequence[str] | None = None,
              task: Task | str | None = None) -> Dataset:
    """Read an ultralytics dataset: a ``data.yaml`` (or a folder holding one, or an ``images/`` + ``labels/`` folder).

    Label lines are ``cls cx cy w h`` (detect) or ``cls x1 y1 x2 y2 x3 y3 x4 y4`` (OBB), normalised to [0, 1].
    """
    import yaml

    path = Path(path)
    yaml_path = path if path.suffix in (".yaml", ".yml") else path / "data.yaml"
    if yaml_path.is_file():
        try:
            cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{yaml_path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(cfg, dict):
            raise InputError(f"{yaml_path}: expected a mapping with 'names' and '{split}'")
        root = Path(cfg.get("path") or yaml_path.parent)
        if not root.is_absolute():
            root = (yaml_path.parent / root).resolve()
            if not root.is_dir():
                root = yaml_path.parent
        if split not in cfg:
            valid = [k for k in ("train", "val", "test") if k in cfg]
            raise InputError(f"{yaml_path}: no split {split!r}; valid choices: {choices_text(valid)}")
        images_dir = Path(cfg[split])
        images_dir = images_dir if images_dir.is_absolute() else root / images_dir
        if names is None and "names" in cfg:
            names = _names_from_yaml(cfg["names"], yaml_path)
        where = yaml_path
    else:
        if not path.is_dir():
            raise InputError(f"dataset not found: {path}")
        images_dir = path / "images" / split if (path / "images" / split).is_dir() else path / "images"
        where = path
    files = list_images(images_dir)
    if not files:
        raise InputError(f"no images in {images_dir} (suffixes {', '.join(IMAGE_SUFFIXES)})")
    labels_dir = _labels_dir_for(images_dir)
    rows_per_file, ncols = [], set()
    for f in files:
        lab = labels_dir / f.relative_to(images_dir).with_suffix(".txt")
        rows = []
        if lab.is_file():
            for ln, line in enumerate(lab.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    vals = [float(v) for v in line.split()]
                except ValueError:
                    raise InputError(f"{lab}:{ln}: not numbers: {line.strip()!r}") from None
                if len(vals) not in (5, 9) or vals[0] != int(vals[0]) or vals[0] < 0:
                    raise InputError(f"{lab}:{ln}: expected 'class cx cy w h' (5 values) or 'class x1 y1 .. x4 y4' "
                                     f"(9 values) with an integer class >= 0, got {line.strip()!r}")
                if any(v < -0.5 or v > 1.5 for v in vals[1:]):
                    raise InputError(f"{lab}:{ln}: coordinates must be normalised to [0, 1], got {line.strip()!r}")
                ncols.add(len(vals))
                rows.append((lab, ln, vals))
        rows_per_file.append(rows)
    if len(ncols) > 1:
        raise InputError(f"{labels_dir}: mixed detect (5-value) and OBB (9-value) label lines")
    found_task = Task.OBB if ncols == {9} else Task.DETECT
    task = Task.parse(task) if task is not None else found_task
    if ncols and task is not found_task:
        raise InputError(f"{labels_dir}: labels are {found_task.value} but task {task.value} was requested")
    max_cls = max((int(r[2][0]) for rows in rows_per_file for r in rows), default=-1)
    if names is None:
        names = [f"class{i}" for i in range(max_cls + 1)] or ["class0"]
    names = list(names)
    images, annotations = [], {}
    for iid, (f, rows) in enumerate(zip(files, rows_per_file)):
        image = _label_file_image(iid, f, images_dir)
        images.append(image)
        if not rows:
            continue
        w, h = image.width, image.height
        for lab, ln, vals in rows:
            if int(vals[0]) >= len(names):
                raise InputError(f"{lab}:{ln}: class {int(vals[0])} out of range: {where} defines "
                                 f"{len(names)} classes (0..{len(names) - 1})")
        cls = np.asarray([int(r[2][0]) for r in rows], np.int64)
        v = np.asarray([r[2][1:] for r in rows], np.float64)
        if task is Task.OBB:
            boxes = polygons_to_xywhr(v * np.tile([w, h], 4))
            areas = boxes[:, 2] * boxes[:, 3]
        else:
            cx, cy, bw, bh = v[:, 0] * w, v[:, 1] * h, v[:, 2] * w, v[:, 3] * h
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
            areas = bw * bh
        annotations[iid] = GroundTruth(boxes, cls, np.zeros(len(cls), bool), areas)
    return Dataset(task, images, annotations, names, list(range(len(names))), "yolo", where)


# ---------------------------------------------------------------------------------------------------------- DOTA
def load_dota(root: str | Path, names: Sequence[str] | None = None, images_dir: str | Path | None = None,
              labels_dir: str | Path | None = None) -> Dataset:
    """Read DOTA-style labels: one txt per image, lines ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult`` in pixels
    (``imagesource:`` / ``gsd:`` header lines skipped). Layout: ``root/images`` + ``root/labelTxt``."""
    root = Path(root)
    images_dir = Path(images_dir) if images_dir else root / "images"
    labels_dir = Path(labels_dir) if labels_dir else root / "labelTxt"
    if not labels_dir.is_dir():
        raise InputError(f"DOTA label folder not found: {labels_dir}")
    files = list_images(images_dir)
    if not files:
        raise InputError(f"no images in {images_dir}")
    parsed = []
    for f in files:
        lab = labels_dir / f.relative_to(images_dir).with_suffix(".txt")
        rows = []
        if lab.is_file():
            for ln, line in enumerate(lab.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts or parts[0].startswith(("imagesource", "gsd")):
                    continue
                if len(parts) not in (9, 10):
                    raise InputError(f"{lab}:{ln}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]', "
                                     f"got {line.strip()!r}")
                try:
                    pts = [float(v) for v in parts[:8]]
                    difficult = bool(int(parts[9])) if len(parts) == 10 else False
                except ValueError:
                    raise InputError(f"{lab}:{ln}: coordinates must be numbers, got {line.strip()!r}") from None
                rows.append((pts, parts[8], difficult, lab, ln))
        parsed.append(rows)
    seen = sorted({r[1] for rows in parsed for r in rows})
    names = list(names) if names is not None else seen
    index_of = {n: i for i, n in enumerate(names)}
    images, annotations = [], {}
    for iid, (f, rows) in enumerate(zip(files, parsed)):
        images.append(_label_file_image(iid, f, images_dir))
        if not rows:
            continue
        for _, cname, _, lab, ln in rows:
            if cname not in index_of:
                raise InputError(f"{lab}:{ln}: unknown category {cname!r}; valid choices: {choices_text(names)}")
        boxes = polygons_to_xywhr(np.asarray([r[0] for r in rows]))
        annotations[iid] = GroundTruth(boxes, np.asarray([index_of[r[1]] for r in rows], np.int64),
                                       np.asarray([r[2] for r in rows], bool), boxes[:, 2] * boxes[:, 3])
    return Dataset(Task.OBB, images, annotations, names, list(range(len(names))), "dota", root)


# ---------------------------------------------------------------------------------------------------------- any
def _coco_json_in(folder: Path, split: str) -> Optional[Path]:
    for c in (folder / f"instances_{split}.json", folder / "annotations" / f"instances_{split}.json"):
        if c.is_file():
            return c
    jsons = sorted(folder.glob("*.json")) + sorted((folder / "annotations").glob("*.json"))
    jsons = [j for j in jsons if j.name != "synth.json"]  # the synthetic generator's manifest is no COCO file
    return jsons[0] if len(jsons) == 1 else None


def load_dataset(path: str | Path, split: str = "val", fmt: str = "auto", task: Task | str | None = None,
                 names: Sequence[str] | None = None, images_dir: str | Path | None = None) -> Dataset:
    """Read any supported dataset. ``fmt="auto"`` picks: a ``.json`` file -> COCO; a ``.yaml`` -> YOLO; a folder ->
    COCO json (``instances_<split>.json``) for detect, else ``data.yaml`` / ``images``+``labels`` (YOLO / OBB),
    else ``labelTxt`` (DOTA)."""
    if fmt not in FORMATS:
        raise ConfigError(f"invalid dataset format {fmt!r}; valid choices: {choices_text(FORMATS)}")
    path = Path(path)
    want = Task.parse(task) if task is not None else None
    if not path.exists():
        raise InputError(f"dataset not found: {path}")
    if fmt == "auto":
        if path.is_file():
            fmt = "coco" if path.suffix == ".json" else "yolo" if path.suffix in (".yaml", ".yml") else ""
            if not fmt:
                raise InputError(f"{path}: expected a COCO .json, a data .yaml or a dataset folder")
        elif want is not Task.OBB and _coco_json_in(path, split):
            fmt = "coco"
        elif (path / "data.yaml").is_file() or (path / "labels").is_dir():
            fmt = "yolo"
        elif (path / "labelTxt").is_dir() or (path / split / "labelTxt").is_dir() or (path / "dota" / split).is_dir():
            fmt = "dota"
        else:
            raise InputError(f"{path}: no dataset found (looked for instances_{split}.json, data.yaml, labels/, "
                             f"labelTxt/)")
    if fmt == "coco":
        json_path = path if path.is_file() else _coco_json_in(path, split)
        if json_path is None:
            raise InputError(f"{path}: no COCO json (instances_{split}.json) found")
        ds = load_coco(json_path, images_dir, split)
    elif fmt == "yolo":
        ds = load_yolo(path, split, names, want)
    elif (path / "dota" / split).is_dir():  # trtalign's synthetic layout: dota/<split>/*.txt + images/<split>/
        if names is None and (path / "data.yaml").is_file():
            names = load_yolo(path, split).names
        ds = load_dota(path, names, images_dir or path / "images" / split, path / "dota" / split)
    else:
        root = path / split if (path / split / "labelTxt").is_dir() else path
        ds = load_dota(root, names, images_dir)
    if want is not None and ds.task is not want:
        raise InputError(f"{path}: a {ds.task.value} dataset, but task {want.value} was requested")
    return ds


def category_map(model_names: Iterable[str], dataset: Dataset) -> np.ndarray:
    """Model class index -> dataset class index: by name when every model name is a dataset name, else by position
    when the class counts agree, else by name with absent classes mapped to -1 (their detections are dropped).
    Raises when nothing matches."""
    model_names = [str(n) for n in model_names]
    index = {str(n): i for i, n in enumerate(dataset.names)}
    if len(model_names) == dataset.num_classes and not set(model_names) <= set(index):
        return np.arange(len(model_names), dtype=np.int64)  # generic names (class0, ...): by position
    out = np.asarray([index.get(n, -1) for n in model_names], np.int64)
    if (out < 0).all():
        raise InputError(f"the model's {len(model_names)} classes and the dataset's {dataset.num_classes} classes "
                         f"share no name (model: {model_names[:5]}..., dataset: {list(dataset.names)[:5]}...)")
    return out
