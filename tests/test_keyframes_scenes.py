from __future__ import annotations

import numpy as np

from pipeline.attention import attention_weights, normalise
from pipeline.config import KeyframesConfig, ScenesConfig
from pipeline.keyframes import centrality, select_keyframes
from pipeline.scenes import boundary_cohesion, scene_ranges


def unit(*rows: list[float]) -> np.ndarray:
    return normalise(np.array(rows, dtype=np.float64))


def test_attention_rows_sum_to_one_and_mask_self() -> None:
    e = unit([1, 0], [0.9, 0.1], [0, 1])
    w = attention_weights(e, e, 0.1, mask_self=True)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(np.diag(w) == 0)
    assert w[0, 1] > 0.99  # the near-duplicate takes almost all of frame 0's attention


def test_centrality_prefers_the_frame_most_like_the_rest() -> None:
    # Frames drift from A to B; the middle frame is most like everyone else.
    e = unit([1, 0, 0], [0.8, 0.6, 0], [0.6, 0.8, 0], [0.45, 0.9, 0], [0, 1, 0.3])
    scores = centrality(e, 0.1)
    assert int(np.argmax(scores)) == 2
    np.testing.assert_allclose(scores.sum(), len(e))


def test_one_keyframe_for_a_short_shot_at_its_most_central_frame() -> None:
    # Three near-identical frames, the third in their middle, and one unrelated frame.
    e = unit([1, 0.05, 0], [1, -0.05, 0], [1, 0, 0], [0, 0, 1])
    picks = select_keyframes(np.array([10, 16, 22, 28]), e, 1.5, KeyframesConfig())
    assert [p.frame for p in picks] == [22]
    assert picks[0].score > 1.0  # more central than the average frame


def test_long_shots_get_more_keyframes_spread_over_the_shot() -> None:
    # 12 s shot, content changes halfway: one keyframe per 4 s => 3 parts.
    first = [[1, 0, 0]] * 6
    second = [[0, 1, 0]] * 6
    e = unit(*(first + second))
    frames = np.arange(12) * 25
    picks = select_keyframes(frames, e, 12.0, KeyframesConfig(seconds_per_keyframe=4.0))
    # Parts [0..3], [4..7], [8..11]: parts 1 and 3 are redundant with each other only if
    # identical; the first and last part show different content, so both stay.
    assert len(picks) >= 2
    assert any(p.frame < 150 for p in picks) and any(p.frame >= 150 for p in picks)
    assert all(frames[0] <= p.frame <= frames[-1] for p in picks)


def test_redundant_keyframes_are_dropped() -> None:
    e = unit(*([[1, 0]] * 10))
    picks = select_keyframes(np.arange(10), e, 20.0, KeyframesConfig(seconds_per_keyframe=4.0, max_per_shot=5))
    assert len(picks) == 1


def test_keyframes_respect_the_cap_and_never_exceed_candidates() -> None:
    rng = np.random.default_rng(0)
    e = normalise(rng.normal(size=(3, 16)))
    picks = select_keyframes(np.array([0, 6, 12]), e, 100.0, KeyframesConfig(max_per_shot=5))
    assert len(picks) == 3
    assert select_keyframes(np.array([], dtype=np.int64), np.zeros((0, 16)), 1.0, KeyframesConfig()) == []


def test_unrelated_shots_are_separate_scenes() -> None:
    e = unit([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1])
    assert scene_ranges(e, ScenesConfig()) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_shot_reverse_shot_stays_one_scene_until_new_content() -> None:
    a, b, c, d = [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]
    jitter = 0.05
    e = unit(
        [1, jitter, 0, 0], [jitter, 1, 0, 0], a, b,  # A B A B: a dialogue
        [0, 0, 1, jitter], d, c, [0, 0, jitter, 1],  # C D C D: another place
    )
    assert scene_ranges(e, ScenesConfig()) == [(0, 3), (4, 7)]


def test_cohesion_is_high_inside_and_low_across_scenes() -> None:
    e = unit([1, 0], [1, 0.05], [0, 1], [0.05, 1])
    cohesion = boundary_cohesion(e, 3, 0.15)
    # Across boundary 0, shots 0 and 1 attend to each other about equally as to themselves.
    assert cohesion[1] < 0.01
    assert cohesion[0] > 0.2 and cohesion[2] > 0.2


def test_scenes_cover_every_shot_once_in_order() -> None:
    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 8))
    ranges = scene_ranges(e, ScenesConfig())
    covered = [s for first, last in ranges for s in range(first, last + 1)]
    assert covered == list(range(30))
    assert scene_ranges(np.zeros((0, 8)), ScenesConfig()) == []
    assert scene_ranges(e[:1], ScenesConfig()) == [(0, 0)]
