"""Label formats of the synthetic dataset: COCO json, ultralytics YOLO / OBB txt, DOTA txt and data.yaml.

Pure functions from :class:`~trtalign.data.synth.render.SynthObject` lists to text or dicts; the caller writes them
(atomically, through ``trtalign.core.io``).
"""

from __future__ import annotations

from typing import Sequence

from trtalign.data.synth.render import SynthObject


def yolo_label_text(objects: Sequence[SynthObject], imgsz: int, task: str) -> str:
    """ultralytics txt: ``cls cx cy w h`` (detect) or ``cls x1 y1 x2 y2 x3 y3 x4 y4`` (obb), normalised to [0, 1]."""
    lines = []
    for obj in objects:
        if task == "obb":
            coords = [min(max(v / imgsz, 0.0), 1.0) for corner in obj.corners for v in corner]
            lines.append(f"{obj.class_id} " + " ".join(f"{v:.6f}" for v in coords))
        else:
            x, y, w, h = obj.box
            lines.append(f"{obj.class_id} {(x + w / 2) / imgsz:.6f} {(y + h / 2) / imgsz:.6f} "
                         f"{w / imgsz:.6f} {h / imgsz:.6f}")
    return "".join(line + "\n" for line in lines)


def dota_label_text(objects: Sequence[SynthObject], names: Sequence[str]) -> str:
    """DOTA v1 style: ``x1 y1 x2 y2 x3 y3 x4 y4 classname difficult`` in pixels, one object a line."""
    return "".join(" ".join(f"{v:.1f}" for corner in obj.corners for v in corner) + f" {names[obj.class_id]} 0\n"
                   for obj in objects)


def coco_dataset(images: Sequence[dict], objects: Sequence[Sequence[SynthObject]], names: Sequence[str],
                 task: str, description: str) -> dict:
    """A COCO instances dict. ``images[i]`` has ``file_name``, ``width``, ``height``; image ids start at 1, category
    ids at 1 (YOLO class id + 1). OBB annotations carry ``obb`` = [cx, cy, w, h, theta] and the corner polygon as
    ``segmentation``; ``bbox`` is then the corners' axis-aligned box clipped to the image."""
    coco_images, annotations = [], []
    ann_id = 1
    for image_id, (info, objs) in enumerate(zip(images, objects), start=1):
        coco_images.append({"id": image_id, **info})
        for obj in objs:
            x, y, w, h = (round(v, 2) for v in obj.box)
            ann = {"id": ann_id, "image_id": image_id, "category_id": obj.class_id + 1, "bbox": [x, y, w, h],
                   "area": round(obj.area, 2), "iscrowd": 0}
            if task == "obb":
                ann["segmentation"] = [[round(v, 2) for corner in obj.corners for v in corner]]
                ann["obb"] = [round(v, 6) for v in obj.obb]
            else:
                ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            ann["visible"] = obj.visible
            annotations.append(ann)
            ann_id += 1
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(names)]
    return {"info": {"description": description, "version": "1"}, "licenses": [], "images": coco_images,
            "annotations": annotations, "categories": categories}


def data_yaml_text(names: Sequence[str], task: str, has_train: bool) -> str:
    """ultralytics data.yaml with paths relative to the yaml's folder (no ``path`` key: ultralytics then uses the
    folder of the yaml file, so the dataset can be moved)."""
    lines = [f"# trtalign synthetic dataset, task: {task}",
             f"train: images/{'train' if has_train else 'val'}",
             "val: images/val",
             f"nc: {len(names)}",
             "names:"]
    lines += [f"  {i}: {name}" for i, name in enumerate(names)]
    return "\n".join(lines) + "\n"
