"""Cheap per-frame statistics that ride along with decoding: mean luma, colour layout, motion, sharpness.

Shot post-processing tells flashes from cuts with them, keyframe selection skips black,
flash and blurred frames, and each shot gets curation signals (:func:`shot_signals`: motion,
brightness, sharpness, still), without decoding anything twice. Pure numpy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: Rows x columns of cells in a frame's colour layout (the mean RGB of each cell of its 48x27
#: copy): 36 numbers, coarse enough that a pan of a few frames barely moves them.
COLOUR_GRID = (3, 4)
COLOUR_FEATURES = 3 * COLOUR_GRID[0] * COLOUR_GRID[1]
#: Rows x columns of a frame's luma layout: the mean luma of each 3x3 block of its 48x27 copy.
#: Fine enough that another framing or another moment of one place changes it, coarse enough
#: that re-encoding, a 10 % crop or burned-in text barely do: duplicates are found by it
#: (pipeline.index.dedup, docs/dedup.md).
LAYOUT_GRID = (9, 16)
LAYOUT_FEATURES = LAYOUT_GRID[0] * LAYOUT_GRID[1]
#: ITU-R BT.601 luma weights of R, G, B (the luma of the frames' own YUV, on 0-255).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
#: Frames narrower or shorter than this (pixels) have no Laplacian on every other row and column.
MIN_SHARPNESS_SIDE = 6
#: Full scale of 8-bit luma: per-shot brightness and motion are reported on 0-1.
LUMA_FULL_SCALE = 255.0
#: A shot whose motion (mean |delta luma| between consecutive 48x27 frames, on 0-1) is below this
#: is ``still``: it barely changes. Measured with benchmarks/signals.py. On the real-footage scenes
#: set the motions of the 122 true shots spread without a gap (0.0002-0.11, median 0.012) and the
#: camera move the set was built with does not decide it (a subject moves under a fixed camera; a
#: pan over a plain wall changes little), so the line is where the pictures stop changing, judged
#: on contact sheets (first, middle, last frame) of the shots in order of motion: the 24 below
#: 0.003 look static (people standing, bottles, a road; two with a small moving object), while 22
#: of the next 26 (0.003-0.009) change visibly (a hand reaching in, a flower opening, water,
#: people moving). Generated shots: a held frame measures 0.0000, the generator's ordinary shots
#: (slow texture drift, small moving shapes) 0.0024-0.0037, pans and objects crossing the frame
#: 0.0087 and up.
STILL_MOTION = 0.003

#: Key of a dataclass field's metadata that makes the field a :class:`Measure` of a segment.
MEASURE = "vindex.measure"


@dataclass(frozen=True)
class Measure:
    """What one field of :class:`SegmentMeasures` holds: ``features`` values of ``dtype`` (0: one
    value) for each frame of the segment (``per="frame"``) or each sampled frame (``"sample"``)."""

    per: Literal["frame", "sample"]
    dtype: str
    features: int = 0

    def shape(self, count: int) -> tuple[int, ...]:
        """The array's shape for ``count`` frames or samples."""
        return (count, self.features) if self.features else (count,)

    def empty(self) -> np.ndarray:
        """The array of a segment with no frames."""
        return np.zeros(self.shape(0), self.dtype)


def measure(per: Literal["frame", "sample"], dtype: str, features: int = 0) -> Any:
    """A :class:`SegmentMeasures` field: None until measured (and in rows from before it was)."""
    return dataclasses.field(default=None, metadata={MEASURE: Measure(per, dtype, features)})


@dataclass(kw_only=True)
class SegmentMeasures:
    """The statistics decoding measures and stitching reads, declared once.

    The decoder's output (:class:`pipeline.media.decode.DecodedSegment`) and the stitcher's
    input (:class:`pipeline.algorithms.stitch.SegmentResult`) both extend it, and the record
    that carries a segment between stages packs and unpacks every field declared here
    (:mod:`pipeline.execution.records`): a new measure is a field here, computed where frames
    are decoded and read where shots are built, and nothing in between changes. A field is
    None where it was not measured: stitching then does without it.
    """

    #: float32 [frames]: mean luma (0-255) of each frame (flashes, black frames).
    frame_luma: np.ndarray | None = measure("frame", "float32")
    #: float32 [frames, COLOUR_FEATURES]: each frame's colour layout (:func:`frame_statistics`), to
    #: tell whether the frames either side of a flash are one shot.
    frame_colours: np.ndarray | None = measure("frame", "float32", COLOUR_FEATURES)
    #: float32 [samples]: sharpness of each sampled frame (:func:`sharpness`).
    sample_sharpness: np.ndarray | None = measure("sample", "float32")
    #: float32 [frames]: each frame's mean |delta luma| (0-1) from the frame before it
    #: (:func:`frame_motion`); a segment's first frame is compared with its context frame.
    frame_motion: np.ndarray | None = measure("frame", "float32")
    #: uint8 [frames, LAYOUT_FEATURES]: each frame's luma layout (:func:`luma_layout`), averaged per
    #: shot into ``shots.luma_layout``.
    frame_layout: np.ndarray | None = measure("frame", "uint8", LAYOUT_FEATURES)


def measures(definition: type[SegmentMeasures] = SegmentMeasures) -> dict[str, Measure]:
    """The measures ``definition`` declares (its fields that carry a :class:`Measure`), in order."""
    return {f.name: f.metadata[MEASURE] for f in dataclasses.fields(definition) if MEASURE in f.metadata}


def measured(value: SegmentMeasures) -> dict[str, np.ndarray | None]:
    """``value``'s measures by name, as keyword arguments for another :class:`SegmentMeasures`."""
    return {name: getattr(value, name) for name in measures(type(value))}


def no_measures(definition: type[SegmentMeasures] = SegmentMeasures) -> dict[str, np.ndarray]:
    """Every measure of a segment with no frames (empty arrays, not None: measured, nothing found)."""
    return {name: spec.empty() for name, spec in measures(definition).items()}


def frame_statistics(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean luma [n], colour layout [n, 36]) of uint8 frames [n, 27, 48, 3], float32 on 0-255.

    The colour layout is the mean RGB of each cell of a :data:`COLOUR_GRID` over the frame.
    Taken from the shot network's 48x27 copy, which every frame has anyway.
    """
    pixels = small.astype(np.float32)
    return (pixels @ LUMA_WEIGHTS).mean(axis=(1, 2)).astype(np.float32), colour_layout(pixels)


def colour_layout(pixels: np.ndarray) -> np.ndarray:
    """float32 [n, 36]: mean RGB of each :data:`COLOUR_GRID` cell of float frames [n, H, W, 3]."""
    count, height, width, _ = pixels.shape
    rows, cols = COLOUR_GRID
    cells = pixels[:, : height // rows * rows, : width // cols * cols].reshape(
        count, rows, height // rows, cols, width // cols, 3
    )
    layout: np.ndarray = cells.mean(axis=(2, 4)).reshape(count, -1).astype(np.float32)
    return layout


def luma_layout(small: np.ndarray) -> np.ndarray:
    """uint8 [n, 144]: the mean luma (0-255, rounded) of each :data:`LAYOUT_GRID` block of uint8
    frames [n, 27, 48, 3], rows first."""
    count, height, width, _ = small.shape
    rows, cols = LAYOUT_GRID
    planes = small.astype(np.float32) @ LUMA_WEIGHTS
    blocks = planes[:, : height // rows * rows, : width // cols * cols].reshape(
        count, rows, height // rows, cols, width // cols
    )
    layout: np.ndarray = np.round(blocks.mean(axis=(2, 4))).reshape(count, -1).astype(np.uint8)
    return layout


def shot_layout(frame_layouts: np.ndarray) -> np.ndarray | None:
    """float32 [144]: a shot's frames' luma layouts averaged (its picture blurred over its
    length, 0-255), or None for a shot without frames. An average does not change when frames
    are repeated or dropped evenly (footage slowed or sped up) and moves little with a logo or
    a line of text; a mirrored copy's is the mirror image (pipeline.index.dedup compares both)."""
    if not len(frame_layouts):
        return None
    mean: np.ndarray = np.asarray(frame_layouts, np.float32).mean(axis=0)
    return mean


def frame_motion(small: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """float32 [n]: mean |delta luma| (0-1) between each uint8 frame [n, 27, 48, 3] and the one before.

    ``previous`` is the frame before the first (a segment's context frame), None at the video's
    first frame, whose motion is then 0. On the 48x27 copy every frame has for the shot network:
    noise and fine texture average out, so the figure follows how much of the picture moves.
    """
    planes = small.astype(np.float32) @ LUMA_WEIGHTS
    return luma_changes(planes, None if previous is None else previous.astype(np.float32) @ LUMA_WEIGHTS)


def luma_changes(planes: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """float32 [n]: mean |delta| (0-1) of luma planes [n, H, W] (0-255) from the plane before
    each; the first from ``previous`` (0 without one). One expression for every frame, so a
    frame's figure is the same bits whichever chunk or segment it starts."""
    if len(planes) == 0:
        return np.zeros(0, np.float32)
    joined = planes if previous is None else np.concatenate([previous[None], planes])
    change: np.ndarray = np.abs(np.diff(joined, axis=0)).mean(axis=(1, 2)) / LUMA_FULL_SCALE
    if previous is None:
        change = np.concatenate([np.zeros(1, change.dtype), change])
    return change.astype(np.float32)


def frame_measures(small: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean luma, colour layout, motion) of uint8 frames [n, 27, 48, 3]: :func:`frame_statistics`
    and :func:`frame_motion` in one pass, the luma planes computed once (what decoding calls).

    Measured on the scenes set's 6,268 frames, same run, interleaved (benchmarks/signals.py --cost,
    2 loaded CPUs): luma and layout alone 57.4 us per frame, with motion in this one pass 58.9 us,
    with motion measured apart 72.2 us; the extra 1.4 us is 0.02% of the pipeline's ~5.9 ms per
    frame (170 frames/s end to end).
    """
    pixels = small.astype(np.float32)
    planes = pixels @ LUMA_WEIGHTS
    before = None if previous is None else previous.astype(np.float32) @ LUMA_WEIGHTS
    luma = planes.mean(axis=(1, 2)).astype(np.float32)
    return luma, colour_layout(pixels), luma_changes(planes, before)


def sharpness(frames: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each uint8 frame [n, H, W, 3]'s luma: higher is sharper.

    The usual focus measure: blur (motion, defocus) removes the high frequencies it measures.
    Taken on every other row and column: a third of the time (0.08 s instead of 0.22 s for the
    340 samples of a 2,037-frame clip), and keyframes chosen with it on the hard set are as sharp
    by the full-resolution measure (0.882 of their shot's sharpest, 0.883 chosen at full resolution).
    Only comparable between frames of one size, which a video's sampled frames all have.
    """
    if len(frames) == 0 or frames.shape[1] < MIN_SHARPNESS_SIDE or frames.shape[2] < MIN_SHARPNESS_SIDE:
        return np.zeros(len(frames), np.float32)
    luma = frames[:, ::2, ::2].astype(np.float32) @ LUMA_WEIGHTS
    laplacian = (
        luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] - 4 * luma[:, 1:-1, 1:-1]
    )
    variance: np.ndarray = laplacian.reshape(len(frames), -1).var(axis=1)
    return variance.astype(np.float32)


@dataclass(frozen=True)
class ShotSignals:
    """Curation signals of one shot (None where the decode stage did not measure them).

    ``motion``: mean |delta luma| (0-1) between consecutive frames of the shot's 48x27 copies;
    ``brightness``: mean luma (0-1); ``sharpness``: mean variance of the Laplacian of the sampled
    frames' luma (0-255, at decode size, every other pixel), comparable between videos decoded
    at the same size; ``still``: motion below :data:`STILL_MOTION`.
    """

    motion: float | None = None
    brightness: float | None = None
    sharpness: float | None = None
    still: bool | None = None


def shot_signals(
    first: int,
    last: int,
    mixed: np.ndarray,
    luma: np.ndarray | None,
    motion: np.ndarray | None,
    sample_frames: np.ndarray,
    sample_sharpness: np.ndarray | None,
) -> ShotSignals:
    """Signals of the shot over frames ``[first, last]`` from whole-video per-frame arrays.

    ``mixed`` marks each frame of the video inside or next to a transition (a dissolve's or
    fade's blended frames): they are left out, so a shot's figures do not depend on how it
    begins or ends; a shot with nothing else keeps them. Motion counts a frame's change from
    the frame before only where both are in the shot (never across the boundary).
    """
    own = slice(first, last + 1)
    clean = ~mixed[own]
    kept = clean if clean.any() else np.ones(last - first + 1, bool)
    brightness = float(luma[own][kept].mean()) / LUMA_FULL_SCALE if luma is not None else None
    shot_motion = None
    if motion is not None and last > first:
        pairs = clean[1:] & clean[:-1]  # frame i and the frame before it, both clean
        changes = motion[first + 1 : last + 1]
        shot_motion = float(changes[pairs].mean() if pairs.any() else changes.mean())
    shot_sharpness = None
    if sample_sharpness is not None:
        inside = (sample_frames >= first) & (sample_frames <= last)
        clean_inside = inside & ~mixed[np.clip(sample_frames, 0, len(mixed) - 1)]
        chosen = clean_inside if clean_inside.any() else inside
        shot_sharpness = float(sample_sharpness[chosen].mean()) if chosen.any() else None
    still = shot_motion < STILL_MOTION if shot_motion is not None else None
    return ShotSignals(shot_motion, brightness, shot_sharpness, still)
