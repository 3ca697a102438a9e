"""Drawing primitives of the shapes set: outlines, textures, cluttered backgrounds."""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidInput

__all__ = ["background", "hsv_to_rgb", "object_fill", "shape_mask"]


def shape_mask(kind: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Pixels of a shape with circumradius ``r`` in its own rotated coordinates."""
    if kind == "disc":
        return u * u + v * v <= r * r
    if kind == "ring":
        d2 = u * u + v * v
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if kind == "square":
        half = r / math.sqrt(2.0)
        return np.maximum(np.abs(u), np.abs(v)) <= half
    if kind == "triangle":  # equilateral: inside all three edges, each r/2 from the centre
        inside = np.ones_like(u, dtype=bool)
        for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3):
            inside &= u * math.cos(angle) + v * math.sin(angle) <= r / 2
        return inside
    if kind == "cross":
        w = 0.32 * r
        au, av = np.abs(u), np.abs(v)
        return ((au <= w) & (av <= r)) | ((av <= w) & (au <= r))
    raise InvalidInput(f"shape: unknown kind {kind!r}")  # pragma: no cover - names checked


def object_fill(
    rng: np.random.Generator,
    u: np.ndarray,
    v: np.ndarray,
    size: int,
    strength: float,
    behind: float,
) -> np.ndarray:
    """(H, W, 3) fill for an object: solid, stripes, checks or speckle, random colours.

    ``strength`` blends the second colour in: 0 is a solid fill, 1 full contrast.
    The main colour's brightness is at least 0.3 away from ``behind`` (the
    background's, in [0, 1]), so the outline is always visible: a shape that
    melts into the background would be noise in the labels.
    """
    hue = rng.random()
    if behind < 0.5:
        value = rng.uniform(min(behind + 0.3, 1.0), 1.0)
    else:
        value = rng.uniform(0.05, max(behind - 0.3, 0.05))
    base = hsv_to_rgb(hue, rng.uniform(0.5, 1.0), value)
    other = hsv_to_rgb(
        (hue + rng.uniform(0.25, 0.75)) % 1.0, rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.9)
    )
    other = base + (other - base) * strength
    kind = rng.integers(4)
    period = rng.uniform(3.0, 7.0) * size / 64
    if kind == 0:
        t = np.zeros_like(u)
    elif kind == 1:
        a = rng.uniform(0, math.pi)
        t = (np.sin((u * math.cos(a) + v * math.sin(a)) * 2 * math.pi / period) > 0).astype(
            np.float32
        )
    elif kind == 2:
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    else:
        t = (rng.random(u.shape) < 0.3).astype(np.float32)
    return base[None, None, :] * (1 - t[..., None]) + other[None, None, :] * t[..., None]


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) as float RGB in [0, 255]."""
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.array(rgb, dtype=np.float32) * 255.0


def background(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, size: int, clutter: int
) -> np.ndarray:
    """A gradient between two muted colours, with ``clutter`` strokes and dots on top."""
    c0 = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.8))
    c1 = hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.8))
    a = rng.uniform(0, 2 * math.pi)
    t = (xx * math.cos(a) + yy * math.sin(a)) / size
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    scale = size / 64
    for _ in range(clutter):
        colour = hsv_to_rgb(rng.random(), rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0))
        opacity = rng.uniform(0.4, 0.9)
        if rng.random() < 0.6:  # a short stroke: distance to a segment
            p0 = rng.uniform(0, size, 2)
            ang = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(5, 14) * scale
            d = np.array([math.cos(ang), math.sin(ang)])
            px, py = xx - p0[0], yy - p0[1]
            s = np.clip(px * d[0] + py * d[1], 0, length)
            dist2 = (px - s * d[0]) ** 2 + (py - s * d[1]) ** 2
            stroke = dist2 <= (rng.uniform(0.5, 1.2) * scale) ** 2
        else:  # a dot
            c = rng.uniform(0, size, 2)
            stroke = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 <= (rng.uniform(1.0, 2.5) * scale) ** 2
        img[stroke] = img[stroke] * (1 - opacity) + colour * opacity
    return img
