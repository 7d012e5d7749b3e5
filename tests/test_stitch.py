from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from pipeline.algorithms.attention import normalise
from pipeline.algorithms.frame_stats import LAYOUT_FEATURES
from pipeline.config import Config, ScenesConfig
from pipeline.errors import StitchError
from pipeline.algorithms.frame_stats import measures
from pipeline.execution.records import pack_measures, unpack_measures
from pipeline.algorithms.stitch import SegmentResult, ThumbnailSpill, stitch_video

META = {"video_id": "vid", "uri": "file:///v.mp4", "size_bytes": 10, "fps": 25.0, "width": 320, "height": 180}


def segment(index: int, count: int, start: int, length: int, cuts: list[int], looks: dict[int, int]) -> SegmentResult:
    """A segment whose probabilities peak on ``cuts`` and whose samples show look ``looks[frame]``."""
    single = np.zeros(length, np.float32)
    for c in cuts:
        if start <= c < start + length:
            single[c - start] = 0.95
    frames = np.arange(-(-start // 6) * 6, start + length, 6)
    embeddings = normalise(np.eye(8)[[looks_at(looks, f) for f in frames]] + 0.01)
    return SegmentResult(
        index, count, start, length, single, single.copy(), frames, embeddings.astype(np.float32),
        [f"jpeg{f}".encode() for f in frames],
    )


def looks_at(looks: dict[int, int], frame: int) -> int:
    """The look of the last shot starting at or before ``frame``."""
    return [look for first, look in sorted(looks.items()) if first <= frame][-1]


def test_rows_for_a_video_with_two_cuts() -> None:
    cuts, looks = [49, 119], {0: 0, 50: 1, 120: 2}
    rows = stitch_video(META, [segment(0, 1, 0, 200, cuts, looks)], Config(), "run1", "digest")
    assert [(s["start_frame"], s["end_frame"], s["transition"]) for s in rows.shots] == [
        (0, 49, "start"), (50, 119, "cut"), (120, 199, "cut")
    ]
    assert rows.shots[1]["start_s"] == 2.0 and rows.shots[1]["end_s"] == 4.8
    assert [(s["first_shot"], s["last_shot"]) for s in rows.scenes] == [(0, 0), (1, 1), (2, 2)]
    for k in rows.keyframes:
        shot = rows.shots[k["shot_index"]]
        assert shot["start_frame"] <= k["frame"] <= shot["end_frame"]
        assert k["thumbnail"] == f"jpeg{k['frame']}".encode()
        assert k["time_s"] == k["frame"] / 25.0
    assert {k["shot_index"] for k in rows.keyframes} == {0, 1, 2}
    video = rows.video
    assert (video["status"], video["num_frames"], video["num_shots"], video["num_scenes"]) == ("ok", 200, 3, 3)
    assert video["duration_s"] == 8.0 and video["config_digest"] == "digest" and video["run_id"] == "run1"


def test_segments_give_the_same_rows_as_the_whole_video() -> None:
    cuts, looks = [99, 149, 260], {0: 0, 100: 1, 150: 2, 261: 3}
    whole = stitch_video(META, [segment(0, 1, 0, 300, cuts, looks)], Config(), "r", "d")
    parts = [segment(i, 3, i * 100, 100, cuts, looks) for i in (2, 0, 1)]  # arrival order does not matter
    split = stitch_video(META, parts, Config(), "r", "d")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "embedding"} for r in rows]  # noqa: E731
    assert strip(split.shots) == strip(whole.shots)
    for table in ("shots", "keyframes"):
        for mine, theirs in zip(getattr(split, table), getattr(whole, table), strict=True):
            np.testing.assert_array_equal(mine["embedding"], theirs["embedding"])
    assert split.scenes == whole.scenes
    assert strip(split.keyframes) == strip(whole.keyframes)


def test_a_gap_between_segments_is_an_error() -> None:
    looks = {0: 0}
    with pytest.raises(StitchError, match="segment 1 starts at frame 120, expected 100") as gap:
        stitch_video(META, [segment(0, 2, 0, 100, [], looks), segment(1, 2, 120, 50, [], looks)], Config(), "r", "d")
    # The video's failed row names the stage and the video (pipeline.errors.VideoError).
    assert (gap.value.stage, gap.value.uri) == ("stitch", META["uri"])


def test_times_follow_the_stream_clock_when_frames_are_irregular() -> None:
    seg = segment(0, 1, 0, 120, [59], {0: 0, 60: 1})
    seg.frame_times = 10.0 + np.cumsum(np.where(np.arange(120) % 2, 0.08, 0.04)) - 0.04  # starts at 10 s
    rows = stitch_video(META, [seg], Config(), "r", "d")
    second = rows.shots[1]
    expected_start = float(seg.frame_times[60] - seg.frame_times[0])
    assert second["start_s"] == pytest.approx(expected_start)
    assert rows.shots[0]["end_s"] == pytest.approx(expected_start)  # a shot ends where the next frame starts
    assert rows.video["duration_s"] == pytest.approx(float(seg.frame_times[-1] - seg.frame_times[0]) + 1 / 25)
    for k in rows.keyframes:
        assert k["time_s"] == pytest.approx(float(seg.frame_times[k["frame"]] - seg.frame_times[0]))


def test_thumbnails_spilled_to_disk_give_the_same_rows() -> None:
    cuts, looks = [99, 149, 260], {0: 0, 100: 1, 150: 2, 261: 3}
    parts = [segment(i, 3, i * 100, 100, cuts, looks) for i in (2, 0, 1)]
    in_memory = stitch_video(META, parts, Config(), "r", "d")
    spill = ThumbnailSpill()
    spilled = [dataclasses.replace(p, thumbnails=spill.add(p.thumbnails)) for p in parts]
    assert spilled[1].thumbnails[0] == b"jpeg0" and spilled[1].thumbnails[-2:] == [b"jpeg90", b"jpeg96"]
    assert len(spilled[0].thumbnails) == len(parts[0].thumbnails)
    rows = stitch_video(META, spilled, Config(), "r", "d")
    spill.close()
    assert [k["thumbnail"] for k in rows.keyframes] == [k["thumbnail"] for k in in_memory.keyframes]
    assert all(k["thumbnail"] == f"jpeg{k['frame']}".encode() for k in rows.keyframes)
    assert len(rows.keyframes) >= 4


def test_arrays_that_disagree_in_length_fail_the_video_at_stitch() -> None:
    # A model stage that returned one head's probabilities short: the video fails alone,
    # as a stitch failure, instead of stopping the run.
    part = segment(0, 1, 0, 100, [50], {0: 0})
    part.many = part.many[:-1]
    with pytest.raises(StitchError, match="probability arrays differ in shape") as disagree:
        stitch_video(META, [part], Config(), "r", "d")
    assert (disagree.value.stage, disagree.value.uri) == ("stitch", META["uri"])


def empty_segment(index: int, count: int, start: int) -> SegmentResult:
    """A segment past the break of a truncated file, with the arrays the model stage returns
    for a segment that decoded no frame (its embeddings have no width)."""
    return SegmentResult(
        index, count, start, 0, np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
        np.zeros((0, 0), np.float16), [], ["stream ended after 250 frames; the container said 500 or more"],
    )


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their arrays (embeddings) as lists, comparable with ``==``."""
    return [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()} for r in rows]


def shipped(part: SegmentResult) -> SegmentResult:
    """``part`` with float16 embeddings, as the model stage ships them."""
    return dataclasses.replace(part, embeddings=part.embeddings.astype(np.float16))


def test_segments_past_the_break_stitch_to_the_rows_of_the_frames_that_exist() -> None:
    # Planned as 5 segments of 100 frames; the file breaks after frame 249.
    cuts, looks = [99, 149], {0: 0, 100: 1, 150: 2}
    decoded = [shipped(segment(i, 5, i * 100, n, cuts, looks)) for i, n in enumerate((100, 100, 50))]
    cut_short = stitch_video(META, [*decoded, empty_segment(3, 5, 300), empty_segment(4, 5, 400)], Config(), "r", "d")
    whole = stitch_video(META, [shipped(segment(0, 1, 0, 250, cuts, looks))], Config(), "r", "d")
    assert [(s["start_frame"], s["end_frame"]) for s in cut_short.shots] == [(0, 99), (100, 149), (150, 249)]
    assert comparable(cut_short.shots) == comparable(whole.shots)
    assert cut_short.scenes == whole.scenes
    assert [k["frame"] for k in cut_short.keyframes] == [k["frame"] for k in whole.keyframes]
    video = cut_short.video
    assert (video["status"], video["num_frames"], video["duration_s"]) == ("ok", 250, 10.0)
    assert video["warnings"] == "stream ended after 250 frames; the container said 500 or more"


def test_a_video_whose_segments_all_came_back_empty_is_an_error() -> None:
    with pytest.raises(StitchError, match="no frame could be decoded: all 2 segments came back empty") as empty:
        stitch_video(META, [empty_segment(0, 2, 0), empty_segment(1, 2, 100)], Config(), "r", "d")
    assert (empty.value.stage, empty.value.uri) == ("stitch", META["uri"])


def with_statistics(part: SegmentResult, flash_frames: set[int] = frozenset()) -> SegmentResult:  # type: ignore[assignment]
    """``part`` with the decode stage's statistics: grey frames, bright on ``flash_frames``."""
    frames = np.arange(part.start_frame, part.start_frame + part.num_frames)
    luma = np.where(np.isin(frames, sorted(flash_frames)), 240.0, 90.0).astype(np.float32)
    colours = np.repeat(luma[:, None], 36, axis=1)
    sharpness = np.ones(len(part.sample_frames), np.float32)
    motion = np.full(part.num_frames, 0.02, np.float32)
    layout = np.repeat(luma.astype(np.uint8)[:, None], LAYOUT_FEATURES, axis=1)
    return dataclasses.replace(
        part, frame_luma=luma, frame_colours=colours, sample_sharpness=sharpness, frame_motion=motion, frame_layout=layout
    )


def test_a_flash_is_neither_a_cut_nor_a_keyframe_when_frames_were_measured() -> None:
    # The network took frames 60-61 (a flash) for a cut; sampled frames of scattered looks, but
    # for sample 10 (frame 60), the mean of them all: by centrality alone, the keyframe.
    part = segment(0, 1, 0, 150, [59], {0: 0})
    part.many = np.zeros(150, np.float32)  # the single-frame head alone fired
    part.embeddings = normalise(np.random.default_rng(1).normal(size=(len(part.sample_frames), 16))).astype(np.float32)
    part.embeddings[10] = normalise(part.embeddings.sum(axis=0))
    bare = stitch_video(META, [part], Config(), "r", "d")
    assert len(bare.shots) == 2 and 60 in [k["frame"] for k in bare.keyframes]
    measured = stitch_video(META, [with_statistics(part, {60, 61})], Config(), "r", "d")
    assert [(s["start_frame"], s["end_frame"]) for s in measured.shots] == [(0, 149)]
    assert 60 not in [k["frame"] for k in measured.keyframes] and len(measured.keyframes) >= 1


def test_statistics_missing_from_one_segment_are_not_used() -> None:
    cuts, looks = [99, 149], {0: 0, 100: 1, 150: 2}
    parts = [with_statistics(segment(i, 3, i * 100, 100, cuts, looks), {149, 150}) for i in range(3)]
    parts[1] = dataclasses.replace(parts[1], frame_luma=None, frame_motion=None)
    bare = [dataclasses.replace(p, frame_luma=None, frame_colours=None, sample_sharpness=None, frame_motion=None) for p in parts]
    # Sharpness, complete in every segment, is still a shot's signal; the rest is not used.
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("embedding", "sharpness")} for r in rows]  # noqa: E731
    mixed_rows, bare_rows = stitch_video(META, parts, Config(), "r", "d"), stitch_video(META, bare, Config(), "r", "d")
    assert strip(mixed_rows.shots) == strip(bare_rows.shots) and strip(mixed_rows.keyframes) == strip(bare_rows.keyframes)
    assert [s["sharpness"] for s in mixed_rows.shots] == [1.0, 1.0, 1.0]
    assert all(s[k] is None for s in bare_rows.shots for k in ("motion", "brightness", "sharpness", "still"))


def test_a_decoded_row_s_statistics_reach_the_segment_result() -> None:
    part = with_statistics(segment(0, 1, 0, 30, [], {0: 0}))
    row = {"measures": pack_measures(part)}
    shipped_part = dataclasses.replace(part, **{name: None for name in measures()})
    rebuilt = dataclasses.replace(shipped_part, **unpack_measures(row, SegmentResult))
    for name in measures():
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(part, name))
    assert unpack_measures({}) == {name: None for name in measures()}  # a row from before


def test_shot_signals_of_segments_equal_the_whole_video_s() -> None:
    # Per-frame statistics that differ shot by shot and frame by frame, cut into three segments.
    cuts, looks = [99, 149, 260], {0: 0, 100: 1, 150: 2, 261: 3}
    rng = np.random.default_rng(4)
    whole_part = with_statistics(segment(0, 1, 0, 300, cuts, looks))
    whole_part.frame_luma = rng.uniform(0, 255, 300).astype(np.float32)
    # Each shot its own colour layout: the cuts are not taken for flashes of the random luma.
    whole_part.frame_colours = np.repeat(np.array([looks_at(looks, f) * 60.0 for f in range(300)], np.float32)[:, None], 36, 1)
    whole_part.frame_motion = rng.uniform(0, 0.05, 300).astype(np.float32)
    whole_part.sample_sharpness = rng.uniform(0, 900, len(whole_part.sample_frames)).astype(np.float32)
    whole_part.frame_layout = rng.integers(0, 256, (300, LAYOUT_FEATURES)).astype(np.uint8)
    whole = stitch_video(META, [whole_part], Config(), "r", "d")
    assert [(s["start_frame"], s["end_frame"]) for s in whole.shots] == [(0, 99), (100, 149), (150, 260), (261, 299)]

    def piece(index: int) -> SegmentResult:
        start, rows = index * 100, (whole_part.sample_frames >= index * 100) & (whole_part.sample_frames < index * 100 + 100)
        return dataclasses.replace(
            with_statistics(segment(index, 3, start, 100, cuts, looks)),
            frame_luma=whole_part.frame_luma[start : start + 100],
            frame_colours=whole_part.frame_colours[start : start + 100],
            frame_motion=whole_part.frame_motion[start : start + 100],
            frame_layout=whole_part.frame_layout[start : start + 100],
            sample_sharpness=whole_part.sample_sharpness[rows],
        )

    split = stitch_video(META, [piece(i) for i in (1, 2, 0)], Config(), "r", "d")
    signals = [{k: s[k] for k in ("motion", "brightness", "sharpness", "still")} for s in whole.shots]
    assert [{k: s[k] for k in ("motion", "brightness", "sharpness", "still")} for s in split.shots] == signals
    # The luma layout: the mean of the shot's frames' (transition frames included), whichever segments they came in.
    assert [s["luma_layout"] for s in split.shots] == [s["luma_layout"] for s in whole.shots]
    np.testing.assert_allclose(whole.shots[1]["luma_layout"], whole_part.frame_layout[100:150].mean(axis=0), rtol=1e-5)
    # Shot 1 is frames 100..149; the transition head fires on frames 99 and 149, so frames within 2
    # of them are left out: brightness over frames 102..146, motion over the changes into 103..146.
    assert all(v is not None for row in signals for v in row.values())
    assert whole.shots[1]["brightness"] == pytest.approx(float(whole_part.frame_luma[102:147].mean()) / 255, rel=1e-5)
    assert whole.shots[1]["motion"] == pytest.approx(float(whole_part.frame_motion[103:147].mean()), rel=1e-5)


def test_shots_keep_the_colour_histogram_of_their_frames_and_scenes_use_it() -> None:
    from pipeline.algorithms.scenes import colour_histogram

    # Four shots that look alike to the embedding (one look): two grey, then two brown; scenes
    # that lean on colour (the defaults give it 0.05, too little against identical embeddings).
    part = with_statistics(segment(0, 1, 0, 200, [49, 99, 149], {0: 0}))
    part.frame_colours = np.where(np.arange(200)[:, None] < 100, np.tile([128.0, 128, 128], 12), np.tile([120.0, 70, 20], 12))
    part.frame_colours = part.frame_colours.astype(np.float32)
    config = dataclasses.replace(Config(), scenes=ScenesConfig(threshold=0.15, reference_cosine=0.55, colour_weight=0.25))
    rows = stitch_video(META, [part], config, "r", "d")
    assert [(s["start_frame"], s["end_frame"]) for s in rows.shots] == [(0, 49), (50, 99), (100, 149), (150, 199)]
    for shot in rows.shots:
        expected = colour_histogram(part.frame_colours[shot["start_frame"] : shot["end_frame"] + 1])
        np.testing.assert_array_equal(shot["colour_histogram"], expected)
    assert [(s["first_shot"], s["last_shot"]) for s in rows.scenes] == [(0, 1), (2, 3)]
    # Without the decode stage's statistics: no histogram, and by the embedding alone one scene.
    bare = stitch_video(META, [dataclasses.replace(part, frame_luma=None, frame_colours=None)], config, "r", "d")
    assert [s["colour_histogram"] for s in bare.shots] == [None] * 4
    assert [(s["first_shot"], s["last_shot"]) for s in bare.scenes] == [(0, 3)]
