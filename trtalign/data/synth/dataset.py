"""Write a whole synthetic dataset: images, ultralytics labels, COCO json, DOTA txt (obb), data.yaml, manifest.

Image ``i`` of split ``s`` depends only on (seed, s, i, params): a val split of 20 images is exactly the first 20
images of a val split of 500 drawn with the same seed and parameters.

Layout under ``out``::

    images/{train,val}/000000.jpg     labels/{train,val}/000000.txt     (ultralytics detect or OBB txt)
    annotations/instances_{train,val}.json                              (COCO, category ids from 1)
    dota/{train,val}/000000.txt       (obb task only)
    data.yaml                         synth.json (parameters, counts, sha256 of every file)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trtalign.core.errors import InputError
from trtalign.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_bytes
from trtalign.core.logging import get_logger, progress
from trtalign.data.synth.params import CLASS_NAMES, SynthParams
from trtalign.data.synth.render import SynthObject, encode_image, render_image, sample_photos
from trtalign.data.synth.writers import coco_dataset, data_yaml_text, dota_label_text, yolo_label_text

log = get_logger(__name__)

SPLITS = ("train", "val")
_SPLIT_IDS = {"train": 0, "val": 1}
MANIFEST = "synth.json"
_OWNED_DIRS = ("images", "labels", "annotations", "dota")


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws image ``index`` of ``split``: independent of every other image."""
    return np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])


def render_split_image(params: SynthParams, seed: int, split: str, index: int) -> tuple[np.ndarray, list[SynthObject]]:
    """Image ``index`` of ``split`` (uint8 BGR) and its labels, exactly as :func:`generate_dataset` writes it."""
    return render_image(params, image_rng(seed, split, index))


@dataclass
class SynthResult:
    """What :func:`generate_dataset` wrote."""

    out: Path
    params: SynthParams
    seed: int
    counts: dict[str, int]
    instances: dict[str, int]
    data_yaml: Path
    coco: dict[str, Path]
    seconds: float
    files: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def images_per_second(self) -> float:
        return sum(self.counts.values()) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "task": self.params.task, "seed": self.seed, "params": self.params.to_dict(),
                "counts": dict(self.counts), "instances": dict(self.instances), "data_yaml": str(self.data_yaml),
                "coco": {k: str(v) for k, v in self.coco.items()}, "seconds": round(self.seconds, 3),
                "images_per_second": round(self.images_per_second, 1)}


def _check_out(out: Path) -> None:
    """``out`` must be new, empty, or an earlier complete output (marked by its manifest, written last)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"synth output must be a directory, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"synth output directory {out} is not empty and holds no {MANIFEST}: expected an empty "
                         "or new directory, or one written by 'trtalign data synth'; remove it (rm -r) or choose "
                         "another --out")


def _publish(staging: Path, out: Path) -> None:
    """Move the finished dataset from ``staging`` to ``out``. A new or empty ``out`` is one rename; an earlier
    output is swapped out by two renames, and files in it that synth does not write (the user's own) are kept."""
    if not out.exists():
        os.replace(staging, out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".synth-old", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    os.replace(staging, out)
    for entry in old.iterdir():
        if entry.name not in _OWNED_DIRS and entry.name not in (MANIFEST, "data.yaml"):
            os.replace(entry, out / entry.name)
    shutil.rmtree(old, ignore_errors=True)


def _encoded(job: tuple[SynthParams, int, str, int]) -> tuple[bytes, list[SynthObject]]:
    params, seed, split, index = job
    img, objs = render_split_image(params, seed, split, index)
    return encode_image(img, params), objs


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _encoded_images(params: SynthParams, seed: int, split: str, n: int, workers: int):
    jobs = ((params, seed, split, i) for i in range(n))
    if workers <= 1:
        yield from map(_encoded, jobs)
        return
    import multiprocessing

    # the workers ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and only this process stops
    # the run (leaving the pool terminates them)
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_sigint) as pool:
        yield from pool.imap(_encoded, jobs, chunksize=8)


def generate_dataset(out: str | Path, params: SynthParams | None = None, train: int = 0, val: int = 100,
                     seed: int = 0, show_progress: bool | None = None, workers: int = 1) -> SynthResult:
    """Draw ``train`` + ``val`` images with ``params`` and ``seed`` into ``out`` (see the module doc for the layout).

    Same arguments => byte-identical files (on a given OpenCV build), whatever ``workers`` (processes that render;
    images are independent, files are written in order by this process). ``out`` must be new, empty, or an earlier
    output of this function (whose files are replaced; other files in it are kept).

    Everything is drawn into a hidden sibling folder that is renamed onto ``out`` at the end: an interrupted run
    leaves ``out`` as it was (and no staging folder).

    Raises:
        InputError: bad counts or seed; ``out`` a file, or a non-empty folder that is no earlier synth output.
    """
    params = params or SynthParams()
    if train < 0 or val < 0 or train + val == 0:
        raise InputError(f"synth needs train >= 0, val >= 0 and at least one image, got train={train}, val={val}")
    if val == 0:
        raise InputError("synth needs val >= 1 (data.yaml and the COCO ground truth point at the val split)")
    if not 0 <= seed < 2**63:
        raise InputError(f"synth seed must be in [0, 2**63), got {seed}")
    out = Path(out)
    _check_out(out)
    if out.resolve() == Path.cwd().resolve():
        raise InputError("synth output must be a named folder, not the current directory (it is replaced by a "
                         "rename at the end)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".synth-tmp", dir=out.parent))
    try:
        mask = os.umask(0)
        os.umask(mask)
        staging.chmod(0o777 & ~mask)  # mkdtemp's 0700 would become the dataset folder's mode
        result = _generate_into(staging, params, train, val, seed, show_progress, workers)
        _publish(staging, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        raise
    result.out, result.data_yaml = out, out / "data.yaml"
    result.coco = {split: out / path.relative_to(staging) for split, path in result.coco.items()}
    return result


def _generate_into(out: Path, params: SynthParams, train: int, val: int, seed: int, show_progress: bool | None,
                   workers: int) -> SynthResult:
    if params.photo_background_prob > 0 and not sample_photos():
        log.warning("no sample photographs found (matplotlib's sample_data): backgrounds are procedural only")
    ext = params.image_format
    start = time.perf_counter()
    counts, instances, coco_paths, files = {}, {}, {}, {}
    for split, n in (("train", train), ("val", val)):
        if n == 0:
            continue
        infos, all_objs = [], []
        encoded = _encoded_images(params, seed, split, n, workers)
        for i, (data, objs) in enumerate(progress(encoded, total=n, desc=f"synth {split}", unit="img",
                                                  disable=None if show_progress is None else not show_progress)):
            stem = f"{i:06d}"
            rel = f"images/{split}/{stem}.{ext}"
            atomic_write_bytes(out / rel, data, fsync=False)
            files[rel] = sha256_bytes(data)
            text = yolo_label_text(objs, params.imgsz, params.task)
            rel = f"labels/{split}/{stem}.txt"
            atomic_write_text(out / rel, text, fsync=False)
            files[rel] = sha256_bytes(text.encode())
            if params.task == "obb":
                text = dota_label_text(objs, CLASS_NAMES)
                rel = f"dota/{split}/{stem}.txt"
                atomic_write_text(out / rel, text, fsync=False)
                files[rel] = sha256_bytes(text.encode())
            infos.append({"file_name": f"{stem}.{ext}", "width": params.imgsz, "height": params.imgsz})
            all_objs.append(objs)
        coco = coco_dataset(infos, all_objs, CLASS_NAMES, params.task,
                            f"trtalign synthetic {params.task} dataset, split {split}, seed {seed}; "
                            f"images in images/{split}")
        coco_paths[split] = out / "annotations" / f"instances_{split}.json"
        atomic_write_json(coco_paths[split], coco)
        files[f"annotations/instances_{split}.json"] = sha256_bytes(coco_paths[split].read_bytes())
        counts[split] = n
        instances[split] = sum(len(o) for o in all_objs)
    yaml_text = data_yaml_text(CLASS_NAMES, params.task, has_train=train > 0)
    atomic_write_text(out / "data.yaml", yaml_text)
    files["data.yaml"] = sha256_bytes(yaml_text.encode())
    seconds = time.perf_counter() - start
    result = SynthResult(out, params, seed, counts, instances, out / "data.yaml", coco_paths, seconds, files)
    manifest = {"generator": "trtalign.data.synth", "seed": seed, "params": params.to_dict(), "counts": counts,
                "instances": instances, "names": list(CLASS_NAMES),
                "backgrounds": [name for name, _ in sample_photos()] if params.photo_background_prob > 0 else [],
                "files": dict(sorted(files.items()))}
    atomic_write_json(out / MANIFEST, manifest)
    return result
