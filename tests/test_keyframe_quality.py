"""Keyframes never on mixed frames of a transition, black frames or flashes; the sharpest of
equally central frames; the decode stage's frame statistics; flashes in a generated clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.algorithms.attention import normalise
from pipeline.config import Config, KeyframesConfig
from pipeline.algorithms.frame_stats import COLOUR_FEATURES, frame_statistics, sharpness
from pipeline.algorithms.segments import Segment, plan_segments
from pipeline.media.decode import decode_segment
from pipeline.algorithms.keyframes import (
    CandidateQuality,
    fit_candidates,
    flash_frames,
    pick_in_part,
    select_keyframes,
    transition_nearby,
)
from pipeline.models.inference import predict_transitions
from pipeline.algorithms.shots import FrameLooks, find_transitions, is_flash
from pipeline.algorithms.stitch import SegmentResult, stitch_video
from testkit import synthetic

CONFIG = KeyframesConfig()


def spread_shot(count: int = 7) -> tuple[np.ndarray, np.ndarray, int]:
    """(frames, embeddings, position of the most central): frames on separate axes, and in the
    middle one that is the mean of them all (as a dissolve's frame blends two shots)."""
    axes = np.eye(count)
    centre = count // 2
    axes[centre] = 1.0
    return np.arange(count) * 6, normalise(axes).astype(np.float32), centre


def quality(count: int, **arrays: np.ndarray) -> CandidateQuality:
    """Quality of ``count`` candidates: fit (no transition, grey, no flash, equally sharp) unless overridden."""
    return CandidateQuality(
        arrays.get("transition", np.zeros(count)),
        arrays.get("luma", np.full(count, 100.0)),
        arrays.get("flash", np.zeros(count, bool)),
        arrays.get("sharpness", np.ones(count)),
    )


def test_the_most_central_frame_is_chosen_when_every_frame_is_fit() -> None:
    frames, embeddings, centre = spread_shot()
    assert [k.candidate for k in select_keyframes(frames, embeddings, 1.0, CONFIG)] == [centre]
    assert [k.candidate for k in select_keyframes(frames, embeddings, 1.0, CONFIG, quality(7))] == [centre]


@pytest.mark.parametrize(
    "unfit",
    [
        {"transition": np.array([0, 0, 0, 0.9, 0, 0, 0])},  # a dissolve's mixed frame
        {"luma": np.array([100, 100, 100, 5.0, 100, 100, 100])},  # black
        {"flash": np.array([0, 0, 0, 1, 0, 0, 0], bool)},
    ],
    ids=["mixed", "black", "flash"],
)
def test_an_unfit_frame_is_never_the_keyframe_however_central(unfit: dict[str, np.ndarray]) -> None:
    frames, embeddings, centre = spread_shot()
    picks = select_keyframes(frames, embeddings, 1.0, CONFIG, quality(7, **unfit))
    assert len(picks) == 1 and picks[0].candidate != centre


def test_only_fit_frames_compete() -> None:
    # Mixed frames left out of the attention too: frames 0-2 alike, 3-6 mixed and alike each other.
    embeddings = normalise(np.array([[1, 0.1], [1, 0], [1, -0.1], [0, 1], [0, 1], [0, 1], [0, 1]], np.float32))
    mixed = np.array([0, 0, 0, 0.8, 0.8, 0.8, 0.8])
    picks = select_keyframes(np.arange(7) * 6, embeddings, 1.0, CONFIG, quality(7, transition=mixed))
    assert [k.candidate for k in picks] == [1]


def test_a_dark_shot_still_gets_a_keyframe_and_black_is_given_up_first() -> None:
    dark = quality(4, luma=np.array([5.0, 6.0, 4.0, 7.0]), transition=np.array([0.9, 0, 0, 0]))
    assert fit_candidates(dark, CONFIG).tolist() == [1, 2, 3]  # black allowed, mixed still not
    everything_unfit = quality(3, transition=np.array([0.9, 0.3, 0.3]), luma=np.full(3, 2.0), flash=np.ones(3, bool))
    assert fit_candidates(everything_unfit, CONFIG).tolist() == [1, 2]  # the least likely mixed
    frames, embeddings, _ = spread_shot(3)
    assert len(select_keyframes(frames, embeddings, 1.0, CONFIG, everything_unfit)) == 1


def test_flashes_are_given_up_before_mixed_frames() -> None:
    flashes_and_mixed = quality(3, flash=np.array([1, 1, 0], bool), transition=np.array([0, 0, 0.9]))
    assert fit_candidates(flashes_and_mixed, CONFIG).tolist() == [0, 1]


def test_transition_probability_counts_a_couple_of_frames_either_side() -> None:
    many = np.array([0.0, 0.0, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(transition_nearby(many, 2), [0, 0, 0.6, 0.6, 0.6, 0.6, 0.6, 0, 0])
    assert transition_nearby(np.zeros(0), 2).shape == (0,)


def test_without_the_decode_statistics_only_mixed_frames_are_left_out() -> None:
    partial = CandidateQuality(np.array([0.0, 0.9, 0.0]))
    assert fit_candidates(partial, CONFIG).tolist() == [0, 2]
    with pytest.raises(ValueError, match="differ in length"):
        CandidateQuality(np.zeros(3), np.zeros(2))


def test_the_sharpest_of_equally_central_frames_is_chosen() -> None:
    same = normalise(np.ones((5, 4), np.float32))  # equal centrality
    blur = quality(5, sharpness=np.array([10.0, 40.0, 300.0, 80.0, 5.0]))
    assert [k.candidate for k in select_keyframes(np.arange(5) * 6, same, 1.0, CONFIG, blur)] == [2]
    most_central_only = KeyframesConfig(sharpness_weight=0.0)
    assert [k.candidate for k in select_keyframes(np.arange(5) * 6, same, 1.0, most_central_only, blur)] == [0]


def test_sharpness_weighs_against_centrality() -> None:
    scores = np.array([1.0, 0.9, 0.2])
    sharp = np.array([100.0, 400.0, 900.0])
    assert pick_in_part(scores, sharp, 0.5) == 1  # 0.9 x 20 beats 1.0 x 10 and 0.2 x 30
    assert pick_in_part(scores, sharp, 0.0) == 0
    assert pick_in_part(scores, None, 0.5) == 0
    assert pick_in_part(scores, np.zeros(3), 0.5) == 0  # no detail anywhere: the most central


def test_flash_frames_are_brighter_than_the_frames_around_them() -> None:
    luma = np.full(40, 60.0)
    luma[10] = 200.0  # a flash
    luma[20:23] = [180.0, 150.0, 120.0]  # a flash that fades over 3 frames
    luma[30:] = 160.0  # a lamp switched on: lasting, not a flash
    assert np.flatnonzero(flash_frames(luma, 20.0)).tolist() == [10, 20, 21, 22]
    assert flash_frames(np.zeros(0), 20.0).tolist() == []


# --- the decode stage's statistics -------------------------------------------------------


def test_frame_statistics_are_mean_luma_and_cell_colours() -> None:
    frames = np.zeros((2, 27, 48, 3), np.uint8)
    frames[0] = 100
    frames[1, :, :24] = (255, 0, 0)  # left half red, right half black
    luma, colours = frame_statistics(frames)
    np.testing.assert_allclose(luma, [100.0, 0.299 * 255 / 2], rtol=1e-5)
    assert colours.shape == (2, COLOUR_FEATURES) and colours.dtype == np.float32
    cells = colours[1].reshape(3, 4, 3)  # 3 rows x 4 columns of RGB
    np.testing.assert_allclose(cells[:, :2], np.broadcast_to([255.0, 0, 0], (3, 2, 3)))
    np.testing.assert_allclose(cells[:, 2:], 0.0)


def test_sharpness_is_higher_for_a_sharp_frame_than_a_blurred_one() -> None:
    rows, cols = np.indices((36, 64))
    checks = (rows // 2 + cols // 2) % 2 == 0  # 2-pixel checks: fine detail
    sharp = np.repeat(np.where(checks, 255, 0)[..., None], 3, axis=2).astype(np.uint8)
    blurred = np.repeat(np.where(checks, 127, 64)[..., None], 3, axis=2).astype(np.uint8)  # less contrast
    flat = np.full((36, 64, 3), 90, np.uint8)
    scores = sharpness(np.stack([sharp, blurred, flat]))
    assert scores[0] > scores[1] > scores[2] == 0.0
    assert sharpness(np.zeros((0, 36, 64, 3), np.uint8)).shape == (0,)


# --- generated clips ---------------------------------------------------------------------

#: A cut, a dissolve, a fade through black; a 2-frame flash at frames 30-31 of the first shot.
FLASH_SPEC = synthetic.ClipSpec(
    (
        synthetic.ShotSpec(60, 0, flashes=(synthetic.FlashSpec(30, (170, 90)),)),
        synthetic.ShotSpec(60, 1),
        synthetic.ShotSpec(60, 2),
        synthetic.ShotSpec(60, 3),
    ),
    (synthetic.TransitionSpec.cut(), synthetic.TransitionSpec.dissolve(16), synthetic.TransitionSpec.fade(16)),
    seed=5,
)


@pytest.fixture(scope="module")
def flash_clip(clips_dir: Path) -> tuple[Path, synthetic.ClipTruth]:
    path = clips_dir / "flash.mp4"
    return path, synthetic.write_clip(path, FLASH_SPEC)


def test_decoding_measures_the_flash_and_the_fade(flash_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    path, truth = flash_clip
    decoded = decode_segment(str(path), Segment(0, 1, 0, truth.num_frames), Config())
    assert decoded.frame_luma.shape == (truth.num_frames,) and decoded.frame_colours.shape == (truth.num_frames, 36)
    assert decoded.sample_sharpness.shape == decoded.sample_frames.shape and np.all(decoded.sample_sharpness > 0)
    assert np.flatnonzero(flash_frames(decoded.frame_luma, CONFIG.flash_luma_jump)).tolist() == [30, 31]
    fade = truth.transitions[2]
    assert decoded.frame_luma[(fade.first_frame + fade.last_frame) // 2] < CONFIG.black_luma
    looks = FrameLooks(decoded.frame_luma, decoded.frame_colours)
    config = Config().shots
    assert is_flash(29, 29, looks, config) and is_flash(31, 31, looks, config)  # a cut into or out of it
    cut = truth.transitions[0].first_frame - 1  # the outgoing shot's last frame
    assert not is_flash(cut, cut, looks, config)
    # Probabilities as if the network took the flash for a cut: it is dropped, the true cut kept.
    single = np.zeros(truth.num_frames, np.float32)
    single[[29, cut]] = 0.9
    assert [t.peak_frame for t in find_transitions(single, single.copy(), config, looks)] == [cut]


def test_keyframes_of_a_generated_clip_avoid_mixed_black_and_flash_frames(
    flash_clip: tuple[Path, synthetic.ClipTruth], shot_model: torch.nn.Module
) -> None:
    path, truth = flash_clip
    config = Config()
    decoded = decode_segment(str(path), Segment(0, 1, 0, truth.num_frames), config)
    single, many = predict_transitions(
        shot_model, decoded.shot_frames, window=config.shots.window_frames, batch_windows=1,
        device=torch.device("cpu"), precision=config.inference.precision,
    )
    count = decoded.num_frames
    bad = {30, 31}  # the flash
    for t in truth.transitions[1:]:
        bad |= set(range(t.first_frame, t.last_frame + 1))
    # Sampled frames of scattered looks, except that the bad ones look like the mean of all:
    # by centrality alone, a bad frame is the keyframe of any shot that holds one.
    samples = decoded.sample_frames
    embeddings = normalise(np.random.default_rng(3).normal(size=(len(samples), 64))).astype(np.float32)
    on_bad = np.isin(samples, sorted(bad))
    embeddings[on_bad] = normalise(embeddings.sum(axis=0))
    result = SegmentResult(
        0, 1, 0, count, single[:count], many[:count], samples, embeddings, [b""] * len(samples),
        frame_luma=decoded.frame_luma, frame_colours=decoded.frame_colours, sample_sharpness=decoded.sample_sharpness,
    )
    meta = {"video_id": "v", "uri": str(path), "fps": truth.fps}
    rows = stitch_video(meta, [result], config, "r", "d")
    assert [s["transition"] for s in rows.shots] == ["start", "cut", "gradual", "gradual"]
    frames = [k["frame"] for k in rows.keyframes]
    assert {k["shot_index"] for k in rows.keyframes} == {0, 1, 2, 3}
    assert not bad & set(frames)
    # Without the decode stage's statistics, the flash frame is the first shot's keyframe.
    bare = SegmentResult(0, 1, 0, count, single[:count], many[:count], samples, embeddings, [b""] * len(samples))
    assert 30 in [k["frame"] for k in stitch_video(meta, [bare], config, "r", "d").keyframes]
    assert all(decoded.frame_luma[f] >= CONFIG.black_luma for f in frames)


def test_segments_measure_what_the_whole_video_measures(flash_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    path, truth = flash_clip
    config = Config()
    whole = decode_segment(str(path), Segment(0, 1, 0, truth.num_frames), config)
    parts = [decode_segment(str(path), s, config) for s in plan_segments(truth.num_frames, 150)]
    assert len(parts) == 2
    for name in ("frame_luma", "frame_colours", "sample_sharpness"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))
