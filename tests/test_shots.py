from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ShotsConfig
from pipeline.algorithms.shots import (
    FrameLooks,
    Shot,
    Transition,
    detect_shots,
    find_transitions,
    join_black_frames,
    shots_from_transitions,
)

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


# --- flashes -----------------------------------------------------------------------------


def looks(length: int, luma: dict[int, float] | None = None, colour_at: dict[int, float] | None = None) -> FrameLooks:
    """Frames of mean luma 80 (``luma`` overrides some); colour layout 36 cells of ``colour_at``
    (the value from the last frame listed at or before each frame, 50 from the start)."""
    y = np.full(length, 80.0, np.float32)
    for i, v in (luma or {}).items():
        y[i] = v
    level = np.full(length, 50.0, np.float32)
    for first, v in sorted((colour_at or {}).items()):
        level[first:] = v
    colours = np.repeat(level[:, None], 36, axis=1)
    for i, v in (luma or {}).items():
        colours[i] = v  # a flash whitens the frame's layout too
    return FrameLooks(y, colours)


def test_a_flash_inside_a_shot_is_not_a_cut() -> None:
    # Frames 40-41 flash (luma 80 -> 230, 160); the network reports cuts into and out of it.
    s, m = probabilities(100, {39: 0.9, 41: 0.8}, {39: 0.6, 41: 0.5})
    flashing = looks(100, {40: 230.0, 41: 160.0})
    assert len(detect_shots(s, m, CONFIG)) == 2  # without the frames' looks: a false cut
    assert detect_shots(s, m, CONFIG, flashing) == [Shot(0, 99, "start", None)]


def test_a_flash_in_a_fast_pan_is_not_a_cut() -> None:
    # The layout drifts 4 per frame (a pan): across the flash it changes as much as beside it.
    y = np.full(100, 80.0, np.float32)
    y[50] = 250.0
    colours = np.repeat((np.arange(100, dtype=np.float32) * 4.0)[:, None], 36, axis=1)
    s, m = probabilities(100, {49: 0.95}, {49: 0.7})
    assert find_transitions(s, m, CONFIG, FrameLooks(y, colours)) == []


def test_a_three_frame_flash_read_as_gradual_is_dropped_too() -> None:
    s, m = probabilities(100, {61: 0.8}, {60: 0.7, 61: 0.8, 62: 0.6})
    assert [t.kind for t in find_transitions(s, m, CONFIG)] == ["gradual"]
    assert find_transitions(s, m, CONFIG, looks(100, {60: 240.0, 61: 200.0, 62: 150.0})) == []


def test_a_cut_into_a_bright_shot_is_kept() -> None:
    # Frames 50.. are a bright shot of other colours: no bright run ends, the sides differ.
    bright = looks(100, {i: 220.0 for i in range(50, 100)}, {50: 200.0})
    s, m = probabilities(100, {49: 0.9}, {49: 0.8})
    assert [(t.peak_frame, t.kind) for t in find_transitions(s, m, CONFIG, bright)] == [(49, "cut")]


def test_a_short_bright_shot_between_two_others_is_not_a_flash() -> None:
    # Two bright frames between shots of different colours: brighter than both sides, but the
    # frames either side are of different shots, so both cuts stay.
    between = looks(100, {50: 230.0, 51: 230.0}, {50: 230.0, 52: 120.0})
    s, m = probabilities(100, {49: 0.9, 51: 0.9}, {49: 0.8, 51: 0.8})
    assert [t.peak_frame for t in find_transitions(s, m, CONFIG, between)] == [49, 51]


def test_a_bright_run_longer_than_a_flash_is_kept() -> None:
    longest = CONFIG.flash_max_frames
    long_light = looks(100, {i: 230.0 for i in range(40, 41 + longest)})
    s, m = probabilities(100, {39: 0.9}, {39: 0.8})
    assert [t.peak_frame for t in find_transitions(s, m, CONFIG, long_light)] == [39]
    one_shorter = looks(100, {i: 230.0 for i in range(40, 40 + longest)})
    assert find_transitions(s, m, CONFIG, one_shorter) == []


def test_a_dim_flash_is_not_a_flash() -> None:
    # A rise of 15, under flash_luma_jump (20): brightness alone does not drop a cut.
    s, m = probabilities(100, {39: 0.9}, {39: 0.8})
    assert len(find_transitions(s, m, CONFIG, looks(100, {40: 95.0}))) == 1


def test_frame_looks_must_cover_every_frame() -> None:
    s, m = probabilities(10, {}, {})
    with pytest.raises(ValueError, match="frame looks cover 9 frames, probabilities 10"):
        find_transitions(s, m, CONFIG, looks(9))
    with pytest.raises(ValueError, match="frame looks differ in shape"):
        FrameLooks(np.zeros(3, np.float32), np.zeros((4, 36), np.float32))


# --- black frames ------------------------------------------------------------------------


def black_at(length: int, *runs: range) -> np.ndarray:
    """Which of ``length`` frames are black: those in ``runs``."""
    black = np.zeros(length, bool)
    for run in runs:
        black[run.start : run.stop] = True
    return black


def test_a_black_hold_between_a_fade_out_and_a_fade_in_joins_them() -> None:
    # Fade out over 40-47, black 48-59, fade in over 60-67: two transitions with black between.
    fade_out, fade_in = Transition(40, 47, 44, "gradual", 0.8), Transition(60, 67, 64, "gradual", 0.9)
    joined = join_black_frames([fade_out, fade_in], black_at(120, range(48, 60)))
    assert joined == [Transition(40, 67, 64, "gradual", 0.9)]


def test_a_fade_with_no_hold_is_left_alone() -> None:
    fade = Transition(40, 55, 47, "gradual", 0.8)
    assert join_black_frames([fade], black_at(120, range(47, 49))) == [fade]  # its black frames are its own


def test_a_cut_to_black_and_a_cut_from_black_are_one_gradual_transition() -> None:
    # Cuts after frame 29 (into black) and after frame 39 (out of it).
    cuts = [Transition(29, 29, 29, "cut", 0.9), Transition(39, 39, 39, "cut", 0.95)]
    assert join_black_frames(cuts, black_at(80, range(30, 40))) == [Transition(30, 39, 39, "gradual", 0.95)]


def test_black_frames_away_from_a_transition_change_nothing() -> None:
    cut = Transition(29, 29, 29, "cut", 0.9)
    assert join_black_frames([cut], black_at(80, range(50, 60))) == [cut]
    assert join_black_frames([], black_at(30, range(0, 30))) == []


def test_black_frames_at_the_edges_join_the_transition_beside_them() -> None:
    fade_in, fade_out = Transition(10, 17, 14, "gradual", 0.8), Transition(70, 77, 74, "gradual", 0.8)
    joined = join_black_frames([fade_in, fade_out], black_at(90, range(0, 10), range(78, 90)))
    assert joined == [Transition(0, 17, 14, "gradual", 0.8), Transition(70, 89, 74, "gradual", 0.8)]


def test_a_fade_through_black_makes_two_shots_and_no_black_one() -> None:
    # The network's picture of a fade through black: many high over the fading frames, low on the
    # black hold (frames 48-59, luma 0), a weak single peak in each half.
    many = {i: 0.8 for i in [*range(40, 48), *range(60, 68)]}
    s, m = probabilities(120, {44: 0.6, 64: 0.7}, many)
    frames = looks(120, {i: 0.0 for i in range(48, 60)})
    assert [(x.start_frame, x.end_frame, x.transition) for x in detect_shots(s, m, CONFIG)] == [
        (0, 39, "start"), (48, 59, "gradual"), (68, 119, "gradual")
    ]  # without the frames' luma: a shot of black alone
    shots = detect_shots(s, m, CONFIG, frames)
    assert [(x.start_frame, x.end_frame, x.transition) for x in shots] == [(0, 39, "start"), (68, 119, "gradual")]
    assert shots[1].boundary_score == pytest.approx(0.8)
    # Whatever is called black: here nothing is, and the hold is a shot again.
    assert len(detect_shots(s, m, CONFIG, frames, black_luma=0.0)) == 3


def test_a_video_that_is_black_throughout_is_one_shot() -> None:
    s, m = probabilities(50, {}, {})
    assert detect_shots(s, m, CONFIG, looks(50, {i: 0.0 for i in range(50)})) == [Shot(0, 49, "start", None)]
