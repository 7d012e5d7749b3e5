from __future__ import annotations

import numpy as np
import pytest

from pipeline.algorithms.attention import attention_received, attention_weights, normalise
from pipeline.config import KeyframesConfig
from pipeline.algorithms.keyframes import (
    MAX_CENTRALITY_CANDIDATES,
    candidate_pool,
    centrality,
    select_keyframes,
)


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


def dense_received(embeddings: np.ndarray, temperature: float) -> np.ndarray:
    return attention_weights(embeddings, embeddings, temperature, mask_self=True).sum(axis=0)


@pytest.mark.parametrize("count", [1, 2, 3, 17, 250])
@pytest.mark.parametrize("block_bytes", [8, 8 * 7 * 250, 64 << 20])
def test_block_wise_attention_equals_the_dense_matrix(count: int, block_bytes: int) -> None:
    # 8 bytes: one row per block; 7 rows of 250; everything in one block.
    rng = np.random.default_rng(count)
    e = normalise(rng.normal(size=(count, 32))).astype(np.float32)
    for temperature in (0.05, 0.1, 1.0):
        np.testing.assert_allclose(
            attention_received(e, temperature, block_bytes=block_bytes), dense_received(e, temperature), rtol=0, atol=1e-9
        )


def test_block_wise_attention_equals_the_dense_matrix_on_near_duplicates() -> None:
    # A static shot: every frame nearly the same, where the softmax is flattest.
    rng = np.random.default_rng(5)
    e = normalise(np.ones((300, 64)) + 1e-3 * rng.normal(size=(300, 64)))
    np.testing.assert_allclose(attention_received(e, 0.1, block_bytes=8 * 300 * 16), dense_received(e, 0.1), atol=1e-9)
    assert attention_received(np.zeros((0, 4)), 0.1).shape == (0,)


def test_centrality_of_one_frame_is_one() -> None:
    np.testing.assert_array_equal(centrality(np.ones((1, 4)), 0.1), [1.0])


def test_candidate_pool_keeps_all_up_to_the_limit_then_spreads_evenly() -> None:
    np.testing.assert_array_equal(candidate_pool(5, limit=5), np.arange(5))
    pool = candidate_pool(101, limit=5)
    np.testing.assert_array_equal(pool, [0, 25, 50, 75, 100])
    pool = candidate_pool(100_000)
    assert len(pool) == MAX_CENTRALITY_CANDIDATES and pool[0] == 0 and pool[-1] == 99_999
    assert np.all(np.diff(pool) > 0)


def dense_keyframes(frames: np.ndarray, e: np.ndarray, duration_s: float, config: KeyframesConfig) -> list[tuple[int, int, float]]:
    """Selection as it was with the whole attention matrix: (candidate, frame, score) of each pick."""
    scores = dense_received(e, config.temperature) if len(e) > 1 else np.ones(1)
    wanted = min(len(frames), config.max_per_shot, 1 + int(duration_s // config.seconds_per_keyframe))
    parts = np.array_split(np.arange(len(frames)), wanted)
    picks = sorted((int(part[np.argmax(scores[part])]) for part in parts), key=lambda i: -scores[i])
    chosen: list[int] = []
    for i in picks:
        if chosen and float(np.max(e[chosen] @ e[i])) > config.redundancy_cosine:
            continue
        chosen.append(i)
    return [(i, int(frames[i]), float(scores[i])) for i in sorted(chosen)]


@pytest.mark.parametrize("seed", range(6))
def test_a_shot_within_the_limit_gets_the_keyframes_of_the_dense_matrix(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 600))
    # Clustered looks, so that redundancy and near-ties both occur.
    e = normalise(np.eye(8)[rng.integers(0, 8, count)] + 0.2 * rng.normal(size=(count, 8))).astype(np.float32)
    frames = np.sort(rng.choice(10 * count, count, replace=False))
    config = KeyframesConfig(max_per_shot=int(rng.integers(1, 8)), redundancy_cosine=float(rng.uniform(0.5, 1)))
    duration_s = float(rng.uniform(0, 60))
    picks = select_keyframes(frames, e, duration_s, config)
    expected = dense_keyframes(frames, e, duration_s, config)
    assert [(p.candidate, p.frame) for p in picks] == [(c, f) for c, f, _ in expected]
    np.testing.assert_allclose([p.score for p in picks], [s for _, _, s in expected], rtol=0, atol=1e-9)


def test_a_long_shot_picks_across_the_whole_shot() -> None:
    # Content changes every 1,000 of 10,000 frames: parts over the subsample still span the shot.
    looks = normalise(np.eye(10)[np.arange(10_000) // 1000] + 0.01)
    picks = select_keyframes(np.arange(10_000) * 6, looks, 10_000 * 6 / 25, KeyframesConfig())
    assert len(picks) == 5
    assert picks[0].frame < 2000 * 6 and picks[-1].frame >= 8000 * 6
    assert all(p.frame == p.candidate * 6 for p in picks)
