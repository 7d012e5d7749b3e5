"""Properties of the pure algorithms over random inputs, empty and extreme ones included.

Shots from probabilities, segment planning, stitching segments, keyframes and scenes: each
has invariants that must hold for every input, not only for the hand-built examples of its
own test module.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.algorithms.attention import normalise
from pipeline.algorithms.frame_stats import STILL_MOTION
from pipeline.config import (
    Config,
    KeyframesConfig,
    ScenesConfig,
    ShotsConfig,
)
from pipeline.models.spec import SHOT_CONTEXT_FRAMES
from pipeline.algorithms.segments import plan_segments, sample_indices, shot_input_indices
from pipeline.algorithms.keyframes import CandidateQuality, fit_candidates, select_keyframes
from pipeline.algorithms.scenes import scene_ranges
from pipeline.algorithms.shots import FrameLooks, detect_shots, find_transitions
from pipeline.algorithms.stitch import SegmentResult, frame_clock, stitch_video

#: Enough examples to reach the edge cases (a shot at the last frame, an empty segment) while
#: the module runs in seconds; no deadline, as the first call of an example warms up numpy.
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Probabilities around every threshold, and anything in between.
PROBABILITY = st.one_of(st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.9, 1.0]), st.floats(0, 1, width=32))


@st.composite
def probabilities(draw: st.DrawFn, min_frames: int = 0, max_frames: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(single, many) per-frame probabilities of one video, possibly empty."""
    frames = draw(st.integers(min_frames, max_frames))
    single = draw(arrays(np.float32, frames, elements=PROBABILITY))
    many = draw(arrays(np.float32, frames, elements=PROBABILITY))
    return single, many


@st.composite
def shots_configs(draw: st.DrawFn) -> ShotsConfig:
    """Valid post-processing settings (the ranges that config validation accepts)."""
    low, high = sorted(draw(st.lists(st.floats(0.01, 0.99), min_size=2, max_size=2)))
    jump = draw(st.floats(1, 200))
    return ShotsConfig(
        threshold=high,
        low_threshold=low,
        extent_threshold=draw(st.floats(0.01, 0.99)),
        gradual_min_frames=draw(st.integers(2, 8)),
        min_shot_frames=draw(st.integers(1, 40)),
        flash_max_frames=draw(st.integers(0, 6)),
        flash_luma_jump=jump,
        flash_min_rise=draw(st.floats(0, 1)) * jump,
        flash_max_colour_change=draw(st.floats(0, 50)),
    )


#: Luma of frames: mostly a level, with bright spikes and black frames.
LUMA = st.one_of(st.sampled_from([0.0, 10.0, 80.0, 80.0, 80.0, 250.0]), st.floats(0, 255, width=32))


@st.composite
def frame_looks(draw: st.DrawFn, frames: int) -> FrameLooks:
    """What ``frames`` frames look like: luma and a colour layout of a few levels."""
    luma = draw(arrays(np.float32, frames, elements=LUMA))
    levels = draw(arrays(np.float32, frames, elements=st.sampled_from([0.0, 50.0, 52.0, 200.0])))
    return FrameLooks(luma, np.repeat(levels[:, None], 36, axis=1))


# --- shots -------------------------------------------------------------------------------


@PROPERTIES
@given(probabilities(), shots_configs())
def test_transitions_are_ordered_disjoint_and_well_formed(probs: tuple[np.ndarray, np.ndarray], config: ShotsConfig) -> None:
    single, many = probs
    transitions = find_transitions(single, many, config)
    for t in transitions:
        assert 0 <= t.first_frame <= t.last_frame < len(single)
        assert t.score > config.threshold
        if t.kind == "cut":
            assert t.first_frame == t.last_frame == t.peak_frame
        else:
            assert t.kind == "gradual" and t.last_frame - t.first_frame + 1 >= config.gradual_min_frames
    for a, b in itertools.pairwise(transitions):
        assert a.last_frame < b.first_frame and a.peak_frame < b.peak_frame


@PROPERTIES
@given(probabilities().flatmap(lambda p: st.tuples(st.just(p), frame_looks(len(p[0])))), shots_configs())
def test_the_flash_filter_only_drops_transitions(
    probs_and_looks: tuple[tuple[np.ndarray, np.ndarray], FrameLooks], config: ShotsConfig
) -> None:
    (single, many), looks = probs_and_looks
    kept = find_transitions(single, many, config, looks)
    assert set(kept) <= set(find_transitions(single, many, config))
    if config.flash_max_frames == 0:
        assert kept == find_transitions(single, many, config)


@PROPERTIES
@given(
    probabilities().flatmap(lambda p: st.tuples(st.just(p), st.one_of(st.none(), frame_looks(len(p[0]))))),
    shots_configs(),
)
def test_shots_cover_the_video_in_order(
    probs_and_looks: tuple[tuple[np.ndarray, np.ndarray], FrameLooks | None], config: ShotsConfig
) -> None:
    (single, many), looks = probs_and_looks
    frames = len(single)
    shots = detect_shots(single, many, config, looks)
    if frames == 0:
        assert shots == []
        return
    assert shots[0].start_frame == 0 and shots[-1].end_frame == frames - 1
    assert shots[0].transition == "start" and shots[0].boundary_score is None
    for shot in shots:
        # Shorter than min_shot_frames only when the whole video is.
        assert shot.start_frame <= shot.end_frame and shot.num_frames >= min(config.min_shot_frames, frames)
    for a, b in itertools.pairwise(shots):
        assert b.transition in ("cut", "gradual") and b.boundary_score is not None
        assert b.boundary_score > config.threshold
        if b.transition == "cut":
            assert b.start_frame == a.end_frame + 1  # every frame in exactly one shot
        else:
            assert b.start_frame > a.end_frame + 1  # a dissolve's frames belong to neither shot
    covered = np.zeros(frames, np.int64)
    for shot in shots:
        covered[shot.start_frame : shot.end_frame + 1] += 1
    assert covered.max() == 1
    # The only frames outside every shot are those of the gradual transitions before a shot.
    gaps = {f for a, b in itertools.pairwise(shots) for f in range(a.end_frame + 1, b.start_frame)}
    assert set(np.flatnonzero(covered == 0).tolist()) == gaps


@PROPERTIES
@given(
    probabilities(min_frames=1).flatmap(lambda p: st.tuples(st.just(p), frame_looks(len(p[0])))),
    shots_configs(),
    st.sampled_from([5.0, 16.0, 81.0]),
)
def test_no_shot_is_black_alone_unless_the_video_is_one_shot(
    probs_and_looks: tuple[tuple[np.ndarray, np.ndarray], FrameLooks], config: ShotsConfig, black_luma: float
) -> None:
    (single, many), looks = probs_and_looks
    shots = detect_shots(single, many, config, looks, black_luma)
    black = looks.luma < black_luma
    if len(shots) > 1:
        assert not any(black[s.start_frame : s.end_frame + 1].all() for s in shots)


@PROPERTIES
@given(st.integers(0, 50), shots_configs())
def test_a_video_without_transitions_is_one_shot(frames: int, config: ShotsConfig) -> None:
    quiet = np.zeros(frames, np.float32)
    expected = [(0, frames - 1, "start")] if frames else []
    assert [(s.start_frame, s.end_frame, s.transition) for s in detect_shots(quiet, quiet, config)] == expected


# --- segment planning --------------------------------------------------------------------


@PROPERTIES
@given(
    st.integers(0, 5000),
    st.integers(1, 4),
    st.integers(1, 200),
    st.one_of(st.none(), st.integers(-10, 6000)),
    st.integers(0, 4),
)
def test_segments_tile_the_video_on_the_window_grid(
    frames: int, windows: int, step: int, held: int | None, halve_last: int
) -> None:
    segment_frames = windows * step  # config validation: a positive multiple of the step
    whole = plan_segments(frames, segment_frames, held_frames=held)
    segments = plan_segments(frames, segment_frames, held_frames=held, halve_last=halve_last, step=step)
    if frames == 0:
        assert segments == whole == []
        return
    assert [s.index for s in segments] == list(range(len(segments)))
    assert all(s.count == len(segments) for s in segments)
    assert segments[0].start_frame == 0 and segments[-1].end_frame == frames
    assert all(s.start_frame % step == 0 and s.start_frame < s.end_frame for s in segments)
    for a, b in itertools.pairwise(whole):
        assert a.end_frame == b.start_frame and a.end_frame - a.start_frame == segment_frames
    # Halving: the whole segments before the last ``halve_last`` stay as they are; those are cut
    # in pieces of half a segment on the grid (thirds and so on where half is off it), where the
    # video has two segments or more and a piece smaller than a segment fits the grid.
    kept = len(whole) - halve_last if halve_last and len(whole) > 1 and windows > 1 else len(whole)
    kept = max(0, kept)
    assert [(s.start_frame, s.end_frame) for s in segments[:kept]] == [(s.start_frame, s.end_frame) for s in whole[:kept]]
    cut = segments[kept:]
    assert len(cut) >= len(whole) - kept
    if kept < len(whole):
        piece = max(step, segment_frames // 2 // step * step)
        assert cut[0].start_frame == whole[kept].start_frame
        assert all(s.end_frame - s.start_frame == piece for s in cut[:-1])
        assert held is not None or cut[-1].end_frame - cut[-1].start_frame <= piece
    else:
        assert segments == whole


@PROPERTIES
@given(st.integers(1, 3000), st.integers(1, 3), st.integers(1, 150), st.integers(1, 12), st.integers(0, 3))
def test_segment_inputs_and_samples_equal_the_whole_video_s(
    frames: int, windows: int, step: int, stride: int, halve_last: int
) -> None:
    """The windows the shot network sees and the sampled frames do not depend on segmentation
    (a run's last video's last segments halved included)."""
    context = SHOT_CONTEXT_FRAMES

    def windows_of(indices: np.ndarray) -> list[list[int]]:
        # Whole steps, then at most one shorter window (the video's last frames).
        middle = len(indices) - 2 * context
        assert middle > 0 and indices.min() >= 0 and indices.max() <= frames - 1
        return [indices[k : k + min(step, middle - k) + 2 * context].tolist() for k in range(0, middle, step)]

    segments = plan_segments(frames, windows * step, halve_last=halve_last, step=step)
    whole = windows_of(shot_input_indices(0, frames, frames, step))
    split = [w for s in segments for w in windows_of(shot_input_indices(s.start_frame, s.end_frame, frames, step))]
    assert split == whole
    # Only the last window may be short, and it still covers the video's last frames.
    assert all(len(w) == step + 2 * context for w in whole[:-1])
    assert whole[-1][-context - 1] >= frames - 1 or len(whole[-1]) == step + 2 * context
    samples = np.concatenate([sample_indices(s.start_frame, s.end_frame, stride) for s in segments])
    np.testing.assert_array_equal(samples, np.arange(0, frames, stride))
    # Inside the context, a segment's input is its own frames in order.
    for s in segments:
        own = shot_input_indices(s.start_frame, s.end_frame, frames, step)
        length = s.end_frame - s.start_frame
        np.testing.assert_array_equal(own[SHOT_CONTEXT_FRAMES : SHOT_CONTEXT_FRAMES + length], np.arange(s.start_frame, s.end_frame))


# --- stitching ---------------------------------------------------------------------------

META = {"video_id": "vid", "uri": "file:///v.mp4", "size_bytes": 10, "fps": 25.0, "width": 320, "height": 180}


@dataclasses.dataclass
class ModelOutput:
    """Everything the models say about one whole video."""

    single: np.ndarray
    many: np.ndarray
    stride: int
    embeddings: np.ndarray
    frame_times: np.ndarray | None
    #: The decode stage's statistics, or None (a row from before they were measured).
    looks: FrameLooks | None = None
    sharpness: np.ndarray | None = None
    #: Each frame's change from the frame before (0-1), or None.
    motion: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return len(self.single)

    def segment(self, index: int, count: int, start: int, stop: int) -> SegmentResult:
        """The models' output for frames ``[start, stop)`` as one segment."""
        samples = sample_indices(start, stop, self.stride)
        rows = samples // self.stride
        return SegmentResult(
            index, count, start, stop - start, self.single[start:stop], self.many[start:stop], samples,
            self.embeddings[rows], [f"jpeg{f}".encode() for f in samples],
            frame_times=None if self.frame_times is None else self.frame_times[start:stop],
            frame_luma=None if self.looks is None else self.looks.luma[start:stop],
            frame_colours=None if self.looks is None else self.looks.colours[start:stop],
            sample_sharpness=None if self.sharpness is None else self.sharpness[rows],
            frame_motion=None if self.motion is None else self.motion[start:stop],
        )


@st.composite
def model_outputs(draw: st.DrawFn) -> ModelOutput:
    single, many = draw(probabilities(min_frames=1, max_frames=400))  # no frame at all is an error
    stride = draw(st.integers(1, 8))
    samples = len(range(0, len(single), stride))
    # Few distinct looks plus noise, as float16 like the embedding stage; rows may be zero.
    looks = draw(arrays(np.float16, (samples, 6), elements=st.sampled_from([0.0, 0.1, 1.0, -1.0])))
    times = draw(
        st.one_of(
            st.none(),
            arrays(np.float64, len(single), elements=st.floats(0.001, 0.2)).map(lambda d: 3.0 + np.cumsum(d)),
            arrays(np.float64, len(single), elements=st.floats(0, 10)),  # broken timestamps
        )
    )
    statistics = draw(st.booleans())
    frame_stats = draw(frame_looks(len(single))) if statistics else None
    sharpness = draw(arrays(np.float32, samples, elements=st.floats(0, 1e4, width=32))) if statistics else None
    motion = draw(arrays(np.float32, len(single), elements=st.floats(0, 1, width=32))) if statistics else None
    return ModelOutput(single, many, stride, looks, times, frame_stats, sharpness, motion)


def rows_without_volatile(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with arrays as lists and the wall-clock time dropped, comparable with ``==``."""
    return [
        {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items() if k != "indexed_at"} for r in rows
    ]


@PROPERTIES
@given(model_outputs(), st.lists(st.floats(0, 1), max_size=6), st.integers(0, 2), st.randoms(use_true_random=False))
def test_stitched_segments_equal_the_whole_video(
    output: ModelOutput, cut_fractions: list[float], empty_tail: int, order: Any
) -> None:
    frames = output.frames
    cuts = sorted({int(f * frames) for f in cut_fractions} - {0, frames})
    bounds = [0, *cuts, frames]
    count = len(bounds) - 1 + empty_tail  # a decoder may return nothing for the last segments
    parts = [output.segment(i, count, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    parts += [output.segment(i, count, frames, frames) for i in range(len(bounds) - 1, count)]
    order.shuffle(parts)  # arrival order does not matter
    whole = stitch_video(META, [output.segment(0, 1, 0, frames)], Config(), "r", "d")
    split = stitch_video(META, parts, Config(), "r", "d")
    for table in ("shots", "scenes", "keyframes"):
        assert rows_without_volatile(getattr(split, table)) == rows_without_volatile(getattr(whole, table))
    assert rows_without_volatile([split.video]) == rows_without_volatile([whole.video])
    # Curation signals: on their scales where measured, null where not, still exactly below the line.
    for shot in split.shots:
        measured = output.looks is not None
        sampled = any(shot["start_frame"] <= f <= shot["end_frame"] for f in range(0, frames, output.stride))
        assert (shot["brightness"] is not None) == measured
        assert (shot["sharpness"] is not None) == (measured and sampled)
        assert (shot["motion"] is not None) == (measured and shot["end_frame"] > shot["start_frame"])
        assert shot["still"] == (None if shot["motion"] is None else shot["motion"] < STILL_MOTION)
        if shot["motion"] is not None:
            assert 0 <= shot["motion"] <= 1 + 1e-6
        if measured:
            assert 0 <= shot["brightness"] <= 1 + 1e-6 and (shot["sharpness"] is None or shot["sharpness"] >= 0)
    starts, ends = frame_clock(sorted(parts, key=lambda p: p.index), frames, 25.0)
    whole_starts, whole_ends = frame_clock([output.segment(0, 1, 0, frames)], frames, 25.0)
    np.testing.assert_array_equal(starts, whole_starts)
    np.testing.assert_array_equal(ends, whole_ends)
    assert len(starts) == frames and np.all(ends > starts) and starts[0] == 0.0


# --- keyframes ---------------------------------------------------------------------------


@st.composite
def shots_to_select_in(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """(frames ascending, unit-norm embeddings) of one shot; duplicates and opposites likely."""
    count = draw(st.integers(0, 60))
    dim = draw(st.integers(1, 8))
    raw = draw(arrays(np.float32, (count, dim), elements=st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e-3])))
    raw[np.all(raw == 0, axis=1), 0] = 1.0  # unit-norm embeddings, as the contract says
    frames = np.sort(draw(arrays(np.int64, count, elements=st.integers(0, 10**6), unique=True)))
    return frames, normalise(raw).astype(np.float32)


keyframes_configs = st.builds(
    KeyframesConfig,
    seconds_per_keyframe=st.floats(0.01, 100),
    max_per_shot=st.integers(1, 10),
    redundancy_cosine=st.floats(-1.0, 1.0),
    temperature=st.one_of(st.floats(1e-3, 10), st.sampled_from([1e-6, 1e6])),
    black_luma=st.floats(0, 255),
    flash_luma_jump=st.floats(0.1, 255),
    transition_probability=st.floats(0.01, 0.99),
    sharpness_weight=st.one_of(st.just(0.0), st.floats(0, 4)),
)


@st.composite
def candidate_qualities(draw: st.DrawFn, count: int) -> CandidateQuality | None:
    """Quality of ``count`` candidates: none, only the transition head, or everything."""
    kind = draw(st.sampled_from(["none", "transition", "all"]))
    if kind == "none":
        return None
    transition = draw(arrays(np.float32, count, elements=PROBABILITY))
    if kind == "transition":
        return CandidateQuality(transition)
    return CandidateQuality(
        transition,
        draw(arrays(np.float32, count, elements=LUMA)),
        draw(arrays(np.bool_, count)),
        draw(arrays(np.float32, count, elements=st.sampled_from([0.0, 1.0, 50.0, 1e4]))),
    )


@PROPERTIES
@given(
    shots_to_select_in().flatmap(lambda s: st.tuples(st.just(s), candidate_qualities(len(s[0])))),
    st.floats(0, 10**5),
    keyframes_configs,
)
def test_keyframes_are_few_distinct_sorted_and_inside_the_shot(
    shot_and_quality: tuple[tuple[np.ndarray, np.ndarray], CandidateQuality | None],
    duration_s: float,
    config: KeyframesConfig,
) -> None:
    (frames, embeddings), quality = shot_and_quality
    picks = select_keyframes(frames, embeddings, duration_s, config, quality)
    if len(frames) == 0:
        assert picks == []
        return
    fit = fit_candidates(quality, config) if quality is not None else np.arange(len(frames))
    assert len(fit) >= 1 and {p.candidate for p in picks} <= set(fit.tolist())  # only fit ones
    assert 1 <= len(picks) <= min(config.max_per_shot, len(fit))
    candidates = [p.candidate for p in picks]
    assert candidates == sorted(set(candidates)) and 0 <= candidates[0] and candidates[-1] < len(frames)
    assert all(p.frame == frames[p.candidate] for p in picks)
    assert all(np.isfinite(p.score) and p.score >= 0 for p in picks)
    chosen = embeddings[candidates]
    cosines = chosen @ chosen.T
    np.fill_diagonal(cosines, -np.inf)
    # no two redundant picks (to rounding: the selection takes its dot products a vector at a time)
    assert cosines.max(initial=-np.inf) <= config.redundancy_cosine + 1e-6
    again = select_keyframes(frames.copy(), embeddings.copy(), duration_s, config, quality)
    assert again == picks  # deterministic


# --- scenes ------------------------------------------------------------------------------

scenes_configs = st.builds(
    ScenesConfig,
    window_shots=st.integers(1, 30),
    threshold=st.floats(0, 1),
    temperature=st.one_of(st.floats(1e-3, 10), st.sampled_from([1e-6, 1e6])),
)


@PROPERTIES
@given(st.integers(0, 40).flatmap(lambda n: arrays(np.float64, (n, 4), elements=st.floats(-1, 1))), scenes_configs)
def test_scenes_cover_every_shot_once_in_order(shots: np.ndarray, config: ScenesConfig) -> None:
    ranges = scene_ranges(shots, config)
    assert [s for first, last in ranges for s in range(first, last + 1)] == list(range(len(shots)))
    assert all(first <= last for first, last in ranges)
    if len(shots) == 1:
        assert ranges == [(0, 0)]


@PROPERTIES
@given(
    st.integers(1, 60),
    arrays(np.float64, 4, elements=st.floats(-1, 1)),
    scenes_configs.filter(lambda c: c.threshold < 0.45),
)
def test_identical_shots_are_one_scene(count: int, look: np.ndarray, config: ScenesConfig) -> None:
    # Identical shots attend to each other uniformly: half of the attention crosses any
    # boundary, so a threshold below that never cuts them, whatever the window.
    assert scene_ranges(np.tile(look, (count, 1)), config) == [(0, count - 1)]


def test_no_shots_no_scenes() -> None:
    assert scene_ranges(np.zeros((0, 4)), ScenesConfig()) == []
