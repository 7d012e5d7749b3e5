"""Shots from per-frame transition probabilities (pure functions, numpy only).

TransNetV2 gives two probabilities per frame: ``single`` peaks on the frame where a
transition happens (for a hard cut, the last frame of the outgoing shot) and ``many``
covers every frame of a transition. Fades often peak below 0.5 in ``single`` while
``many`` is high throughout, so detection uses both, with hysteresis:

* a candidate is a run of frames where ``max(single, many)`` exceeds ``low_threshold``;
* it is a transition if that maximum exceeds ``threshold`` somewhere in the run;
* its extent is the run's frames with ``many`` above ``extent_threshold``. An extent of at
  least ``gradual_min_frames`` frames is a gradual transition (dissolve, fade, wipe) whose
  frames belong to neither shot; otherwise it is a cut after the ``single`` peak.

A flash (a camera flash, lightning: one to a few frames far brighter than the frames around
them) makes the network report a cut. Where each frame's luma and colour layout are known
(the decode stage measures them), :func:`is_flash` drops a transition that lies inside such a
bright run when the frames just before and just after the run look alike: the shot goes on.

Black frames are no shot (:func:`join_black_frames`). The transition head is high on the frames
of a fade out and of a fade in but low on the black frames held between them, so a fade through
black arrives as two transitions with black between them, which would otherwise be a shot of
black alone. Where each frame's luma is known, black frames next to a transition belong to it,
and transitions that then meet are one gradual transition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import KeyframesConfig, ShotsConfig

#: Mean luma (0-255) below which a frame is black, unless the caller says otherwise: the line
#: keyframes draw (``keyframes.black_luma``), so a frame that may not be a keyframe for being
#: black is also one that no shot is made of.
BLACK_LUMA = KeyframesConfig.black_luma


@dataclass(frozen=True)
class Transition:
    """Frames ``[first_frame, last_frame]`` of a transition; for a cut, the outgoing shot's last frame."""

    first_frame: int
    last_frame: int
    peak_frame: int
    kind: str  # "cut" | "gradual"
    score: float


@dataclass(frozen=True)
class Shot:
    start_frame: int
    end_frame: int  # inclusive
    transition: str  # how the shot begins: "start" | "cut" | "gradual"
    boundary_score: float | None

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) index pairs of the True runs in a boolean array."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


@dataclass(frozen=True)
class FrameLooks:
    """What every frame of a video looks like, cheaply: mean luma (0-255) and colour layout.

    ``colours`` is [frames, features] on 0-255 (the mean RGB of a few cells of each frame).
    """

    luma: np.ndarray
    colours: np.ndarray

    def __post_init__(self) -> None:
        if self.luma.ndim != 1 or self.colours.ndim != 2 or len(self.colours) != len(self.luma):
            raise ValueError(f"frame looks differ in shape: luma {self.luma.shape}, colours {self.colours.shape}")


def colour_change(looks: FrameLooks, a: int, b: int) -> float:
    """Mean absolute difference (0-255) between the colour layouts of frames ``a`` and ``b``."""
    return float(np.abs(looks.colours[a] - looks.colours[b]).mean())


def is_flash(first: int, last: int, looks: FrameLooks, config: ShotsConfig) -> bool:
    """Whether the transition over frames ``[first, last]`` is a flash inside one shot.

    It is when a run of at most ``flash_max_frames`` frames, each brighter than the frames
    either side of the run by ``flash_min_rise``, the brightest by ``flash_luma_jump``, covers the
    transition (a cut after frame ``last`` counts from the frame after it), and the frames
    either side of the run look alike: their colour layouts differ by at most
    ``flash_max_colour_change`` more than the shot's own motion changes it over as many
    frames (the smaller change of the frames that far before the run and that far after it;
    a fast pan moves the layout as much across a flash as beside it). A cut into or out of a
    bright shot has no such run, or different frames on its two sides.
    """
    luma = looks.luma
    longest = config.flash_max_frames
    for before in range(max(0, last - longest), first + 1):  # the frame before the run
        for after in range(max(last + 1, before + 2), min(len(luma), before + longest + 2)):
            run = luma[before + 1 : after]
            floor = max(float(luma[before]), float(luma[after]))
            if run.min() < floor + config.flash_min_rise or run.max() < floor + config.flash_luma_jump:
                continue
            gap = after - before
            beside = [colour_change(looks, before - gap, before)] if before >= gap else []
            beside += [colour_change(looks, after, after + gap)] if after + gap < len(luma) else []
            motion = min(beside, default=0.0)
            if colour_change(looks, before, after) <= config.flash_max_colour_change + motion:
                return True
    return False


def find_transitions(
    single: np.ndarray, many: np.ndarray, config: ShotsConfig, looks: FrameLooks | None = None
) -> list[Transition]:
    """Transitions in order, non-overlapping; with ``looks``, flashes inside a shot are left out."""
    if single.shape != many.shape:
        raise ValueError(f"probability arrays differ in shape: {single.shape} vs {many.shape}")
    if looks is not None and len(looks.luma) != len(single):
        raise ValueError(f"frame looks cover {len(looks.luma)} frames, probabilities {len(single)}")
    combined = np.maximum(single, many)
    transitions: list[Transition] = []
    for first, last in _runs(combined > config.low_threshold):
        score = float(combined[first : last + 1].max())
        if score <= config.threshold:
            continue
        peak = first + int(np.argmax(single[first : last + 1]))
        extent = first + np.flatnonzero(many[first : last + 1] > config.extent_threshold)
        if len(extent) >= 1 and extent[-1] - extent[0] + 1 >= config.gradual_min_frames:
            found = Transition(int(extent[0]), int(extent[-1]), peak, "gradual", score)
        else:
            found = Transition(peak, peak, peak, "cut", score)
        if looks is None or not is_flash(found.first_frame, found.last_frame, looks, config):
            transitions.append(found)
    return transitions


def _frames_of(t: Transition) -> tuple[int, int]:
    """(first, last) frame of a transition; a cut has none: (the frame after it, the frame before it)."""
    return (t.peak_frame + 1, t.peak_frame) if t.kind == "cut" else (t.first_frame, t.last_frame)


def join_black_frames(transitions: list[Transition], black: np.ndarray) -> list[Transition]:
    """``transitions`` with the ``black`` frames next to them; transitions that then meet are one.

    A fade out, a hold of black frames and a fade in become one gradual transition over all of
    them (the hold's frames belong to neither shot, as a dissolve's do); a cut to black and a cut
    from black, a gradual transition over the black frames between them. Black frames at the
    start or end of the video join the transition next to them, which then reaches the video's
    edge and so belongs to its first or last shot, where keyframes leave black frames out. Black
    frames with no transition beside them change nothing: a video that is black throughout is
    one shot. The score of a joined transition, and its peak, are those of its strongest part.
    """
    joined: list[Transition] = []
    last_frame = len(black) - 1
    for t in transitions:
        first, last = _frames_of(t)
        while first > 0 and black[first - 1]:
            first -= 1
        while last < last_frame and black[last + 1]:
            last += 1
        if joined and first <= _frames_of(joined[-1])[1] + 1:  # no frame left between them
            before = joined.pop()
            first = _frames_of(before)[0]
            t = max(before, t, key=lambda part: part.score)
        joined.append(Transition(first, last, t.peak_frame, "gradual", t.score) if first <= last else t)
    return joined


def shots_from_transitions(transitions: list[Transition], num_frames: int, min_shot_frames: int) -> list[Shot]:
    """Shots between transitions; shots shorter than ``min_shot_frames`` are merged away.

    A short shot is absorbed by the shot before it (the boundary into it is dropped), or by the
    shot after it when it is the first. The result covers the video in order, without overlaps.
    """
    if num_frames <= 0:
        return []
    bounds: list[tuple[int, int, str, float | None]] = []  # (start, end, how it begins, score)
    start, kind, score = 0, "start", None
    for t in transitions:
        if t.kind == "cut":
            end, next_start = t.peak_frame, t.peak_frame + 1
        else:
            end, next_start = t.first_frame - 1, t.last_frame + 1
        if end >= start and next_start < num_frames:
            bounds.append((start, end, kind, score))
            start, kind, score = next_start, t.kind, t.score
    bounds.append((start, num_frames - 1, kind, score))

    merged: list[tuple[int, int, str, float | None]] = []
    for shot in bounds:
        if merged and shot[1] - shot[0] + 1 < min_shot_frames:
            prev = merged[-1]
            merged[-1] = (prev[0], shot[1], prev[2], prev[3])
        elif merged and merged[-1][1] - merged[-1][0] + 1 < min_shot_frames and len(merged) == 1:
            prev = merged.pop()
            merged.append((prev[0], shot[1], prev[2], prev[3]))
        else:
            merged.append(shot)
    return [Shot(s, e, k, sc) for s, e, k, sc in merged]


def detect_shots(
    single: np.ndarray,
    many: np.ndarray,
    config: ShotsConfig,
    looks: FrameLooks | None = None,
    black_luma: float = BLACK_LUMA,
) -> list[Shot]:
    """Shots of a video from its per-frame probabilities (and, where known, what its frames look like).

    With ``looks``, flashes make no transition and frames darker than ``black_luma`` (mean luma,
    0-255) no shot of their own (:func:`join_black_frames`).
    """
    transitions = find_transitions(single, many, config, looks)
    if looks is not None:
        transitions = join_black_frames(transitions, looks.luma < black_luma)
    return shots_from_transitions(transitions, len(single), config.min_shot_frames)
