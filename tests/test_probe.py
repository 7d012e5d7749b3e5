"""Probing: container and stream metadata, and clear errors for what is not a readable video.

How many frames a truncated file really holds is tested in test_truncated.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ProbeError
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
