"""Segment maths: plans, the frames each segment needs, the shot network's input, samples."""

from __future__ import annotations

import subprocess
import sys

from pipeline.algorithms.segments import (
    Segment,
    decode_size,
    frames_to_decode,
    plan_segments,
    sample_indices,
    shot_input_indices,
    window_middles,
)
from pipeline.models.spec import SHOT_CONTEXT_FRAMES


def test_plan_segments_exact() -> None:
    assert plan_segments(0, 100) == []
    assert plan_segments(250, 100) == [Segment(0, 3, 0, 100), Segment(1, 3, 100, 200), Segment(2, 3, 200, 250)]
    assert plan_segments(100, 100) == [Segment(0, 1, 0, 100)]


def test_plan_covers_only_the_frames_held_and_the_last_segment_runs_to_the_declared_end() -> None:
    # The file: 3,033 frames declared, 1,553 held. Two segments, not three.
    assert plan_segments(3033, 1500, held_frames=1553) == [Segment(0, 2, 0, 1500), Segment(1, 2, 1500, 3033)]
    # An hour declared, 375 frames held: three segments instead of 600, 597 of them phantoms.
    assert plan_segments(90000, 150, held_frames=375) == [
        Segment(0, 3, 0, 150), Segment(1, 3, 150, 300), Segment(2, 3, 300, 90000)
    ]
    assert plan_segments(3033, 1500, held_frames=0) == [Segment(0, 1, 0, 3033)]
    assert plan_segments(250, 100, held_frames=400) == plan_segments(250, 100)  # never more than declared
    assert plan_segments(250, 100, held_frames=None) == plan_segments(250, 100)


def test_a_segment_needs_its_frames_and_the_context_either_side() -> None:
    assert SHOT_CONTEXT_FRAMES == 25
    first, middle, last = plan_segments(360, 150)
    assert frames_to_decode(first) == (0, 175)  # no frame before the first
    assert frames_to_decode(middle) == (125, 325)
    assert frames_to_decode(last) == (275, None)  # the last runs to the true end
    assert frames_to_decode(Segment(0, 1, 0, 10)) == (0, None)


def test_shot_input_pads_with_edge_frames_onto_the_window_grid() -> None:
    # Whole 60-frame video, step 50: 25 copies of frame 0, frames 0..59, frame 59 up to a step
    # and the rest rounded up to 25 (50 + 25 frames), then 25 more.
    indices = shot_input_indices(0, 60, 60, 50)
    assert len(indices) == 25 + 75 + 25
    assert indices[:26].tolist() == [0] * 26
    assert indices[25:85].tolist() == list(range(60))
    assert set(indices[85:].tolist()) == {59}
    # A middle segment takes real context frames on both sides.
    assert shot_input_indices(100, 200, 1000, 50).tolist() == list(range(75, 225))


def test_the_last_window_covers_only_the_frames_left() -> None:
    assert window_middles(60, 150) == [75]  # a 2.4 s clip: one window of 25 + 75 + 25 frames
    assert window_middles(150, 150) == [150]
    assert window_middles(301, 150) == [150, 150, 25]
    assert window_middles(140, 150) == [150]  # rounded up, never past a whole step
    assert window_middles(70, 60) == [60, 25]
    assert window_middles(0, 150) == []
    # A split video's windows are its whole windows, cut alike: segments of whole steps, and the
    # last segment's rest is the whole video's rest.
    assert window_middles(1500, 150) + window_middles(1, 150) == window_middles(1501, 150)


def test_sample_indices_are_global_multiples_of_the_stride() -> None:
    assert sample_indices(0, 20, 6).tolist() == [0, 6, 12, 18]
    assert sample_indices(100, 120, 6).tolist() == [102, 108, 114]


def test_decode_size_keeps_the_display_aspect() -> None:
    assert decode_size(1920, 1080, 256, 144) == (256, 144)
    assert decode_size(1080, 1920, 256, 144) == (144, 256)  # portrait: the box turns
    assert decode_size(640, 480, 256, 144) == (192, 144)
    assert decode_size(176, 144, 256, 144) == (176, 144)  # never larger than the source


def test_the_segment_maths_imports_no_torch() -> None:
    # In a fresh interpreter: this one has torch loaded by other tests.
    script = (
        "import sys\n"
        "import pipeline.algorithms.segments, pipeline.algorithms.frame_stats\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
