"""Generated test videos with exactly known shot structure: what tests and benchmarks add to
:mod:`pipeline.synthetic` (the generator the runtime ships for its sample corpus).

* :func:`clip_truth` gives the exact frame numbers of every shot, transition and in-shot event
  of a spec; :func:`write_clip` encodes a spec and returns that truth.
* :func:`random_spec` and :func:`spec_for_duration` draw seeded clips; :func:`hard_spec` draws
  clips that are hard for shot detectors (fast pans, objects crossing the frame, flashes, cuts
  between similar looks); :func:`hard_set` is the benchmark set of them at several sizes and
  frame rates.
* The "bad inputs" section writes broken or non-video files for tests of the pipeline's error
  handling.

The generator's own names (specs, rendering, :data:`SAMPLE_CORPUS`, :func:`write_corpus`) are
re-exported, so a test imports this one module.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from pipeline import synthetic as sample
from pipeline.synthetic import (
    SAMPLE_CORPUS,
    ClipSpec,
    FlashSpec,
    PassSpec,
    ShotSpec,
    TransitionSpec,
    blend_weights,
    check_int,
    render_clip,
    render_shot_frame,
    sample_corpus,
    simple_spec,
    write_corpus,
)

__all__ = [
    # re-exported from pipeline.synthetic
    "FlashSpec",
    "PassSpec",
    "ShotSpec",
    "TransitionSpec",
    "ClipSpec",
    "render_clip",
    "render_shot_frame",
    "blend_weights",
    "simple_spec",
    "SAMPLE_CORPUS",
    "sample_corpus",
    "write_corpus",
    # truth
    "ShotTruth",
    "TransitionTruth",
    "ClipTruth",
    "EventTruth",
    "clip_truth",
    "write_clip",
    # spec drawers
    "random_spec",
    "spec_for_duration",
    "hard_spec",
    "HARD_FORMATS",
    "hard_set",
    # bad inputs
    "write_zero_byte",
    "write_truncated",
    "write_random_bytes",
    "remux",
    "write_audio_only",
    "write_jpeg_as_mp4",
    "HUGE_SIZE",
    "write_huge_clip",
]


# --------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class ShotTruth:
    """A shot's frames in the output video, both ends inclusive."""

    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1


@dataclass(frozen=True)
class TransitionTruth:
    """A transition's blend frames, inclusive; a cut is empty: ``last_frame == first_frame - 1``.

    For a cut ``first_frame`` is the first frame of the new shot. ``similar`` marks a
    transition between two shots of the same content (same palette and texture kind).
    """

    kind: str
    first_frame: int
    last_frame: int
    similar: bool = False

    @property
    def num_frames(self) -> int:
        return self.last_frame - self.first_frame + 1


@dataclass(frozen=True)
class EventTruth:
    """Frames (inclusive) of something inside a shot that is not a transition.

    ``kind`` is ``"flash"``, ``"pass"`` (an object crossing the frame) or ``"fast_pan"``
    (the whole shot).
    """

    kind: str
    first_frame: int
    last_frame: int


@dataclass(frozen=True)
class ClipTruth:
    """Exact layout of a rendered clip."""

    shots: tuple[ShotTruth, ...]
    transitions: tuple[TransitionTruth, ...]
    num_frames: int
    fps: float
    width: int
    height: int
    #: In-shot events, in order of their first frame.
    events: tuple[EventTruth, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def frame_shot_index(self) -> np.ndarray:
        """Per frame, the index of its shot, or -1 for blend frames of a gradual transition."""
        out = np.full(self.num_frames, -1, dtype=np.int32)
        for i, s in enumerate(self.shots):
            out[s.start_frame : s.end_frame + 1] = i
        return out

    def to_dict(self) -> dict:
        """Plain JSON-serialisable form (``events`` and ``similar`` only where a clip has them)."""
        out = {
            "shots": [[s.start_frame, s.end_frame] for s in self.shots],
            "transitions": [[t.kind, t.first_frame, t.last_frame] for t in self.transitions],
            "num_frames": self.num_frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
        }
        if self.events:
            out["events"] = [[e.kind, e.first_frame, e.last_frame] for e in self.events]
        if any(t.similar for t in self.transitions):
            out["similar_transitions"] = [i for i, t in enumerate(self.transitions) if t.similar]
        return out


def clip_truth(spec: ClipSpec) -> ClipTruth:
    """The exact frame layout that :func:`render_clip` produces for ``spec``."""
    shots: list[ShotTruth] = []
    transitions: list[TransitionTruth] = []
    events: list[EventTruth] = []
    pos = 0
    for i, shot in enumerate(spec.shots):
        if i > 0:
            t = spec.transitions[i - 1]
            similar = shot.content == spec.shots[i - 1].content
            transitions.append(TransitionTruth(t.kind, pos, pos + t.num_frames - 1, similar))
            pos += t.num_frames
        shots.append(ShotTruth(pos, pos + shot.num_frames - 1))
        if shot.pan_widths_per_s > 0:
            events.append(EventTruth("fast_pan", pos, pos + shot.num_frames - 1))
        events.extend(EventTruth("flash", pos + f.first_frame, pos + f.last_frame) for f in shot.flashes)
        events.extend(EventTruth("pass", pos + p.first_frame, pos + p.last_frame) for p in shot.passes)
        pos += shot.num_frames
    events.sort(key=lambda e: (e.first_frame, e.last_frame, e.kind))
    return ClipTruth(
        tuple(shots), tuple(transitions), pos, float(spec.fps), spec.width, spec.height, tuple(events)
    )


def write_clip(path: str | os.PathLike, spec: ClipSpec, **options: Any) -> ClipTruth:
    """Encode ``spec`` to an mp4 at ``path`` (:func:`pipeline.synthetic.write_clip`, same
    ``options``) and return its :func:`clip_truth`, which a test compares with the index."""
    sample.write_clip(path, spec, **options)
    return clip_truth(spec)


# --------------------------------------------------------------------------- spec drawers


class _SpecDrawer:
    """Seeded draws of shot lengths, contents and transitions, shared by :func:`random_spec`
    and :func:`spec_for_duration` so both draw the same way."""

    def __init__(
        self,
        seed: int,
        min_shot_frames: int,
        max_shot_frames: int,
        p_dissolve: float,
        p_fade: float,
        dissolve_frames: tuple[int, int],
        fade_frames: tuple[int, int],
        reuse_prob: float,
    ) -> None:
        if not 1 <= min_shot_frames <= max_shot_frames:
            raise ValueError("need 1 <= min_shot_frames <= max_shot_frames")
        self.rng = np.random.default_rng([seed, 0x5BEC])
        self.min, self.max = min_shot_frames, max_shot_frames
        self.p_dissolve, self.p_fade = p_dissolve, p_fade
        self.dissolve_frames, self.fade_frames = dissolve_frames, fade_frames
        self.reuse_prob = reuse_prob
        self.contents: list[int] = []

    def shot_len(self) -> int:
        return int(self.rng.integers(self.min, self.max + 1))

    def content(self) -> int:
        prev = self.contents[-1] if self.contents else None
        earlier = sorted({c for c in self.contents if c != prev})
        if earlier and self.rng.random() < self.reuse_prob:
            c = int(self.rng.choice(earlier))
        else:
            c = max(self.contents, default=-1) + 1
        self.contents.append(c)
        return c

    def transition(self) -> TransitionSpec:
        r = self.rng.random()
        if r < self.p_dissolve:
            lo, hi = self.dissolve_frames
            return TransitionSpec("dissolve", int(self.rng.integers(lo, hi + 1)))
        if r < self.p_dissolve + self.p_fade:
            lo, hi = self.fade_frames
            return TransitionSpec("fade", int(self.rng.integers(lo, hi + 1)))
        return TransitionSpec("cut")


def random_spec(
    seed: int,
    num_shots: int,
    *,
    min_shot_frames: int = 38,
    max_shot_frames: int = 100,
    p_dissolve: float = 0.2,
    p_fade: float = 0.1,
    dissolve_frames: tuple[int, int] = (8, 20),
    fade_frames: tuple[int, int] = (8, 20),
    reuse_prob: float = 0.1,
    width: int = 320,
    height: int = 180,
    fps: float = 25.0,
) -> ClipSpec:
    """A random but seeded clip of ``num_shots`` shots; neighbouring shots never share content.

    Shot lengths are uniform in ``[min_shot_frames, max_shot_frames]``; each
    transition is a dissolve with ``p_dissolve``, a fade with ``p_fade``, else a
    cut; a shot reuses an earlier (non-adjacent) content id with ``reuse_prob``.
    """
    check_int("num_shots", num_shots, 1)
    d = _SpecDrawer(seed, min_shot_frames, max_shot_frames, p_dissolve, p_fade, dissolve_frames, fade_frames, reuse_prob)
    shots, trs = [], []
    for i in range(num_shots):
        if i:
            trs.append(d.transition())
        shots.append(ShotSpec(d.shot_len(), d.content()))
    return ClipSpec(tuple(shots), tuple(trs), width=width, height=height, fps=fps, seed=seed)


def spec_for_duration(
    seed: int,
    seconds: float,
    *,
    min_shot_frames: int = 38,
    max_shot_frames: int = 100,
    p_dissolve: float = 0.2,
    p_fade: float = 0.1,
    dissolve_frames: tuple[int, int] = (8, 20),
    fade_frames: tuple[int, int] = (8, 20),
    reuse_prob: float = 0.1,
    width: int = 320,
    height: int = 180,
    fps: float = 25.0,
) -> ClipSpec:
    """Like :func:`random_spec` but with exactly ``round(seconds * fps)`` frames in total.

    The last shot is shortened to fit; if what is left is shorter than
    ``min_shot_frames`` the previous shot is lengthened instead.
    """
    target = int(round(seconds * fps))
    check_int("round(seconds * fps)", target, 1)
    d = _SpecDrawer(seed, min_shot_frames, max_shot_frames, p_dissolve, p_fade, dissolve_frames, fade_frames, reuse_prob)
    shots: list[ShotSpec] = []
    trs: list[TransitionSpec] = []
    total = 0
    while total < target:
        if not shots:
            n = min(d.shot_len(), target)
            shots.append(ShotSpec(n, d.content()))
            total += n
            continue
        tr = d.transition()
        n = d.shot_len()
        if total + tr.num_frames + n > target:
            n = target - total - tr.num_frames
            if n < min_shot_frames:
                last = shots[-1]
                shots[-1] = ShotSpec(last.num_frames + target - total, last.content)
                total = target
                break
        trs.append(tr)
        shots.append(ShotSpec(n, d.content()))
        total += tr.num_frames + n
    return ClipSpec(tuple(shots), tuple(trs), width=width, height=height, fps=fps, seed=seed)


def _free_start(
    rng: np.random.Generator, length: int, num_frames: int, taken: list[tuple[int, int]], margin: int
) -> int | None:
    """A random first frame for ``length`` frames inside a shot, ``margin`` frames clear of its
    ends and of the ``taken`` (first, last) ranges; None when there is no room."""
    starts = np.arange(margin, num_frames - margin - length + 1)
    for first, last in taken:
        starts = starts[(starts + length - 1 < first - margin) | (starts > last + margin)]
    return int(rng.choice(starts)) if len(starts) else None


def hard_spec(
    seed: int,
    num_shots: int,
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 25.0,
    min_shot_frames: int = 16,
    max_shot_frames: int = 100,
    p_dissolve: float = 0.25,
    p_fade: float = 0.2,
    transition_frames: tuple[int, int] = (6, 30),
    p_similar: float = 0.25,
    p_fast_pan: float = 0.2,
    p_pass: float = 0.25,
    p_flash: float = 0.25,
) -> ClipSpec:
    """A seeded clip that is hard for shot detectors; :func:`clip_truth` gives its exact truth.

    Transitions are dissolves (``p_dissolve``), fades (``p_fade``) or cuts, gradual ones
    ``transition_frames`` frames long. With ``p_similar`` a shot keeps the previous shot's
    content (palette and texture kind): half of those in a new variant (another angle), half
    in the same look further on in time (a jump cut). Inside each shot, independently: a fast
    pan of 0.5-2 frame widths per second (``p_fast_pan``); an object crossing the frame in
    0.16-0.5 s (``p_pass``); a flash of 1-3 frames brightened by 60-180 at its peak
    (``p_flash``). Flashes and crossings keep 6 frames clear of the shot's ends and of each
    other.
    """
    check_int("num_shots", num_shots, 1)
    if not 1 <= min_shot_frames <= max_shot_frames:
        raise ValueError("need 1 <= min_shot_frames <= max_shot_frames")
    rng = np.random.default_rng([seed, 0x4A4D])
    margin = 6
    shots: list[ShotSpec] = []
    transitions: list[TransitionSpec] = []
    variants: dict[int, int] = {}  # content -> highest variant used
    for i in range(num_shots):
        if i:
            r = rng.random()
            lo, hi = transition_frames
            if r < p_dissolve:
                transitions.append(TransitionSpec("dissolve", int(rng.integers(lo, hi + 1))))
            elif r < p_dissolve + p_fade:
                transitions.append(TransitionSpec("fade", int(rng.integers(lo, hi + 1))))
            else:
                transitions.append(TransitionSpec("cut"))
        if shots and rng.random() < p_similar:
            content = shots[-1].content
            if rng.random() < 0.5:
                variants[content] += 1
                variant = variants[content]
            else:
                variant = shots[-1].variant
        else:
            content, variant = max(variants, default=-1) + 1, 0
            variants[content] = 0
        num_frames = int(rng.integers(min_shot_frames, max_shot_frames + 1))
        pan = float(rng.uniform(0.5, 2.0)) if rng.random() < p_fast_pan else 0.0
        taken: list[tuple[int, int]] = []
        passes: list[PassSpec] = []
        if rng.random() < p_pass:
            length = max(3, int(round(rng.uniform(0.16, 0.5) * fps)))
            first = _free_start(rng, length, num_frames, taken, margin)
            if first is not None:
                red, green, blue = (int(c) for c in rng.integers(20, 236, 3))
                size = float(rng.uniform(0.6, 1.1))
                passes.append(PassSpec(first, length, size, (red, green, blue), bool(rng.random() < 0.5)))
                taken.append((first, first + length - 1))
        flashes: list[FlashSpec] = []
        if rng.random() < p_flash:
            peak = int(rng.integers(60, 181))
            gains = tuple(g for g in (peak, round(peak * 0.55), round(peak * 0.3))[: int(rng.integers(1, 4))])
            first = _free_start(rng, len(gains), num_frames, taken, margin)
            if first is not None:
                flashes.append(FlashSpec(first, gains))
        shots.append(ShotSpec(num_frames, content, variant, pan, tuple(flashes), tuple(passes)))
    return ClipSpec(tuple(shots), tuple(transitions), width=width, height=height, fps=fps, seed=seed)


#: (width, height, fps) of the hard benchmark set's clips, in turn.
HARD_FORMATS: tuple[tuple[int, int, float], ...] = (
    (320, 180, 25.0),
    (640, 360, 30.0),
    (480, 270, 24.0),
    (854, 480, 25.0),
    (256, 144, 29.97),
    (640, 480, 50.0),
    (426, 240, 23.976),
    (960, 540, 59.94),
)


def hard_set(num_clips: int = 8, num_shots: int = 30) -> dict[str, ClipSpec]:
    """The hard benchmark set: name -> :func:`hard_spec`, formats taken in turn from HARD_FORMATS."""
    out = {}
    for i in range(num_clips):
        width, height, fps = HARD_FORMATS[i % len(HARD_FORMATS)]
        out[f"hard_{i:02d}_{width}x{height}_{fps:g}fps"] = hard_spec(
            700 + i, num_shots, width=width, height=height, fps=fps
        )
    return out


# --------------------------------------------------------------------------- bad inputs


def write_zero_byte(path: str | os.PathLike) -> pathlib.Path:
    """An empty file."""
    p = pathlib.Path(path)
    p.write_bytes(b"")
    return p


def write_truncated(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> pathlib.Path:
    """The first ``int(size * fraction)`` bytes of ``src``, written to ``dst``.

    For a clip written without ``faststart`` the index (moov) sits at the end, so
    the result has no index at all; with ``faststart`` it has the full index but
    only part of the media data.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    data = pathlib.Path(src).read_bytes()
    p = pathlib.Path(dst)
    p.write_bytes(data[: int(len(data) * fraction)])
    return p


def write_random_bytes(path: str | os.PathLike, size: int, seed: int = 0) -> pathlib.Path:
    """``size`` seeded random bytes."""
    check_int("size", size, 0)
    p = pathlib.Path(path)
    p.write_bytes(np.random.default_rng([seed, 0xB17E]).bytes(size))
    return p


def remux(src: str | os.PathLike, dst: str | os.PathLike, container_format: str | None = None) -> pathlib.Path:
    """``src``'s video packets copied unchanged into another container (by ``dst``'s suffix, or
    ``container_format``): e.g. an MP4 as Matroska or MPEG-TS, which index no frames."""
    import av

    with av.open(str(src)) as reader, av.open(str(dst), "w", format=container_format) as writer:
        stream = reader.streams.video[0]
        target = writer.add_stream_from_template(stream)
        for packet in reader.demux(stream):
            if packet.dts is not None:
                packet.stream = target
                writer.mux(packet)
    return pathlib.Path(dst)


def write_audio_only(path: str | os.PathLike, seconds: float = 2.0, *, sample_rate: int = 44100) -> pathlib.Path:
    """An mp4 with a single AAC stream (a 440 Hz tone) and no video stream."""
    import av

    p = pathlib.Path(path)
    total = int(round(seconds * sample_rate))
    with av.open(str(p), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        chunk = stream.codec_context.frame_size or 1024
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            t = (np.arange(start, start + n) / sample_rate).astype(np.float32)
            samples = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return p


def write_jpeg_as_mp4(path: str | os.PathLike) -> pathlib.Path:
    """A real JPEG image (a synthetic frame) saved under ``path`` (typically ``*.mp4``)."""
    from PIL import Image

    p = pathlib.Path(path)
    spec = simple_spec([1])
    Image.fromarray(render_shot_frame(spec, 0, 0)).save(p, format="JPEG", quality=90)
    return p


#: An 8K frame: 33 megapixels, 100 MB as RGB.
HUGE_SIZE = (7680, 4320)


def write_huge_clip(path: str | os.PathLike) -> pathlib.Path:
    """A 16-frame HUGE_SIZE clip with one cut after frame 8 (simple gradients: fast to encode),
    for tests that decoding a frame this large stays within bounded memory."""
    import av

    p = pathlib.Path(path)
    width, height = HUGE_SIZE
    with av.open(str(p), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        ramp = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
        for i in range(16):
            frame = np.broadcast_to(ramp if i < 8 else 255 - ramp, (height, width, 3)).copy()
            frame[..., 1] = 120 * (i // 8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return p
