"""Scene and keyframe scores, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scene_metrics import (
    BoundaryCounts,
    boundaries,
    coverage_overflow,
    in_ranges,
    is_black,
    laplacian_variance,
    match_boundaries,
    mean_iou,
    scene_ious,
    scenes_from_starts,
)

#: Three true scenes of 30, 30 and 40 frames.
TRUTH = [(0, 29), (30, 59), (60, 99)]


def test_scenes_from_starts_tiles_the_video() -> None:
    assert scenes_from_starts([60, 30, 0, 60, 150], 100) == TRUTH
    assert scenes_from_starts([], 5) == [(0, 4)]
    assert boundaries(TRUTH) == [30, 60]


def test_perfect_segmentation() -> None:
    counts = match_boundaries(boundaries(TRUTH), boundaries(TRUTH))
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 1.0, 1.0)
    co = coverage_overflow(TRUTH, TRUTH)
    assert (co.coverage, co.overflow, co.f_co) == (1.0, 0.0, 1.0)
    assert mean_iou(TRUTH, TRUTH) == 1.0


def test_all_merged_into_one_scene() -> None:
    merged = [(0, 99)]
    counts = match_boundaries(boundaries(TRUTH), boundaries(merged))
    assert counts == BoundaryCounts(true_positives=0, predicted=0, actual=2)
    assert (counts.precision, counts.recall, counts.f1) == (1.0, 0.0, 0.0)
    co = coverage_overflow(TRUTH, merged)
    # Every true scene lies whole inside the one scene (C = 1); each spills 70, 70 and 60
    # frames against neighbours of 30, 70 and 30 frames: overflow 1 everywhere (capped).
    assert (co.coverage, co.overflow, co.f_co) == (1.0, 1.0, 0.0)
    assert scene_ious(TRUTH, merged) == [0.3, 0.3, 0.4]
    assert mean_iou(TRUTH, merged) == pytest.approx(1 / 3)


def test_all_split_into_ten_frame_scenes() -> None:
    split = scenes_from_starts(range(0, 100, 10), 100)
    counts = match_boundaries(boundaries(TRUTH), boundaries(split))
    # 30 matches 20 (the first within 12 frames), 60 matches 50: 2 of 9 predictions.
    assert counts == BoundaryCounts(true_positives=2, predicted=9, actual=2)
    assert counts.precision == pytest.approx(2 / 9)
    assert counts.f1 == pytest.approx(4 / 11)
    co = coverage_overflow(TRUTH, split)
    # Coverage 10/30, 10/30, 10/40 weighted by 30, 30, 40 frames: 30/100; nothing spills.
    assert co.coverage == pytest.approx(0.3)
    assert co.overflow == 0.0
    assert co.f_co == pytest.approx(6 / 13)
    assert mean_iou(TRUTH, split) == pytest.approx(11 / 36)


def test_boundaries_exactly_at_the_tolerance_match_and_one_frame_more_do_not() -> None:
    at = match_boundaries([30, 60], [42, 72])
    assert (at.true_positives, at.f1) == (2, 1.0)
    early = match_boundaries([30, 60], [18, 48])
    assert early.true_positives == 2
    beyond = match_boundaries([30, 60], [43, 73])
    assert (beyond.true_positives, beyond.precision, beyond.recall, beyond.f1) == (0, 0.0, 0.0, 0.0)
    narrower = match_boundaries([30, 60], [42, 72], tolerance_frames=11)
    assert narrower.true_positives == 0


def test_matching_is_one_to_one() -> None:
    counts = match_boundaries([30], [25, 35])
    assert counts == BoundaryCounts(true_positives=1, predicted=2, actual=1)
    assert counts.f1 == pytest.approx(2 / 3)
    assert match_boundaries([], []).f1 == 1.0


def test_coverage_overflow_and_iou_of_boundaries_twelve_frames_late() -> None:
    late = scenes_from_starts([42, 72], 100)  # (0, 41), (42, 71), (72, 99)
    co = coverage_overflow(TRUTH, late)
    # Coverage 30/30, 18/30, 28/40; overflow 12/30, (30 + 12)/70, 18/30.
    assert co.coverage == pytest.approx((30 + 18 + 28) / 100)
    assert co.overflow == pytest.approx((0.4 * 30 + 0.6 * 30 + 0.6 * 40) / 100)
    assert co.f_co == pytest.approx(2 * 0.76 * 0.46 / 1.22)
    assert scene_ious(TRUTH, late) == pytest.approx([30 / 42, 18 / 42, 28 / 40])


def test_totals_pool_the_counts_of_videos() -> None:
    total = BoundaryCounts(1, 2, 2) + BoundaryCounts(1, 1, 2)
    assert total == BoundaryCounts(2, 3, 4)
    pooled = coverage_overflow(TRUTH, TRUTH) + coverage_overflow(TRUTH, [(0, 99)])
    assert (pooled.coverage, pooled.overflow) == (1.0, 0.5)


def test_one_scene_video() -> None:
    one = [(0, 49)]
    co = coverage_overflow(one, one)
    assert (co.coverage, co.overflow, co.f_co) == (1.0, 0.0, 1.0)
    co_split = coverage_overflow(one, [(0, 24), (25, 49)])
    assert (co_split.coverage, co_split.overflow) == (0.5, 0.0)
    assert match_boundaries([], [25]).f1 == 0.0


def test_keyframe_checks() -> None:
    assert in_ranges([5, 10, 15, 30], [(10, 12), (29, 31)]) == 2
    assert is_black(np.zeros((4, 4, 3), np.uint8))
    assert not is_black(np.full((4, 4, 3), 16, np.uint8))
    assert is_black(np.full((4, 4, 3), 15, np.uint8))
    assert laplacian_variance(np.full((6, 6), 200, np.uint8)) == 0.0
    dot = np.zeros((5, 5), np.uint8)
    dot[2, 2] = 1
    # Laplacian over the 3x3 interior: -4 at the dot, +1 at its four neighbours, 0 elsewhere.
    assert laplacian_variance(dot) == pytest.approx(20 / 9)
