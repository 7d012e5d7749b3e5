from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.algorithms.segments import Segment, plan_segments, shot_input_indices
from pipeline.config import Config, config_from_dict
from pipeline.errors import DecodeError
from pipeline.media import spans
from pipeline.media.decode import decode_segment, decode_sequentially
from pipeline.media.opening import open_media
from pipeline.media.probe import probe
from pipeline.models.inference import predict_transitions
from testkit import synthetic


def test_decode_segment_shapes(mixed_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    path, truth = mixed_clip
    config = Config()
    decoded = decode_segment(str(path), plan_segments(truth.num_frames, 1500)[0], config)
    assert decoded.num_frames == decoded.video_frames == truth.num_frames
    step = config.shots.window_frames - 50
    assert decoded.shot_frames.shape == (len(shot_input_indices(0, truth.num_frames, truth.num_frames, step)), 27, 48, 3)
    assert decoded.sample_frames.tolist() == list(range(0, truth.num_frames, config.embed.stride_frames))
    assert decoded.samples.shape == (len(decoded.sample_frames), 144, 256, 3)
    assert decoded.shot_frames.dtype == np.uint8 and decoded.samples.dtype == np.uint8


def test_segments_decode_and_predict_exactly_like_the_whole_video(
    mixed_clip: tuple[Path, synthetic.ClipTruth], shot_model: torch.nn.Module
) -> None:
    path, truth = mixed_clip
    config = config_from_dict({"decode": {"segment_frames": 150}, "shots": {"window_frames": 200}})
    whole = decode_segment(str(path), Segment(0, 1, 0, truth.num_frames), config)
    parts = [decode_segment(str(path), s, config) for s in plan_segments(truth.num_frames, 150)]
    assert [p.num_frames for p in parts] == [150, 150, truth.num_frames - 300]
    middle = lambda d: d.shot_frames[25 : 25 + d.num_frames]  # noqa: E731
    np.testing.assert_array_equal(np.concatenate([middle(p) for p in parts]), middle(whole))
    np.testing.assert_array_equal(np.concatenate([p.sample_frames for p in parts]), whole.sample_frames)
    np.testing.assert_array_equal(np.concatenate([p.samples for p in parts]), whole.samples)

    def predict(d):  # type: ignore[no-untyped-def]
        single, many = predict_transitions(
            shot_model, d.shot_frames, window=200, batch_windows=4, device=torch.device("cpu")
        )
        return single[: d.num_frames], many[: d.num_frames]

    whole_single, whole_many = predict(whole)
    part_single = np.concatenate([predict(p)[0] for p in parts])
    np.testing.assert_allclose(part_single, whole_single, atol=1e-5)
    assert whole_many.shape == whole_single.shape == (truth.num_frames,)


@pytest.mark.parametrize("size", [(176, 144), (320, 180), (640, 360), (180, 320), (1280, 720)])
def test_decode_size_works_for_many_source_resolutions(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    spec = synthetic.simple_spec([8, 8], "cut", width=width, height=height)
    path = tmp_path / f"clip_{width}x{height}.mp4"
    synthetic.write_clip(path, spec)
    decoded = decode_segment(str(path), Segment(0, 1, 0, 16), Config())
    assert decoded.num_frames == 16
    assert decoded.samples.shape[1:] == (144, 256, 3)


def test_missing_file_fails_at_decode(tmp_path: Path) -> None:
    with pytest.raises(DecodeError) as info:
        decode_segment(str(tmp_path / "gone.mp4"), Segment(0, 1, 0, 10), Config())
    assert info.value.stage == "decode"


def write_odd_sized(path: Path, width: int = 321, height: int = 239, frames: int = 30) -> None:
    """An H.264 clip with odd dimensions (4:4:4 chroma, which allows them)."""
    import av

    spec = synthetic.simple_spec([frames], "cut", width=width + 1, height=height + 1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for rgb in synthetic.render_clip(spec):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_odd_dimensions_and_single_frame(tmp_path: Path) -> None:
    odd = tmp_path / "odd.mp4"
    write_odd_sized(odd)
    info = probe(str(odd))
    assert (info.width, info.height, info.num_frames) == (321, 239, 30)
    assert decode_segment(str(odd), Segment(0, 1, 0, 30), Config()).num_frames == 30
    one = tmp_path / "one.mp4"
    synthetic.write_clip(one, synthetic.simple_spec([1], "cut"))
    decoded = decode_segment(str(one), Segment(0, 1, 0, 1), Config())
    assert (decoded.num_frames, decoded.sample_frames.tolist()) == (1, [0])
    assert (decoded.shot_frames == decoded.shot_frames[0]).all()  # padding repeats the only frame


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of its own for the decoder's temporary files, to see that none is left behind."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_segment_decodes_only_its_keyframe_span_and_matches_the_whole_file(tmp_path: Path, scratch: Path) -> None:
    # Keyframes every 30 frames: each of the three segments of 150 is decoded from its own span
    # (which spans are cut is tested in test_opening.py).
    path = tmp_path / "gop30.mp4"
    truth = synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    assert truth.num_frames == 360
    whole = decode_segment(str(path), Segment(0, 1, 0, 360), Config())
    parts = [decode_segment(str(path), s, Config()) for s in plan_segments(360, 150)]
    assert whole.media_kind == "local"
    assert [p.media_kind for p in parts] == ["span"] * 3
    assert not any(scratch.iterdir())  # every span's file deleted
    assert [p.video_frames for p in parts] == [360] * 3
    np.testing.assert_array_equal(np.concatenate([p.samples for p in parts]), whole.samples)
    np.testing.assert_array_equal(np.concatenate([p.frame_times for p in parts]), whole.frame_times)
    middle = lambda d: d.shot_frames[25 : 25 + d.num_frames]  # noqa: E731
    np.testing.assert_array_equal(np.concatenate([middle(p) for p in parts]), middle(whole))


def test_a_span_the_decoder_counts_differently_falls_back_to_the_whole_file(
    tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    path = tmp_path / "gop30.mp4"
    synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    whole = decode_segment(str(path), Segment(0, 1, 0, 360), Config())
    cut: list[str] = []
    real_cut = spans.cut_span

    def miscounted_cut(*args):  # type: ignore[no-untyped-def]
        span = real_cut(*args)
        cut.append(span.path)
        return dataclasses.replace(span, frames=span.frames + 1)

    monkeypatch.setattr(spans, "cut_span", miscounted_cut)
    middle = decode_segment(str(path), Segment(1, 3, 150, 300), Config())
    assert len(cut) == 1 and not Path(cut[0]).exists() and not any(scratch.iterdir())
    assert middle.media_kind == "local"  # the whole file,
    assert middle.warnings == []  # with decord, not the sequential fallback
    picked = np.isin(whole.sample_frames, middle.sample_frames)
    np.testing.assert_array_equal(middle.samples, whole.samples[picked])


def test_a_remote_segment_is_cut_from_ranged_reads(tmp_path: Path, scratch: Path) -> None:
    import fsspec

    path = tmp_path / "gop30.mp4"
    synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    fs = fsspec.filesystem("memory")
    fs.pipe("/vindex-span/gop30.mp4", path.read_bytes())
    try:
        remote = decode_segment("memory://vindex-span/gop30.mp4", Segment(1, 3, 150, 300), Config())
    finally:
        fs.rm("/vindex-span", recursive=True)
    # A span cut from ranged reads: the whole object was not downloaded ("staged") for one segment.
    assert remote.media_kind == "span" and not any(scratch.iterdir())
    local = decode_segment(str(path), Segment(1, 3, 150, 300), Config())
    np.testing.assert_array_equal(remote.samples, local.samples)
    np.testing.assert_array_equal(remote.shot_frames, local.shot_frames)
    assert remote.warnings == []


def test_a_remote_video_in_one_segment_is_decoded_from_a_staged_copy(tmp_path: Path, scratch: Path) -> None:
    import fsspec

    path = tmp_path / "clip.mp4"
    synthetic.write_clip(path, synthetic.simple_spec([30, 30], "cut"), gop=30)
    fs = fsspec.filesystem("memory")
    fs.pipe("/vindex-staged/clip.mp4", path.read_bytes())
    try:
        remote = decode_segment("memory://vindex-staged/clip.mp4", Segment(0, 1, 0, 60), Config())
    finally:
        fs.rm("/vindex-staged", recursive=True)
    assert remote.media_kind == "staged" and not any(scratch.iterdir())
    local = decode_segment(str(path), Segment(0, 1, 0, 60), Config())
    np.testing.assert_array_equal(remote.samples, local.samples)


def test_no_span_where_the_container_does_not_index_every_frame(tmp_path: Path) -> None:
    # Matroska indexes keyframes only (cues): the whole file is decoded, with identical results.
    source, path = tmp_path / "clip.mp4", tmp_path / "clip.mkv"
    synthetic.write_clip(source, synthetic.simple_spec([60, 60], "cut"), gop=30)
    synthetic.remux(source, path)
    parts = [decode_segment(str(path), s, Config()) for s in plan_segments(120, 50)]
    assert [p.media_kind for p in parts] == ["local"] * 3
    assert sum(p.num_frames for p in parts) == 120 and not any(p.warnings for p in parts)


def test_truncated_stream_keeps_the_frames_before_the_break(tmp_path: Path) -> None:
    # With the index at the front (faststart), half the bytes still hold the first frames.
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    truth = synthetic.write_clip(whole, synthetic.simple_spec([60, 60, 60], "cut"), faststart=True)
    synthetic.write_truncated(whole, cut, 0.5)
    info = probe(str(cut))
    assert info.num_frames == truth.num_frames  # the container still claims every frame
    segments = plan_segments(info.num_frames, 150)
    parts = [decode_segment(str(cut), s, Config()) for s in segments]
    decoded = sum(p.num_frames for p in parts)
    assert 0 < decoded < truth.num_frames
    assert parts[0].num_frames == min(150, decoded)
    assert any("decoded sequentially" in w for w in parts[0].warnings)
    assert any("stream ended after" in w for p in parts for w in p.warnings)
    # The frames that were decoded are the real ones (two scalers: equal up to rounding).
    reference = decode_segment(str(whole), Segment(0, 1, 0, truth.num_frames), Config())
    difference = np.abs(parts[0].samples[:3].astype(int) - reference.samples[:3].astype(int))
    assert difference.mean() < 2.0


def write_variable_rate(path: Path) -> list[float]:
    """60 frames whose gaps alternate 40 ms and 80 ms; returns each frame's time in seconds."""
    from fractions import Fraction

    import av

    spec = synthetic.simple_spec([30, 30], "cut", width=160, height=96)
    times, pts = [], 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for i, rgb in enumerate(synthetic.render_clip(spec)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            times.append(pts / 1000)
            pts += 40 if i % 2 == 0 else 80
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return times


def test_variable_frame_rate_keeps_true_frame_times(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    times = write_variable_rate(path)
    info = probe(str(path))
    decoded = [decode_segment(str(path), s, Config()) for s in plan_segments(info.num_frames, 150)]
    np.testing.assert_allclose(np.concatenate([d.frame_times for d in decoded]), times, atol=1e-6)


def test_rotated_video_is_decoded_upright(tmp_path: Path) -> None:
    import av

    path = tmp_path / "phone.mp4"
    spec = synthetic.simple_spec([60, 60], "cut", width=320, height=176)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 176, "yuv420p"
        stream.options = {"x264-params": "keyint=20:min-keyint=20:scenecut=0"}
        stream.set_display_rotation(90)  # shown as 176x320 portrait
        for rgb in synthetic.render_clip(spec):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = probe(str(path))
    assert (info.rotation, info.display_size) == (90, (176, 320))
    segment = Segment(0, 1, 0, 120)
    fast = decode_segment(str(path), segment, Config(), size=(144, 256), rotation=90)
    assert fast.samples.shape[1:] == (256, 144, 3)
    # The sequential decoder turns frames itself and agrees with decord's upright frames.
    slow = decode_sequentially(str(path), segment, Config(), size=(144, 256), rotation=90, reason="test")
    assert slow.samples.shape == fast.samples.shape
    assert slow.warnings == ["fast decoder failed (test); decoded sequentially"]
    assert np.abs(slow.samples.astype(int) - fast.samples.astype(int)).mean() < 3.0
    # A segment's span keeps the rotation: its frames are the whole file's, upright.
    with open_media(str(path), frames=(75, 120), needs_path=True) as media:
        assert media.span is not None and (media.span.first, media.span.frames) == (40, 80)
    last = decode_segment(str(path), Segment(2, 3, 100, 120), Config(), size=(144, 256), rotation=90)
    assert last.media_kind == "span"
    picked = np.isin(fast.sample_frames, last.sample_frames)
    np.testing.assert_array_equal(last.samples, fast.samples[picked])


#: A decode worker's peak memory for an 8K video: the runtime (~250 MB) plus the decoder's own
#: reference frames (H.264 keeps up to 16, 50 MB each at 8K, per decoding thread's working set)
#: stays within this; decoded frames handed over at full size would take gigabytes (one
#: 128-frame chunk of 8K RGB is 12 GB). Measured here: about 500 MB alone, 1630 and 2063 MB in
#: full CI runs (the decoder's per-thread working set varies with what else the machine runs).
HUGE_DECODE_PEAK_BYTES = 3072 * 2**20


def test_huge_resolution_decodes_in_bounded_memory(huge_clip: Path) -> None:
    """Measured in a fresh process, so its peak RSS is the decode's and nothing else's."""
    import subprocess
    import sys

    script = (
        "import resource, sys\n"
        "from pipeline.config import Config\n"
        "from pipeline.algorithms.segments import plan_segments\n"
        "from pipeline.media.decode import decode_segment\n"
        "from pipeline.media.probe import probe\n"
        "info = probe(sys.argv[1])\n"
        "decoded = decode_segment(sys.argv[1], plan_segments(info.num_frames, 1500)[0], Config())\n"
        "print(info.width, info.height, decoded.num_frames, *decoded.samples.shape[1:],\n"
        "      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(huge_clip)], capture_output=True, text=True, check=True)
    width, height, frames, sample_h, sample_w, _, peak = map(int, out.stdout.split())
    assert (width, height, frames, sample_w, sample_h) == (7680, 4320, 16, 256, 144)
    assert peak < HUGE_DECODE_PEAK_BYTES, f"decoding 8K took {peak / 2**20:.0f} MB"


class _Counted:
    """Counts entries into ``open_media`` from every module that calls it, and reads through a
    container's frame index (``spans.span_index``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pipeline.media import decode, opening

        self.opened: list[tuple[str, tuple[int, int | None] | None]] = []
        self.indexes_read = 0
        real_open, real_index = opening.open_media, spans.span_index

        def counted_open(uri, storage_options=None, **options):  # type: ignore[no-untyped-def]
            self.opened.append((uri, options.get("frames")))
            return real_open(uri, storage_options, **options)

        def counted_index(stream):  # type: ignore[no-untyped-def]
            self.indexes_read += 1
            return real_index(stream)

        for module in (decode, opening):
            monkeypatch.setattr(module, "open_media", counted_open)
        monkeypatch.setattr(spans, "span_index", counted_index)


def test_a_planned_segment_opens_its_media_once_and_reads_no_index(
    tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gop30.mp4"
    synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    index = probe(str(path)).span_index
    assert index is not None and (index.frames, index.keyframes) == (360, tuple(range(0, 360, 30)))
    segment = Segment(1, 3, 150, 300)
    planned = spans.span_bounds(index, 125, 325)
    assert planned == spans.PlannedSpan(90, 240)
    unplanned = decode_segment(str(path), segment, Config())
    counted = _Counted(monkeypatch)
    decoded = decode_segment(str(path), segment, Config(), planned=planned)
    assert counted.opened == [(str(path), (125, 325))] and counted.indexes_read == 0
    assert decoded.media_kind == "span" and decoded.warnings == [] and not any(scratch.iterdir())
    np.testing.assert_array_equal(decoded.samples, unplanned.samples)
    np.testing.assert_array_equal(decoded.shot_frames, unplanned.shot_frames)
    np.testing.assert_array_equal(decoded.frame_times, unplanned.frame_times)
    # Planned without a span (a container that does not index every frame): no cut is tried.
    counted.opened.clear()
    whole = decode_segment(str(path), segment, Config(), planned=spans.NO_SPAN)
    assert counted.opened == [(str(path), (125, 325))] and counted.indexes_read == 0
    assert whole.media_kind == "local"
    np.testing.assert_array_equal(whole.samples, unplanned.samples)
    # A plan that does not fit the file (its ends not keyframes of it): the whole file, the same frames.
    shifted = decode_segment(str(path), segment, Config(), planned=spans.PlannedSpan(91, 239))
    assert shifted.media_kind == "local"
    np.testing.assert_array_equal(shifted.samples, unplanned.samples)


def test_each_fallback_is_logged_once_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses
    import logging

    path = tmp_path / "gop30.mp4"
    synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    real_cut = spans.cut_span
    monkeypatch.setattr(spans, "cut_span", lambda *a: dataclasses.replace(real_cut(*a), frames=241))
    counted = _Counted(monkeypatch)
    with caplog.at_level(logging.INFO, logger="pipeline.media"):
        middle = decode_segment(str(path), Segment(1, 3, 150, 300), Config(), planned=spans.PlannedSpan(90, 240))
    assert middle.media_kind == "local" and middle.warnings == []
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: span not used (240 frames, 241 cut); decoding the whole file"
    ]
    assert len(counted.opened) == 2  # the span, then the whole file

    # decord fails on a truncated file: decoded sequentially, from the file already open.
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    synthetic.write_clip(whole, synthetic.simple_spec([60, 60, 60], "cut"), faststart=True)
    synthetic.write_truncated(whole, cut, 0.5)
    caplog.clear()
    counted.opened.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.media"):
        part = decode_segment(str(cut), Segment(0, 1, 0, 180), Config(), planned=spans.NO_SPAN)
    assert 0 < part.num_frames < 180 and any("decoded sequentially" in w for w in part.warnings)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith(f"{cut}: fast decoder failed (") and "sequentially" in messages[0]
    assert counted.opened == [(str(cut), None)]
