from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ShotsConfig
from pipeline.shots import Shot, detect_shots, find_transitions, shots_from_transitions

CONFIG = ShotsConfig()


def probabilities(length: int, single: dict[int, float], many: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    s, m = np.zeros(length, np.float32), np.zeros(length, np.float32)
    for i, p in single.items():
        s[i] = p
    for i, p in many.items():
        m[i] = p
    return s, m


def test_cut_is_after_the_single_frame_peak() -> None:
    s, m = probabilities(100, {39: 0.97, 40: 0.3}, {39: 0.9})
    assert detect_shots(s, m, CONFIG) == [Shot(0, 39, "start", None), Shot(40, 99, "cut", pytest.approx(0.97))]


def test_dissolve_frames_belong_to_no_shot() -> None:
    s, m = probabilities(120, {55: 0.95}, {i: 0.9 for i in range(50, 62)})
    shots = detect_shots(s, m, CONFIG)
    assert [(x.start_frame, x.end_frame, x.transition) for x in shots] == [(0, 49, "start"), (62, 119, "gradual")]


def test_fade_with_weak_single_peak_is_found_through_the_many_head() -> None:
    # A fade as TransNetV2 reports it: single stays below 0.5, many is high with a dip.
    single = {i: 0.3 for i in range(80, 92)}
    many = {i: 0.7 for i in range(78, 94)}
    many.update({84: 0.45, 85: 0.4})
    s, m = probabilities(150, single, many)
    transitions = find_transitions(s, m, CONFIG)
    assert [(t.first_frame, t.last_frame, t.kind) for t in transitions] == [(78, 93, "gradual")]


def test_weak_candidates_are_not_transitions() -> None:
    s, m = probabilities(100, {30: 0.45}, {30: 0.4, 31: 0.45})
    assert find_transitions(s, m, CONFIG) == []
    assert detect_shots(s, m, CONFIG) == [Shot(0, 99, "start", None)]


def test_two_frame_extent_is_still_a_cut() -> None:
    s, m = probabilities(100, {49: 0.9}, {49: 0.8, 50: 0.6})
    assert [t.kind for t in find_transitions(s, m, CONFIG)] == ["cut"]


def test_short_shots_merge_into_the_previous_one() -> None:
    # Cuts after frames 29 and 32 leave a 3-frame shot (a flash), shorter than min_shot_frames.
    s, m = probabilities(80, {29: 0.9, 32: 0.9}, {})
    shots = detect_shots(s, m, ShotsConfig(min_shot_frames=6))
    assert [(x.start_frame, x.end_frame) for x in shots] == [(0, 32), (33, 79)]


def test_short_first_shot_merges_into_the_next() -> None:
    s, m = probabilities(60, {2: 0.9, 30: 0.9}, {})
    shots = detect_shots(s, m, ShotsConfig(min_shot_frames=6))
    assert [(x.start_frame, x.end_frame, x.transition) for x in shots] == [(0, 30, "start"), (31, 59, "cut")]


def test_shots_cover_the_video_in_order_without_overlap() -> None:
    rng = np.random.default_rng(7)
    s = (rng.random(2000) > 0.97).astype(np.float32) * 0.9
    m = np.convolve(s, np.ones(5), mode="same").clip(0, 1).astype(np.float32) * (rng.random(2000) > 0.5)
    shots = detect_shots(s, m, CONFIG)
    assert shots[0].start_frame == 0 and shots[-1].end_frame == 1999
    for a, b in zip(shots, shots[1:]):
        assert a.end_frame < b.start_frame
        if b.transition == "cut":
            assert b.start_frame == a.end_frame + 1
    assert all(x.num_frames >= CONFIG.min_shot_frames for x in shots[1:-1])


def test_single_frame_video() -> None:
    s, m = probabilities(1, {}, {})
    assert detect_shots(s, m, CONFIG) == [Shot(0, 0, "start", None)]
    assert shots_from_transitions([], 0, 6) == []


def test_mismatched_arrays_are_rejected() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        find_transitions(np.zeros(3), np.zeros(4), CONFIG)
