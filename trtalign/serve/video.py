"""Video / stream mode: frames from a file, camera, RTSP URL or GStreamer pipeline -> detections.

Sources (``--source``):
    file.mp4 (any container OpenCV's FFmpeg reads)    rtsp://... / http(s)://... (FFmpeg backend)
    /dev/video0 or 0 (a V4L2 camera)                   a GStreamer pipeline string, recognised by ``!`` and ending in
                                                       ``appsink`` (needs OpenCV built with GStreamer, as on JetPack)
Outputs: JSON lines (one object per frame) and/or an annotated video. Both are written to a temporary file next to
the target and renamed when the run ends (also after Ctrl+C or ``stop``), so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.errors import InputError, UnsupportedError
from trtalign.core.io import atomic_path
from trtalign.core.logging import get_logger
from trtalign.serve.predictor import OutputFilter, Predictor, detections_payload

log = get_logger(__name__)

FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


@dataclass
class VideoResult:
    source: str
    frames: int
    detections: int
    seconds: float
    jsonl: str | None
    out: str | None
    stopped_early: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"source": self.source, "frames": self.frames, "detections": self.detections,
                "seconds": round(self.seconds, 4), "fps": round(self.fps, 2), "jsonl": self.jsonl, "out": self.out,
                "stopped_early": self.stopped_early}

    def summary(self) -> str:
        written = ", ".join(p for p in (self.jsonl, self.out) if p) or "nothing written"
        return (f"{self.frames} frames from {self.source} in {self.seconds:.2f} s ({self.fps:.1f} fps), "
                f"{self.detections} detections -> {written}")


def source_kind(source: str) -> str:
    """``gstreamer`` | ``stream`` | ``camera`` | ``file`` for a ``--source`` string."""
    s = source.strip()
    if "!" in s:
        return "gstreamer"
    if "://" in s:
        return "stream"
    if s.isdigit() or s.startswith("/dev/video"):
        return "camera"
    return "file"


def open_capture(source: str) -> Any:
    """An opened ``cv2.VideoCapture`` for ``source``, or an InputError / UnsupportedError that says why not."""
    import cv2

    kind = source_kind(source)
    if kind == "gstreamer":
        if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
            raise UnsupportedError("this OpenCV build has no GStreamer backend, so pipeline strings cannot be opened; "
                                   "on Jetson use the system OpenCV (apt python3-opencv) or a file/rtsp/camera source")
        cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    elif kind == "stream":
        scheme = source.split("://", 1)[0].lower()
        if scheme not in ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp"):
            raise InputError(f"--source {source!r}: unsupported URL scheme {scheme!r}; valid: rtsp, rtsps, rtmp, "
                             f"http, https, udp, tcp")
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    elif kind == "camera":
        index = int(source) if source.isdigit() else source
        if isinstance(index, str) and not Path(index).exists():
            raise InputError(f"camera {source} does not exist")
        cap = cv2.VideoCapture(index, cv2.CAP_V4L2) if os.name == "posix" else cv2.VideoCapture(index)
    else:
        if not Path(source).is_file():
            raise InputError(f"--source {source!r}: no such file (give a video file, rtsp://..., /dev/videoN or a "
                             f"GStreamer pipeline ending in appsink)")
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise InputError(f"cannot open {kind} source {source!r} with OpenCV")
    return cap


def iter_frames(cap: Any, max_frames: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, timestamp in seconds, BGR frame) until the source ends or ``max_frames`` were read."""
    import cv2

    i = 0
    while max_frames is None or i < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield i, float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0, frame
        i += 1


def draw_detections(frame: np.ndarray, det: Detections, names: list | None = None) -> np.ndarray:
    """A copy of ``frame`` with boxes (polygons for rotated boxes) and ``class score`` labels."""
    import cv2

    out = frame.copy()
    corners = det.corners()
    for i in range(len(det)):
        cid = int(det.class_ids[i])
        color = tuple(int(c) for c in ((37 * cid) % 256, (17 * cid + 100) % 256, (91 * cid + 50) % 256))
        pts = np.round(corners[i]).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, color, 2)
        label = f"{names[cid] if names and 0 <= cid < len(names) else cid} {det.scores[i]:.2f}"
        x, y = int(pts[:, 0, 0].min()), int(pts[:, 0, 1].min())
        cv2.putText(out, label, (x, max(y - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return out


@contextlib.contextmanager
def _video_writer(path: Path, fps: float, size: tuple[int, int]) -> Iterator[Any]:
    """A cv2.VideoWriter whose file appears at ``path`` only when the block ends without an error."""
    import cv2

    suffix = path.suffix.lower()
    if suffix not in FOURCC:
        raise InputError(f"--out {path.name}: unsupported video container {suffix!r}; valid: {', '.join(FOURCC)}")
    with atomic_path(path) as tmp:
        work = tmp.with_name(tmp.name + suffix)  # OpenCV picks the container from the extension
        writer = cv2.VideoWriter(str(work), cv2.VideoWriter_fourcc(*FOURCC[suffix]), fps, size)
        try:
            if not writer.isOpened():
                raise UnsupportedError(f"OpenCV cannot write {suffix} video here (codec {FOURCC[suffix]})")
            yield writer
            writer.release()
            os.replace(work, tmp)
        finally:
            writer.release()
            with contextlib.suppress(OSError):
                work.unlink()


def run_video(predictor: Predictor, source: str, jsonl: str | os.PathLike | None = None,
              out: str | os.PathLike | None = None, max_frames: int | None = None,
              stop: threading.Event | None = None, output_filter: OutputFilter | None = None) -> VideoResult:
    """Detect on every frame of ``source``; write JSON lines and/or an annotated video (both atomically).
    ``output_filter`` (default: score >= 0.25, at most 300 per frame) filters the model's NMS output."""
    import cv2

    if max_frames is not None and max_frames < 1:
        raise InputError(f"--max-frames must be >= 1, got {max_frames}")
    output_filter = output_filter or OutputFilter()
    cap = open_capture(source)
    start = time.perf_counter()
    frames = total = 0
    stopped = False
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) or 30.0
        with contextlib.ExitStack() as stack:
            lines = stack.enter_context(atomic_path(jsonl)) if jsonl else None
            fh = stack.enter_context(open(lines, "w", encoding="utf-8")) if lines else None
            writer = None
            try:
                for index, ts, frame in iter_frames(cap, max_frames):
                    if stop is not None and stop.is_set():
                        stopped = True
                        break
                    det = output_filter.apply(predictor.predict([frame])[0])
                    frames += 1
                    total += len(det)
                    if fh is not None:
                        record = detections_payload(det, predictor.info, {"frame": index, "time_s": round(ts, 4)},
                                                    output_filter=output_filter)
                        fh.write(json.dumps(record) + "\n")
                    if out:
                        if writer is None:
                            h, w = frame.shape[:2]
                            writer = stack.enter_context(_video_writer(Path(out), fps, (w, h)))
                        writer.write(draw_detections(frame, det, predictor.info.names))
            except KeyboardInterrupt:  # keep what was processed: the files are still completed and renamed
                stopped = True
                log.warning("interrupted after %d frames; finishing the output files", frames)
            if frames == 0:  # raised inside the block: no empty output file is left behind
                raise InputError(f"no frames could be read from {source!r}")
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        cap.release()
    return VideoResult(source=source, frames=frames, detections=total, seconds=time.perf_counter() - start,
                       jsonl=str(jsonl) if jsonl else None, out=str(out) if out else None, stopped_early=stopped)
