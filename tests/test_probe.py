"""Probing: container and stream metadata, and clear errors for what is not a readable video.

How many frames a truncated file (or one with a frame far past the rest) really holds is
tested in test_truncated.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config, DecodeConfig, load_config
from pipeline.errors import ConfigError, ProbeError
from pipeline.execution.stages import PlanStage
from pipeline.media.probe import probe
from testkit import synthetic


def test_probe_generated_clip(mixed_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    path, truth = mixed_clip
    info = probe(str(path))
    assert (info.num_frames, info.fps, info.width, info.height, info.codec) == (truth.num_frames, 25.0, 320, 180, "h264")
    assert info.duration_s == pytest.approx(truth.num_frames / 25.0)
    assert not info.frames_estimated


def test_bad_inputs_fail_at_probe_with_clear_messages(tmp_path: Path, mixed_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    cases = {
        "zero.mp4": (synthetic.write_zero_byte, "not a readable video container"),
        "random.mp4": (lambda p: synthetic.write_random_bytes(p, 20000, seed=1), "not a readable video container"),
        "truncated.mp4": (lambda p: synthetic.write_truncated(mixed_clip[0], p), "not a readable video container"),
        "audio.mp4": (synthetic.write_audio_only, r"no video stream \(streams: audio\)"),
        "image.mp4": (synthetic.write_jpeg_as_mp4, "still image"),
    }
    for name, (write, message) in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(ProbeError, match=message) as info:
            probe(str(path))
        assert info.value.stage == "probe" and info.value.uri == str(path)


def test_object_deleted_after_listing_fails_at_probe(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="object not found"):
        probe(str(tmp_path / "vanished.mp4"))


def test_a_remote_object_is_probed_from_ranged_reads(mixed_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    import fsspec

    path, _ = mixed_clip
    fs = fsspec.filesystem("memory")
    fs.pipe("/vindex-probe/mixed.mp4", path.read_bytes())
    try:
        assert probe("memory://vindex-probe/mixed.mp4") == probe(str(path))
    finally:
        fs.rm("/vindex-probe", recursive=True)


def test_a_video_holding_more_than_decode_max_frames_fails_at_planning_saying_so(
    tmp_path: Path, mixed_clip: tuple[Path, synthetic.ClipTruth]
) -> None:
    path, truth = mixed_clip
    frames = truth.num_frames
    mkv = synthetic.remux(path, tmp_path / "mixed.mkv")  # no frame count: estimated from the duration

    def plan(video: Path, max_frames: int) -> list[dict[str, Any]]:
        row = {"video_id": video.stem, "uri": str(video), "location": str(video), "size_bytes": video.stat().st_size}
        return PlanStage(Config(decode=DecodeConfig(max_frames=max_frames)))(row)

    [whole] = plan(path, frames)
    assert (whole.get("error_stage"), whole["num_frames"], whole["segment_count"]) == (None, frames, 1)
    for video, about in ((path, ""), (mkv, "about ")):
        [failed] = plan(video, frames - 1)
        assert (failed["error_stage"], failed["error_message"]) == (
            "probe",
            f"the video holds {about}{frames} frames ({frames / 25:.1f} s at 25 fps); "
            f"decode.max_frames allows {frames - 1}: raise it to index this video",
        )
    with pytest.raises(ProbeError, match=f"holds {frames} frames"):
        probe(str(path), max_frames=frames - 1)
    assert probe(str(path), max_frames=frames).num_frames == frames


def test_decode_max_frames_is_at_least_one_and_a_day_at_60_fps_by_default() -> None:
    assert DecodeConfig().max_frames == 24 * 3600 * 60
    with pytest.raises(ConfigError, match="'decode.max_frames': must be at least 1"):
        load_config(None, {"decode.max_frames": 0})
