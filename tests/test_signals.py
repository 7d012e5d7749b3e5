"""Shots' curation signals: motion, brightness, sharpness, still.

Per-frame motion measured at decode (joined across segments through their context frames),
per-shot figures without transition frames, on hand-built arrays and on generated clips of
known content (a held frame, pans, objects crossing the frame, dark and bright shots); an
index written before the columns existed gains them as null.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from pipeline.algorithms.frame_stats import (
    LAYOUT_FEATURES,
    luma_layout,
    shot_layout,
    LUMA_WEIGHTS,
    STILL_MOTION,
    frame_measures,
    frame_motion,
    frame_statistics,
    shot_signals,
)
from pipeline.algorithms.segments import Segment, plan_segments
from pipeline.algorithms.stitch import SegmentResult, stitch_video
from pipeline.config import Config
from pipeline.index.schemas import SCHEMAS, to_table
from pipeline.index.store import Index
from pipeline.media.decode import DecodedSegment, decode_segment
from pipeline.models.inference import predict_transitions
from testkit import synthetic

SIGNALS = ("motion", "brightness", "sharpness", "still")

# --- per-frame motion --------------------------------------------------------------------


def test_motion_is_the_mean_luma_change_from_the_frame_before() -> None:
    frames = np.full((4, 27, 48, 3), 100, np.uint8)
    frames[2:] = 151  # every pixel 51 levels brighter from frame 2 on
    frames[3, :, :24] = 100  # then half of the picture back
    np.testing.assert_allclose(frame_motion(frames), [0.0, 0.0, 51 / 255, 25.5 / 255], rtol=1e-6)
    # With the frame before (a segment's context frame), the first frame's change is measured too.
    np.testing.assert_allclose(frame_motion(frames[2:], frames[1]), [51 / 255, 25.5 / 255], rtol=1e-6)
    assert frame_motion(frames[:0]).shape == (0,)


def test_motion_joined_through_the_frame_before_equals_the_whole() -> None:
    frames = np.random.default_rng(2).integers(0, 256, (30, 27, 48, 3), dtype=np.uint8)
    whole = frame_motion(frames)
    joined = np.concatenate([frame_motion(frames[:11]), frame_motion(frames[11:20], frames[10]), frame_motion(frames[20:], frames[19])])
    np.testing.assert_array_equal(joined, whole)


def test_decoding_s_one_pass_measures_what_the_separate_measures_do() -> None:
    frames = np.random.default_rng(5).integers(0, 256, (9, 27, 48, 3), dtype=np.uint8)
    for previous in (None, frames[0]):
        luma, colours, motion = frame_measures(frames[1:], previous)
        expected_luma, expected_colours = frame_statistics(frames[1:])
        np.testing.assert_array_equal(luma, expected_luma)
        np.testing.assert_array_equal(colours, expected_colours)
        np.testing.assert_array_equal(motion, frame_motion(frames[1:], previous))


# --- per-shot signals --------------------------------------------------------------------


def test_shot_signals_leave_out_transition_frames_and_the_change_into_the_shot() -> None:
    luma = np.full(20, 100.0, np.float32)
    luma[[5, 6]] = 250.0  # blended frames at the shot's start
    motion = np.full(20, 0.01, np.float32)
    motion[5] = 0.5  # the change across the boundary into the shot
    motion[[6, 7]] = 0.3  # changes into and out of the blended frames
    mixed = np.zeros(20, bool)
    mixed[[5, 6]] = True
    sharpness = np.array([10.0, 99.0, 30.0, 50.0], np.float32)  # sampled frames 0, 6, 12, 18
    signals = shot_signals(5, 19, mixed, luma, motion, np.array([0, 6, 12, 18]), sharpness)
    assert signals.brightness == pytest.approx(100 / 255)
    assert signals.motion == pytest.approx(0.01)  # changes into frames 8..19 only
    assert signals.sharpness == pytest.approx(40.0)  # frames 12 and 18: frame 6 is blended, frame 0 another shot's
    assert signals.still is False
    # Without the transition head's marks, the blended frames count.
    plain = shot_signals(5, 19, np.zeros(20, bool), luma, motion, np.array([0, 6, 12, 18]), sharpness)
    assert plain.motion == pytest.approx((0.3 * 2 + 0.01 * 12) / 14) and plain.brightness > signals.brightness


def test_a_shot_of_nothing_but_transition_frames_keeps_them_and_missing_measures_are_none() -> None:
    mixed = np.ones(10, bool)
    luma = np.arange(10, dtype=np.float32) * 10
    signals = shot_signals(2, 5, mixed, luma, np.full(10, 0.001, np.float32), np.array([4]), np.array([7.0], np.float32))
    assert (signals.brightness, signals.sharpness) == (pytest.approx(35 / 255), 7.0)
    assert signals.motion == pytest.approx(0.001) and signals.still is True and 0.001 < STILL_MOTION
    assert shot_signals(2, 5, mixed, None, None, np.array([4]), None) == type(signals)(None, None, None, None)
    assert shot_signals(3, 3, mixed, luma, np.zeros(10, np.float32), np.array([4]), np.array([7.0])).motion is None


# --- generated clips ---------------------------------------------------------------------


def write_frames(path: Path, frames: list[np.ndarray]) -> None:
    """Encode RGB frames as H.264 at 25 fps (CRF 18, as the generator's clips)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def held(frame: np.ndarray, count: int) -> list[np.ndarray]:
    """A still shot: one frame held ``count`` frames (a locked-off camera on a static subject)."""
    return [frame] * count


def rendered(spec: synthetic.ClipSpec) -> list[np.ndarray]:
    return list(synthetic.render_clip(spec))


#: Shots 60 frames each: a dark held frame, a bright held frame, a pan, a held frame of ordinary
#: brightness, an object crossing the frame.
SHOT_FRAMES = 60
MOVING = synthetic.ClipSpec(
    (
        synthetic.ShotSpec(SHOT_FRAMES, 1, pan_widths_per_s=0.5),
        synthetic.ShotSpec(SHOT_FRAMES, 2, passes=(synthetic.PassSpec(10, 30),)),
    ),
    (synthetic.TransitionSpec.cut(),),
    seed=7,
)
LOOK = synthetic.simple_spec([1], "cut", contents=[5], seed=7)


def dark(frame: np.ndarray) -> np.ndarray:
    return (frame.astype(np.float32) * 0.25).astype(np.uint8)


def bright(frame: np.ndarray) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * 0.25 + 180, 0, 255).astype(np.uint8)


def luma_of(frame: np.ndarray) -> float:
    """Mean BT.601 luma (0-1) of an RGB frame, as the pipeline weighs it."""
    return float((frame.astype(np.float32) @ LUMA_WEIGHTS).mean()) / 255


@pytest.fixture(scope="module")
def signals_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, int]], list[np.ndarray]]:
    """The clip, its shots' frame ranges, and the held frames of its three still shots."""
    look = synthetic.render_shot_frame(LOOK, 0, 0)
    moving = rendered(MOVING)
    stills = [dark(look), bright(look), look]
    frames = held(stills[0], SHOT_FRAMES) + held(stills[1], SHOT_FRAMES) + moving[:SHOT_FRAMES]
    frames += held(stills[2], SHOT_FRAMES) + moving[SHOT_FRAMES:]
    path = tmp_path_factory.mktemp("signals") / "signals.mp4"
    write_frames(path, frames)
    shots = [(k * SHOT_FRAMES, (k + 1) * SHOT_FRAMES - 1) for k in range(5)]
    return path, shots, stills


def result_of(decoded: DecodedSegment, single: np.ndarray, many: np.ndarray, index: int = 0, count: int = 1) -> SegmentResult:
    """A decoded segment as the stitcher takes it, with the given probabilities and plain embeddings."""
    own = slice(decoded.start_frame, decoded.start_frame + decoded.num_frames)
    samples = decoded.sample_frames
    return SegmentResult(
        index, count, decoded.start_frame, decoded.num_frames, single[own], many[own], samples,
        np.ones((len(samples), 4), np.float32) / 2, [b""] * len(samples),
        frame_luma=decoded.frame_luma, frame_colours=decoded.frame_colours,
        sample_sharpness=decoded.sample_sharpness, frame_motion=decoded.frame_motion, frame_layout=decoded.frame_layout,
    )


def cut_probabilities(num_frames: int, shots: list[tuple[int, int]]) -> np.ndarray:
    """The shot network's output for exact cuts: 1 on each shot's last frame but the video's."""
    single = np.zeros(num_frames, np.float32)
    single[[last for _, last in shots[:-1]]] = 1.0
    return single


def test_still_shots_are_still_and_moving_ones_are_not(signals_clip: tuple[Path, list[tuple[int, int]], list[np.ndarray]]) -> None:
    path, shots, stills = signals_clip
    count = shots[-1][1] + 1
    decoded = decode_segment(str(path), Segment(0, 1, 0, count), Config())
    single = cut_probabilities(count, shots)
    rows = stitch_video({"video_id": "v", "uri": str(path), "fps": 25.0}, [result_of(decoded, single, single)], Config(), "r", "d")
    assert [(s["start_frame"], s["end_frame"]) for s in rows.shots] == shots
    motion = [s["motion"] for s in rows.shots]
    assert [s["still"] for s in rows.shots] == [True, True, False, True, False]
    assert max(motion[0], motion[1], motion[3]) < STILL_MOTION < min(motion[2], motion[4])
    assert max(motion[0], motion[1], motion[3]) < 0.001 and min(motion[2], motion[4]) > 0.005  # far from the line
    # Brightness: the held frames' own mean luma, through H.264 and the 48x27 copy.
    brightness = [rows.shots[k]["brightness"] for k in (0, 1, 3)]
    assert brightness == pytest.approx([luma_of(frame) for frame in stills], abs=0.02)
    assert brightness[0] < 0.2 and brightness[1] > 0.7
    assert all(s["sharpness"] > 0 for s in rows.shots)
    # Layout: a held shot's is its frame's luma in 3x3 blocks of the 48x27 copy, through H.264.
    for k, frame in zip((0, 1, 3), stills):
        small = np.asarray(Image.fromarray(frame).resize((48, 27), Image.BILINEAR))[None]
        assert len(rows.shots[k]["luma_layout"]) == LAYOUT_FEATURES
        assert np.abs(np.asarray(rows.shots[k]["luma_layout"]) - luma_layout(small)[0]).mean() < 6


def test_segments_measure_the_motion_the_whole_video_measures(
    signals_clip: tuple[Path, list[tuple[int, int]], list[np.ndarray]],
) -> None:
    path, shots, _ = signals_clip
    count = shots[-1][1] + 1
    config = Config()
    whole = decode_segment(str(path), Segment(0, 1, 0, count), config)
    # Segments of one window step (150 frames), the shortest the pipeline plans.
    parts = [decode_segment(str(path), s, config) for s in plan_segments(count, 150)]
    assert len(parts) == 2 and not any(p.warnings for p in parts)
    np.testing.assert_array_equal(np.concatenate([p.frame_motion for p in parts]), whole.frame_motion)
    # Frame 150 starts the second segment inside the pan: measured against its context frame.
    assert parts[1].frame_motion[0] == whole.frame_motion[150] > 0.005
    single = cut_probabilities(count, shots)
    meta = {"video_id": "v", "uri": str(path), "fps": 25.0}
    split = stitch_video(meta, [result_of(p, single, single, i, len(parts)) for i, p in enumerate(parts)], config, "r", "d")
    once = stitch_video(meta, [result_of(whole, single, single)], config, "r", "d")
    assert [{k: s[k] for k in SIGNALS} for s in split.shots] == [{k: s[k] for k in SIGNALS} for s in once.shots]


def joined(look: np.ndarray, pan: list[np.ndarray], join: str, blend_frames: int = 20) -> list[np.ndarray]:
    """A held frame (80 frames), then a pan, joined by a cut, a dissolve or a fade through black."""
    outgoing, incoming = look.astype(np.float32), pan[0].astype(np.float32)
    weights = np.arange(1, blend_frames + 1) / (blend_frames + 1)
    half = np.arange(1, blend_frames // 2 + 1) / (blend_frames // 2)
    blend = {
        "cut": [],
        "dissolve": [outgoing * (1 - w) + incoming * w for w in weights],
        "fade": [outgoing * (1 - w) for w in half] + [incoming * w for w in half],
    }[join]
    return held(look, 80) + [frame.astype(np.uint8) for frame in blend] + pan


def shots_found(path: Path, num_frames: int, shot_model: torch.nn.Module) -> tuple[list[dict[str, object]], DecodedSegment]:
    """The shot rows of a clip as the pipeline makes them (the shot network finds the shots)."""
    config = Config()
    decoded = decode_segment(str(path), Segment(0, 1, 0, num_frames), config)
    single, many = predict_transitions(
        shot_model, decoded.shot_frames, window=config.shots.window_frames, batch_windows=1,
        device=torch.device("cpu"), precision=config.inference.precision,
    )
    result = result_of(decoded, single[:num_frames], many[:num_frames])
    return stitch_video({"video_id": "v", "uri": str(path), "fps": 25.0}, [result], config, "r", "d").shots, decoded


@pytest.mark.parametrize("join", ["dissolve", "fade"])
def test_shots_next_to_a_gradual_transition_measure_what_they_measure_next_to_a_cut(
    join: str, tmp_path: Path, shot_model: torch.nn.Module
) -> None:
    look = synthetic.render_shot_frame(LOOK, 0, 0)
    pan = rendered(synthetic.ClipSpec((synthetic.ShotSpec(80, 1, pan_widths_per_s=0.5),), (), seed=7))
    measured = {}
    for kind in ("cut", join):
        frames = joined(look, pan, kind)
        write_frames(tmp_path / f"{kind}.mp4", frames)
        measured[kind] = shots_found(tmp_path / f"{kind}.mp4", len(frames), shot_model)
    (reference, _), (shots, decoded) = measured["cut"], measured[join]
    assert [s["transition"] for s in shots] == ["start", "gradual"]
    assert [s["still"] for s in shots] == [s["still"] for s in reference] == [True, False]
    for mine, theirs in zip(shots, reference, strict=True):
        assert mine["motion"] == pytest.approx(theirs["motion"], abs=1e-4)
        assert mine["brightness"] == pytest.approx(theirs["brightness"], abs=1e-3)
    # The transition head's marks are what keep the frames beside the blend out: counted in,
    # the pan's figure moves further from the cut's.
    first, last = shots[1]["start_frame"], shots[1]["end_frame"]
    plain = shot_signals(
        first, last, np.zeros(decoded.num_frames, bool), decoded.frame_luma, decoded.frame_motion,
        decoded.sample_frames, decoded.sample_sharpness,
    )
    assert plain.motion is not None
    assert abs(plain.motion - reference[1]["motion"]) >= abs(shots[1]["motion"] - reference[1]["motion"])


# --- the index ---------------------------------------------------------------------------


def test_an_older_index_gains_the_signal_columns_as_null(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    old_schema = pa.schema([f for f in SCHEMAS["shots"] if f.name not in SIGNALS])
    uri = str(tmp_path / "idx")
    row = {"video_id": "a", "shot_index": 0, "start_frame": 0, "end_frame": 9, "start_s": 0.0, "end_s": 0.4,
           "transition": "start", "run_id": "r1"}
    DeltaTable.create(uri + "/shots", schema=old_schema)
    write_deltalake(uri + "/shots", pa.Table.from_pylist([row], schema=old_schema), mode="append")
    index = Index(uri)
    index.ensure()
    shots = DeltaTable(uri + "/shots").to_pyarrow_table()  # the old row, as any Delta reader sees it
    assert all(shots.schema.field(name).type == SCHEMAS["shots"].field(name).type for name in SIGNALS)
    assert [{k: r[k] for k in SIGNALS} for r in shots.to_pylist()] == [dict.fromkeys(SIGNALS)]
    # New rows carry them.
    index.commit_videos({
        "videos": to_table("videos", [{"video_id": "b", "uri": "file:///b.mp4", "status": "ok", "run_id": "r2"}]),
        "shots": to_table("shots", [{**row, "video_id": "b", "run_id": "r2", "motion": 0.01, "brightness": 0.5,
                                     "sharpness": 120.0, "still": False}]),
    })
    new = next(r for r in index.read("shots").to_pylist() if r["video_id"] == "b")
    assert (new["still"], new["sharpness"]) == (False, 120.0) and new["motion"] == pytest.approx(0.01)


def test_the_luma_layout_is_the_mean_luma_of_each_block_and_a_shot_s_the_mean_of_its_frames() -> None:
    frame = np.zeros((27, 48, 3), np.uint8)
    frame[:, 24:] = 200  # right half light grey
    frame[:3, :3] = (255, 0, 0)  # the top left block pure red
    layout = luma_layout(frame[None])
    assert layout.shape == (1, LAYOUT_FEATURES) and layout.dtype == np.uint8
    grid = layout[0].reshape(9, 16)
    assert grid[0, 0] == round(255 * 0.299)
    assert grid[1:, :8].max() == 0 and (grid[:, 8:] == 200).all()
    dark = luma_layout(np.zeros((1, 27, 48, 3), np.uint8))
    assert shot_layout(np.concatenate([layout, dark])) == pytest.approx(layout[0] / 2)
    assert shot_layout(np.zeros((0, LAYOUT_FEATURES), np.uint8)) is None
