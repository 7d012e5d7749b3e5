"""Frames of a :class:`~pipeline.synthetic.specs.ClipSpec`, rendered with vectorised numpy.

Every shot renders a *content* -- a look made of a palette, a panning tileable background
texture, a few moving and rotating anti-aliased shapes and film-like grain -- chosen from its
content id, so shots with the same id look alike and shots with different ids look clearly
different (hue steps by the golden ratio, texture kind cycles with the id). Motion inside a
shot is continuous (no jumps), so the only abrupt changes in a clip are its cuts.

Frames are rendered as a window slice of a pre-rendered texture, per-shape work limited to the
shape's bounding box, grain from a pre-computed noise field, and streamed one at a time.
"""

from __future__ import annotations

import colorsys
import functools
import math
from typing import Iterator

import numpy as np

from pipeline.synthetic.specs import ClipSpec, PassSpec

__all__ = ["render_clip", "render_shot_frame", "blend_weights"]


# --------------------------------------------------------------------------- looks

_GOLDEN = 0.6180339887498949
_TEXTURES = ("waves", "stripes", "checker", "blobs", "horizon", "grid")
_LO, _HI = 16, 239  # palette range: leaves headroom for grain without clipping


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))) * 255.0


@functools.lru_cache(maxsize=4096)
def _shot_offset(seed: int, content: int, shot_index: int) -> int:
    """Where in its look's timeline a shot starts (frames); differs per shot so reuse isn't a copy."""
    return int(np.random.default_rng([seed, content, shot_index, 0x5407]).integers(0, 4000))


class _Shape:
    __slots__ = ("kind", "a", "b", "color", "cx", "ax", "wx", "px", "cy", "ay", "wy", "py", "ang", "omega")

    def __init__(self, rng: np.random.Generator, width: int, height: int, hue: float) -> None:
        s = min(width, height)
        self.kind = ("ellipse", "rect", "ring")[int(rng.integers(0, 3))]
        self.a = s * rng.uniform(0.07, 0.17)
        self.b = self.a * rng.uniform(0.35, 1.0)
        self.color = np.clip(
            _hsv(hue + rng.choice([0.5, 0.33, 0.67, 0.1, -0.1]), rng.uniform(0.55, 1.0), rng.uniform(0.3, 0.97)),
            _LO,
            _HI,
        ).astype(np.float32)
        # Lissajous path (pixels, rad/s) and spin (rad/s): smooth, so no jumps inside a shot.
        self.cx, self.ax = width * rng.uniform(0.25, 0.75), width * rng.uniform(0.05, 0.28)
        self.cy, self.ay = height * rng.uniform(0.25, 0.75), height * rng.uniform(0.05, 0.28)
        self.wx = 2 * math.pi / rng.uniform(4.0, 12.0) * rng.choice([-1, 1])
        self.wy = 2 * math.pi / rng.uniform(4.0, 12.0) * rng.choice([-1, 1])
        self.px, self.py = rng.uniform(0, 2 * math.pi, 2)
        self.ang = rng.uniform(0, math.pi)
        self.omega = rng.uniform(-1.5, 1.5)

    def draw(self, frame: np.ndarray, t: float) -> None:
        h, w = frame.shape[:2]
        cx = self.cx + self.ax * math.sin(self.wx * t + self.px)
        cy = self.cy + self.ay * math.sin(self.wy * t + self.py)
        ang = self.ang + self.omega * t
        reach = max(self.a, self.b) * (1.5 if self.kind == "rect" else 1.2) + 2.0
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, w)
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, h)
        if x0 >= x1 or y0 >= y1:
            return
        xs = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        c, s = np.float32(math.cos(ang)), np.float32(math.sin(ang))
        u = xs * c + ys * s
        v = ys * c - xs * s
        if self.kind == "ellipse":
            a2, b2 = np.float32(self.a**2), np.float32(self.b**2)
            k = np.sqrt(u * u / a2 + v * v / b2)
            grad = np.sqrt(u * u / (a2 * a2) + v * v / (b2 * b2)) + np.float32(1e-6)
            dist = (k - 1) * k / grad
        elif self.kind == "rect":
            dist = np.maximum(np.abs(u) - np.float32(self.a), np.abs(v) - np.float32(self.b))
        else:
            thick = max(2.5, 0.35 * self.a)
            dist = np.abs(np.sqrt(u * u + v * v) - np.float32(self.a)) - np.float32(thick / 2)
        alpha = np.clip(np.float32(0.5) - dist, 0.0, 1.0)[..., None]  # anti-aliased edge
        region = frame[y0:y1, x0:x1]
        tmp = region.astype(np.float32)
        tmp += alpha * (self.color - tmp)
        tmp += np.float32(0.5)
        np.copyto(region, tmp, casting="unsafe")


def _texture_field(kind: str, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A tileable field in [0, 1] (integer frequencies on the torus), float32 ``[H, W]``."""
    X = (2 * np.pi / width) * np.arange(width, dtype=np.float32)[None, :]
    Y = (2 * np.pi / height) * np.arange(height, dtype=np.float32)[:, None]

    def ints(lo: int, hi: int) -> int:
        return int(rng.integers(lo, hi + 1)) * int(rng.choice([-1, 1]))

    ph = rng.uniform(0, 2 * np.pi, 6).astype(np.float32)
    if kind == "waves":
        f = (
            np.sin(ints(1, 2) * X + ints(0, 2) * Y + ph[0])
            + np.sin(ints(0, 2) * X + ints(1, 2) * Y + ph[1])
            + np.sin(ints(1, 3) * X + ints(1, 2) * Y + ph[2] + 1.5 * np.sin(X + ph[3]))
        )
    elif kind == "stripes":
        a, b = int(rng.integers(2, 5)), ints(0, 2)
        f = np.tanh(2.5 * np.sin(a * X + b * Y + ph[0] + 0.9 * np.sin(Y + ph[1])))
        f = f + 0.35 * np.sin(X + ph[2]) * np.sin(Y + ph[3])
    elif kind == "checker":
        a, b = int(rng.integers(3, 6)), int(rng.integers(2, 4))
        f = np.tanh(4.0 * np.sin(a * X + ph[0]) * np.sin(b * Y + ph[1])) + 0.3 * np.sin(X + Y + ph[2])
    elif kind == "blobs":
        f = (
            np.cos(X + ph[0]) * np.cos(Y + ph[1])
            + 0.7 * np.cos(2 * X + ph[2]) * np.cos(Y + ph[3])
            + 0.5 * np.sin(X + 2 * Y + ph[4])
        )
    elif kind == "horizon":
        # Sky gradient above a wobbly horizon, striped ground below; pans horizontally only.
        yy = np.arange(height, dtype=np.float32)[:, None] / height
        line = rng.uniform(0.4, 0.62) + 0.06 * np.sin(X + ph[0]) + 0.03 * np.sin(2 * X + ph[1])
        sky = 0.7 + 0.3 * (1.0 - yy / line)
        ground = 0.25 + 0.18 * np.sin(int(rng.integers(3, 7)) * X + 6.0 * yy + ph[2])
        edge = np.clip((yy - line) * height / 2.0 + 0.5, 0.0, 1.0)  # ~2 px soft horizon
        f = sky * (1 - edge) + ground * edge
        return np.clip(f, 0.0, 1.0).astype(np.float32)
    elif kind == "grid":
        a, b = int(rng.integers(3, 6)), int(rng.integers(2, 4))
        lines = np.maximum(
            np.exp(-(np.sin(a * X / 2 + ph[0]) ** 2) / 0.012), np.exp(-(np.sin(b * Y / 2 + ph[1]) ** 2) / 0.02)
        )
        f = 0.35 * np.cos(X + ph[2]) * np.cos(Y + ph[3]) + 1.6 * lines
    else:  # pragma: no cover
        raise ValueError(kind)
    f = f - f.min()
    return (f / max(float(f.max()), 1e-6)).astype(np.float32)


class _Look:
    """Everything that makes a content id's appearance; immutable once built."""

    def __init__(self, seed: int, content: int, width: int, height: int, variant: int = 0) -> None:
        rng = np.random.default_rng([seed, content, 0x100C])
        self.content = content
        self.width, self.height = width, height
        hue0 = float(np.random.default_rng([seed, 0x4E]).random())
        hue = (hue0 + content * _GOLDEN) % 1.0
        self.texture = _TEXTURES[(content + seed) % len(_TEXTURES)]
        key = rng.uniform(-0.12, 0.12)  # low-key vs high-key look
        spread = rng.choice([0.04, 0.09, 0.16, 0.5])
        stops = np.stack(
            [
                _hsv(hue, rng.uniform(0.5, 1.0), rng.uniform(0.1, 0.32) + key),
                _hsv(hue + spread, rng.uniform(0.35, 0.9), rng.uniform(0.42, 0.65) + key),
                _hsv(hue - spread / 2, rng.uniform(0.15, 0.7), rng.uniform(0.75, 0.97) + key),
            ]
        )
        stops = np.clip(stops, _LO, _HI)
        if variant:
            # Same palette and texture kind; texture layout, drift, shapes and grain of its own.
            rng = np.random.default_rng([seed, content, 0x100C, variant])
        value = _texture_field(self.texture, rng, width, height)
        tex = np.empty((height, width, 3), dtype=np.uint8)
        flat = value.ravel()
        for ch in range(3):
            tex[..., ch] = np.interp(flat, (0.0, 0.5, 1.0), stops[:, ch]).reshape(height, width) + 0.5
        # Doubled tile (uint16 for the sub-pixel blend): any panned window is one slice.
        self.tex2 = np.tile(tex, (2, 2, 1)).astype(np.uint16)
        speed = rng.uniform(5.0, 22.0) * width / 320.0  # px/s
        if self.texture == "horizon":
            self.vx, self.vy = speed * rng.choice([-1, 1]), 0.0
        else:
            direction = rng.uniform(0, 2 * math.pi)
            self.vx, self.vy = speed * math.cos(direction), speed * math.sin(direction)
        self.shapes = [_Shape(rng, width, height, hue) for _ in range(int(rng.integers(2, 5)))]
        sigma = rng.uniform(1.2, 2.4)
        grain = np.clip(np.rint(rng.normal(0.0, sigma, (2 * height, 2 * width))), -8, 8)
        # Two's complement bytes: uint8 addition is then exact (palette keeps 16..239).
        self.grain = grain.astype(np.int8).view(np.uint8)[..., None]

    def _background(self, px: float, py: float) -> np.ndarray:
        """The texture panned by ``(px, py)`` pixels: bilinear at 1/16 px, so pans glide, not step."""
        h, w = self.height, self.width
        ix, iy = math.floor(px), math.floor(py)
        qx, qy = int(round((px - ix) * 16)), int(round((py - iy) * 16))
        if qx == 16:
            ix, qx = ix + 1, 0
        if qy == 16:
            iy, qy = iy + 1, 0
        ox, oy = ix % w, iy % h
        acc: np.ndarray | None = None
        for dy, wy in ((0, 16 - qy), (1, qy)):
            for dx, wx in ((0, 16 - qx), (1, qx)):
                weight = wx * wy  # the four weights sum to 256
                if weight == 0:
                    continue
                tap = self.tex2[oy + dy : oy + dy + h, ox + dx : ox + dx + w]
                if acc is None:
                    acc = tap * np.uint16(weight)
                else:
                    acc += tap * np.uint16(weight)
        # The four weights sum to 256, so at least one tap was taken.
        assert acc is not None
        acc += np.uint16(128)
        acc >>= 8
        return acc.astype(np.uint8)

    def render(self, tau: int, fps: float, pan_widths_per_s: float = 0.0) -> np.ndarray:
        """The look at frame ``tau`` of its own timeline (any int, negatives included).

        ``pan_widths_per_s`` > 0 pans the background at that speed, in the look's direction.
        """
        h, w = self.height, self.width
        t = tau / fps
        if pan_widths_per_s > 0:
            scale = pan_widths_per_s * w / math.hypot(self.vx, self.vy)
            frame = self._background(self.vx * scale * t, self.vy * scale * t)
        else:
            frame = self._background(self.vx * t, self.vy * t)
        for shape in self.shapes:
            shape.draw(frame, t)
        g = (tau * 2654435761 + self.content * 40503) & 0xFFFFFFFF
        gy, gx = g % h, (g >> 11) % w
        np.add(frame, self.grain[gy : gy + h, gx : gx + w], out=frame)
        return frame


@functools.lru_cache(maxsize=6)
def _look(seed: int, content: int, width: int, height: int, variant: int = 0) -> _Look:
    # Small cache: a clip needs at most two looks at a time (both sides of a blend).
    return _Look(seed, content, width, height, variant)


def _draw_pass(frame: np.ndarray, crossing: PassSpec, local_frame: int) -> None:
    """Draw ``crossing``'s object at ``local_frame`` of its shot, in place (anti-aliased)."""
    h, w = frame.shape[:2]
    b = crossing.size * h / 2  # semi-axes in pixels
    a = 1.5 * b
    progress = (local_frame - crossing.first_frame + 0.5) / crossing.num_frames
    if crossing.leftward:
        progress = 1.0 - progress
    cx, cy = -a + progress * (w + 2 * a), h * 0.55
    x0, x1 = max(int(cx - a) - 2, 0), min(int(cx + a) + 3, w)
    y0, y1 = max(int(cy - b) - 2, 0), min(int(cy + b) + 3, h)
    if x0 >= x1 or y0 >= y1:
        return
    u = np.arange(x0, x1, dtype=np.float32) - np.float32(cx)
    v = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    a2, b2 = np.float32(a * a), np.float32(b * b)
    k = np.sqrt(u * u / a2 + v * v / b2)
    grad = np.sqrt(u * u / (a2 * a2) + v * v / (b2 * b2)) + np.float32(1e-6)
    alpha = np.clip(np.float32(0.5) - (k - 1) * k / grad, 0.0, 1.0)[..., None]
    region = frame[y0:y1, x0:x1]
    tmp = region.astype(np.float32)
    tmp += alpha * (np.asarray(crossing.color, np.float32) - tmp)
    tmp += np.float32(0.5)
    np.copyto(region, tmp, casting="unsafe")


# --------------------------------------------------------------------------- rendering


def render_shot_frame(spec: ClipSpec, shot_index: int, local_frame: int) -> np.ndarray:
    """Shot ``shot_index``'s content at frame ``local_frame`` of the shot (uint8 ``[H, W, 3]``).

    ``local_frame`` may lie outside ``[0, num_frames)``: that is how the shot is
    continued into (or anticipated by) the blend frames of its transitions, so a
    dissolve frame ``k`` of ``L`` after shot ``i`` blends
    ``render_shot_frame(spec, i, n_i + k)`` into ``render_shot_frame(spec, i + 1, k - L)``.
    """
    shot = spec.shots[shot_index]
    look = _look(spec.seed, shot.content, spec.width, spec.height, shot.variant)
    frame = look.render(_shot_offset(spec.seed, shot.content, shot_index) + local_frame, spec.fps, shot.pan_widths_per_s)
    for crossing in shot.passes:
        if crossing.first_frame <= local_frame <= crossing.last_frame:
            _draw_pass(frame, crossing, local_frame)
    for flash in shot.flashes:
        if flash.first_frame <= local_frame <= flash.last_frame:
            gain = flash.gains[local_frame - flash.first_frame]
            np.minimum(frame.astype(np.uint16) + np.uint16(gain), 255, out=frame, casting="unsafe")
    return frame


def _scale(frame: np.ndarray, weight: int) -> np.ndarray:
    """``frame * weight / 256`` rounded, uint8."""
    return ((frame.astype(np.uint16) * np.uint16(weight) + np.uint16(128)) >> 8).astype(np.uint8)


def _mix(a: np.ndarray, b: np.ndarray, weight_b: int) -> np.ndarray:
    """``a * (1 - w) + b * w`` with ``w = weight_b / 256``, rounded, uint8."""
    acc = a.astype(np.uint16) * np.uint16(256 - weight_b)
    acc += b.astype(np.uint16) * np.uint16(weight_b)
    acc += np.uint16(128)
    return (acc >> 8).astype(np.uint8)


def blend_weights(kind: str, num_frames: int) -> list[tuple[float, float]]:
    """Per blend frame of a transition, the weights ``(outgoing, incoming)`` applied.

    Dissolve: ``alpha = (k+1)/(L+1)``, weights ``(1-alpha, alpha)``. Fade: same alpha;
    below 0.5 the outgoing shot at ``1-2*alpha``, above it the incoming one at
    ``2*alpha-1``, at exactly 0.5 black.
    """
    out = []
    for k in range(num_frames):
        alpha = (k + 1) / (num_frames + 1)
        if kind == "dissolve":
            out.append((1.0 - alpha, alpha))
        elif kind == "fade":
            out.append((max(1.0 - 2 * alpha, 0.0), max(2 * alpha - 1, 0.0)))
        else:
            raise ValueError(f"no blend frames for {kind!r}")
    return out


def _w256(x: float) -> int:
    return int(round(x * 256))


def render_clip(spec: ClipSpec) -> Iterator[np.ndarray]:
    """Yield the clip's frames in order, each a fresh uint8 RGB ``[H, W, 3]`` array (streaming)."""
    for i, shot in enumerate(spec.shots):
        if i > 0:
            tr = spec.transitions[i - 1]
            prev_n = spec.shots[i - 1].num_frames
            for k, (w_out, w_in) in enumerate(blend_weights(tr.kind, tr.num_frames) if tr.num_frames else []):
                if tr.kind == "dissolve":
                    a = render_shot_frame(spec, i - 1, prev_n + k)
                    b = render_shot_frame(spec, i, k - tr.num_frames)
                    yield _mix(a, b, _w256(w_in))
                elif w_out > 0:
                    yield _scale(render_shot_frame(spec, i - 1, prev_n + k), _w256(w_out))
                elif w_in > 0:
                    yield _scale(render_shot_frame(spec, i, k - tr.num_frames), _w256(w_in))
                else:
                    yield np.zeros((spec.height, spec.width, 3), dtype=np.uint8)
        for k in range(shot.num_frames):
            yield render_shot_frame(spec, i, k)
