"""Segment maths: split a video into segments, and say which frames each one needs.

Segments let several actors decode one long video and keep memory bounded. The shot
network predicts frames in steps of ``window - 2 * context`` on one global grid, so a
segment starting on that grid, decoded with ``context`` frames either side, gives
exactly the predictions of decoding the whole video.

Pure numpy: no I/O, no decoder, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.models.spec import SHOT_CONTEXT_FRAMES

#: Sides of a decode size are multiples of this many pixels (what scalers handle best).
DECODE_SIZE_MULTIPLE = 16

#: A video's last shot-network window covers only the frames left, rounded up to this many
#: (and its context): a 60-frame clip runs one window of 25 + 75 + 25 frames, not a whole
#: 200-frame window of mostly copies of its last frame. A multiple keeps the window lengths
#: few, so the CPU's kernels for each length are built once per actor.
TAIL_WINDOW_MULTIPLE = 25


@dataclass(frozen=True)
class Segment:
    """Frames ``[start_frame, end_frame)`` of a video; the last segment runs to the true end."""

    index: int
    count: int
    start_frame: int
    end_frame: int

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1


def plan_segments(
    num_frames: int, segment_frames: int, *, held_frames: int | None = None, halve_last: int = 0, step: int = 1
) -> list[Segment]:
    """Split ``num_frames`` into segments of ``segment_frames`` (the last one takes the rest).

    With ``held_frames`` (a file that holds fewer frames than its container declares), only
    the frames held are split; the last segment still ends at ``num_frames``: it runs to the
    true end whatever that is, and its decoder reports the gap against the declared count.

    With ``halve_last`` (a run's last video: :class:`pipeline.execution.stages.PlanStage`), a
    video of two segments or more has its last ``halve_last`` segments' frames cut in pieces of
    half a segment, rounded down to whole multiples of ``step`` (the shot network's grid, of
    which ``segment_frames`` is a multiple): the actors that finish the run then end within half
    a segment of each other, not a whole one. Where no smaller piece fits the grid, nothing
    changes.
    """
    if num_frames <= 0:
        return []
    planned = num_frames if held_frames is None else min(num_frames, max(0, held_frames))
    split_until = max(1, planned)  # a video of frames none of which are held: one segment
    starts = list(range(0, split_until, segment_frames))
    piece = max(step, segment_frames // 2 // step * step)
    if halve_last > 0 and len(starts) > 1 and piece < segment_frames:
        first = max(0, len(starts) - halve_last)
        starts = starts[:first] + list(range(starts[first], split_until, piece))
    count = len(starts)
    ends = starts[1:] + [num_frames]
    return [Segment(i, count, start, end) for i, (start, end) in enumerate(zip(starts, ends))]


def frames_to_decode(segment: Segment) -> tuple[int, int | None]:
    """Frames ``[first, stop)`` a segment's decoder must deliver: its own and the shot network's
    ``context`` either side; ``stop`` is None for the last segment, which runs to the true end."""
    first = max(0, segment.start_frame - SHOT_CONTEXT_FRAMES)
    return first, None if segment.is_last else segment.end_frame + SHOT_CONTEXT_FRAMES


def decode_size(display_width: int, display_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """Decode size: the display aspect kept, fitting the box (turned for portrait videos).

    Never larger than the source; sides are multiples of 16 (what scalers handle best).
    """
    if display_height > display_width:
        box_width, box_height = box_height, box_width
    scale = min(box_width / display_width, box_height / display_height, 1.0)
    step = DECODE_SIZE_MULTIPLE
    return (
        max(step, int(round(display_width * scale / step)) * step),
        max(step, int(round(display_height * scale / step)) * step),
    )


def window_middles(length: int, step: int) -> list[int]:
    """Frames each shot-network window predicts for ``length`` frames: whole steps, then the
    rest rounded up to :data:`TAIL_WINDOW_MULTIPLE` (at most a step).

    A split video's segments other than the last hold whole steps (``decode.segment_frames``
    is a multiple of the step), so its windows are the whole video's, cut alike.
    """
    whole, rest = divmod(max(0, length), step)
    tail = min(step, math.ceil(rest / TAIL_WINDOW_MULTIPLE) * TAIL_WINDOW_MULTIPLE)
    return [step] * whole + ([tail] if tail else [])


def shot_input_indices(start: int, end: int, video_frames: int, step: int) -> np.ndarray:
    """Frame numbers that make the shot network's padded input for frames ``[start, end)``.

    ``context`` frames either side, replicating the first/last frame beyond the video, and
    end padding up to the windows of :func:`window_middles`.
    """
    context = SHOT_CONTEXT_FRAMES
    padded_length = sum(window_middles(end - start, step))
    indices = np.arange(start - context, start + padded_length + context)
    return np.clip(indices, 0, video_frames - 1)


def sample_indices(start: int, end: int, stride: int) -> np.ndarray:
    """Global frame numbers in ``[start, end)`` that are multiples of ``stride``."""
    first = -(-start // stride) * stride
    return np.arange(first, end, stride, dtype=np.int64)
