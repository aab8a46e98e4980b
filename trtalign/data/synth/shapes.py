"""Polygon outlines of the object classes and the distractors, in a local unit frame.

Each builder returns ``(outer, holes)``: float64 arrays of (x, y) vertices centred near the origin and spanning about
[-0.5, 0.5] on both axes (x is the object's long axis). The caller scales, rotates and translates them.
"""

from __future__ import annotations

import numpy as np

Polys = tuple[np.ndarray, list[np.ndarray]]


def _ellipse(n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([0.5 * np.cos(t), 0.5 * np.sin(t)], axis=1)


def ellipse(rng: np.random.Generator) -> Polys:
    return _ellipse(), []


def triangle(rng: np.random.Generator) -> Polys:
    apex = rng.uniform(-0.35, 0.35)
    return np.array([[-0.5, 0.5], [0.5, 0.5], [apex, -0.5]]) if rng.random() < 0.5 else \
        np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, apex]]), []


def star(rng: np.random.Generator) -> Polys:
    points = int(rng.integers(5, 7))
    inner = rng.uniform(0.38, 0.52)
    t = np.arange(2 * points) * np.pi / points + rng.uniform(0, np.pi)
    r = np.where(np.arange(2 * points) % 2 == 0, 0.5, 0.5 * inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1), []


def cross(rng: np.random.Generator) -> Polys:
    a = rng.uniform(0.11, 0.19)  # half arm thickness
    b = rng.uniform(0.11, 0.19)
    pts = [(-0.5, -b), (-a, -b), (-a, -0.5), (a, -0.5), (a, -b), (0.5, -b),
           (0.5, b), (a, b), (a, 0.5), (-a, 0.5), (-a, b), (-0.5, b)]
    return np.array(pts, dtype=np.float64), []


def ring(rng: np.random.Generator) -> Polys:
    inner = rng.uniform(0.45, 0.7)
    return _ellipse(), [_ellipse() * inner]


def striped_rect(rng: np.random.Generator) -> Polys:
    return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]), []


def hexagon(rng: np.random.Generator) -> Polys:
    t = np.arange(6) * np.pi / 3
    return np.stack([0.5 * np.cos(t), 0.5 * np.sin(t) / np.sin(np.pi / 3)], axis=1), []


def arrow(rng: np.random.Generator) -> Polys:
    s = rng.uniform(0.12, 0.22)  # half shaft thickness
    a = rng.uniform(-0.05, 0.2)  # where the head starts
    pts = [(-0.5, -s), (a, -s), (a, -0.5), (0.5, 0.0), (a, 0.5), (a, s), (-0.5, s)]
    return np.array(pts, dtype=np.float64), []


#: builders in class-id order (matches params.CLASS_NAMES)
CLASS_BUILDERS = (ellipse, triangle, star, cross, ring, striped_rect, hexagon, arrow)


def blob(rng: np.random.Generator) -> Polys:
    """An irregular polygon: a distractor that is none of the classes."""
    n = int(rng.integers(5, 10))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.2, 0.5, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1), []


def plain_rect(rng: np.random.Generator) -> Polys:
    """A plain rectangle (a striped_rect without stripes): a confusable distractor."""
    return striped_rect(rng)


def half_disc(rng: np.random.Generator) -> Polys:
    t = np.linspace(0, np.pi, 20)
    return np.stack([0.5 * np.cos(t), 0.5 * np.sin(t) - 0.25], axis=1), []


DISTRACTOR_BUILDERS = (blob, blob, plain_rect, half_disc)


def jitter(poly: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    if amount <= 0:
        return poly
    return poly + rng.uniform(-amount, amount, poly.shape)
