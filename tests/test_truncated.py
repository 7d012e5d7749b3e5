"""Truncated uploads of long videos: indexed up to the break, never planned past it.

A truncated file keeps its header: an MP4 with its index at the front (faststart) still
lists every frame, a Matroska file still declares the whole duration. The long clip here
declares 3,033 frames (three segments of 1,500) and, cut at 60 % of its bytes, holds two
thirds of them. The runs through Ray use shorter files to stay fast: on a CPU the shot
network takes 3 to 25 ms a frame (measured: 5 s to 35 s for 1,500 frames, idle to busy).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.config import Config, DecodeConfig
from pipeline.algorithms.segments import plan_segments
from pipeline.media.probe import probe
from pipeline.index.store import Index
from pipeline.execution.assembler import segment_result
from pipeline.execution.runner import run_index
from pipeline.execution.stages import DecodeStage, ModelStage, PlanStage
from pipeline.algorithms.stitch import stitch_video
from testkit import synthetic

#: 3,033 frames at 64x36 (encodes in about a second); cuts at frames 600, 1200, 1800 and 2400.
LONG_SPEC = synthetic.simple_spec(
    [600, 600, 600, 600, 633], "cut", contents=[1, 2, 3, 4, 5], width=64, height=36, seed=4
)
#: 600 frames, cuts at 200 and 400; cut at 60 % of its bytes it holds 251 (the first shot's
#: frames are the larger), and still declares four segments of 150.
SHORT_SPEC = synthetic.simple_spec([200, 200, 200], "cut", contents=[1, 2, 3], width=64, height=36, seed=4)
#: The far-frame file: 60 frames 1/25 s apart, then one more at 10^7 s.
FAR_FRAME_PTS = [*range(60), 10**7 * 25]
#: A Matroska Info/Duration element: its ID, then its size (an 8-byte float, as ffmpeg writes it).
MATROSKA_DURATION = b"\x44\x89\x88"
TEN_HOURS_S = 36000.0


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The long clip, index at the front."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    synthetic.write_clip(path, LONG_SPEC, faststart=True)
    return path


@pytest.fixture(scope="module")
def cut_clip(long_clip: Path) -> Path:
    """The long clip cut at 60 % of its bytes: the index lists 3,033 frames, the data holds fewer."""
    folder = long_clip.parent / "cut"
    folder.mkdir()
    return synthetic.write_truncated(long_clip, folder / "cut.mp4", 0.6)


class FrameChange(torch.nn.Module):
    """Stand-in for the shot network, exact on generated hard cuts: a frame is the last of its
    shot when the next one differs from it by more than ``CUT_CHANGE`` (mean of 0..255 levels;
    measured on the long clip: under 5 inside a shot, over 45 across a cut)."""

    CUT_CHANGE = 20.0

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames.float()  # [B, T, 27, 48, 3]
        change = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3, 4))
        logits = torch.nn.functional.pad(change - self.CUT_CHANGE, (0, 1), value=-self.CUT_CHANGE)
        return logits[..., None], logits[..., None]


class MeanColour(torch.nn.Module):
    """Stand-in for the embedding network: the mean colour of each quarter of the frame."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1) + 1.0


class StandInModelStage(ModelStage):
    """The model stage with stand-ins for both networks: what it does around them is unchanged."""

    def setup(self) -> None:
        self.device = torch.device("cpu")
        self.shot_model = FrameChange()
        self.embed_model = MeanColour()


def decodable_frames(path: Path) -> int:
    """Frames a sequential decoder gets out of ``path`` before it ends or breaks."""
    import av

    count = 0
    with av.open(str(path), metadata_errors="ignore") as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError:
            pass
    return count


def declare_duration(path: Path, seconds: float) -> None:
    """Rewrite a Matroska file's declared duration (its header's Info/Duration element)."""
    data = bytearray(path.read_bytes())
    at = data.find(MATROSKA_DURATION, 0, 4096)
    if at < 0:
        raise ValueError(f"{path}: no 8-byte Duration element in the header")
    # ffmpeg writes the default TimestampScale (1 ms), so the duration counts milliseconds.
    data[at + 3 : at + 11] = struct.pack(">d", seconds * 1000)
    path.write_bytes(bytes(data))


def listing_row(path: Path) -> dict[str, Any]:
    """What listing hands to planning for a local file."""
    return {"video_id": path.stem, "uri": str(path), "location": str(path), "size_bytes": path.stat().st_size,
            "etag": None, "mtime": None}


def test_probe_tells_the_frames_held_from_the_frames_declared(long_clip: Path, cut_clip: Path) -> None:
    assert probe(str(long_clip)).held_frames is None
    info = probe(str(cut_clip))
    decodable = decodable_frames(cut_clip)
    assert info.num_frames == LONG_SPEC.num_frames == 3033
    # From the index: frames whose bytes end past the end of the file are missing. The decoder
    # may get a few fewer out of what is held (2,020 of 2,022 here).
    assert info.held_frames is not None and 0 <= info.held_frames - decodable <= 4
    assert 1500 < decodable < 2400
    assert info.shortfall is not None and "declares 3033 frames" in info.shortfall


def test_segments_past_the_break_decode_empty_and_stitch_to_an_ok_video(cut_clip: Path) -> None:
    # Planned as the index declares: three segments of up to 1,500 frames, the last past the break.
    config = Config()
    models = StandInModelStage(config)
    models.setup()
    decodable = decodable_frames(cut_clip)
    base = PlanStage(config).process(listing_row(cut_clip))[0]
    declared = plan_segments(base["num_frames"], config.decode.segment_frames)
    assert [(s.start_frame, s.end_frame) for s in declared] == [(0, 1500), (1500, 3000), (3000, 3033)]
    rows = [
        {**base, "segment_index": s.index, "segment_count": s.count, "start_frame": s.start_frame,
         "end_frame": s.end_frame}
        for s in declared
    ]
    decode = DecodeStage(config)
    decoded = [decode.process(row)[0] for row in rows]
    assert [d["decoded_frames"] for d in decoded] == [1500, decodable - 1500, 0]
    segments = [segment_result(models.process(d)[0]) for d in decoded]
    assert segments[-1].embeddings.shape == (0, 0)  # what the stage returns for no frames

    video_rows = stitch_video(base, segments, config, "run", "digest")

    video = video_rows.video
    assert (video["status"], video["num_frames"]) == ("ok", decodable)
    assert f"stream ended after {decodable} frames; the container said 3033 or more" in video["warnings"]
    assert "file cut short: the container declares 3033 frames" in video["warnings"]
    assert [(s["start_frame"], s["end_frame"]) for s in video_rows.shots] == [
        (0, 599), (600, 1199), (1200, 1799), (1800, decodable - 1)
    ]
    assert video_rows.keyframes and all(k["frame"] < decodable for k in video_rows.keyframes)
    # Planned for the frames held instead (two segments), the same rows.
    held_rows = PlanStage(config).process(listing_row(cut_clip))
    held = [segment_result(models.process(decode.process(row)[0])[0]) for row in held_rows]
    assert [s.num_frames for s in held] == [1500, decodable - 1500]
    from_held = stitch_video(base, held, config, "run", "digest")
    same = lambda rows: [{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()} for r in rows]  # noqa: E731
    assert (same(from_held.shots), from_held.scenes) == (same(video_rows.shots), video_rows.scenes)
    assert [k["frame"] for k in from_held.keyframes] == [k["frame"] for k in video_rows.keyframes]


def test_planning_stops_at_the_break(cut_clip: Path) -> None:
    rows = PlanStage(Config()).process(listing_row(cut_clip))
    assert [(r["segment_index"], r["start_frame"], r["end_frame"]) for r in rows] == [(0, 0, 1500), (1, 1500, 3033)]
    assert {r["segment_count"] for r in rows} == {2}
    assert any("file cut short" in w for w in rows[0]["warnings"])


@pytest.fixture(scope="module")
def overlong_files(long_clip: Path) -> dict[str, Path]:
    """The long clip as Matroska and MPEG-TS, cut at 10 % of their bytes; the Matroska header
    then rewritten to declare ten hours."""
    folder = long_clip.parent / "overlong"
    folder.mkdir()
    files = {}
    for name, container_format in (("cut.mkv", "matroska"), ("cut.ts", "mpegts")):
        whole = synthetic.remux(long_clip, long_clip.parent / f"whole-{name}", container_format)
        files[name] = synthetic.write_truncated(whole, folder / name, 0.1)
    declare_duration(files["cut.mkv"], TEN_HOURS_S)
    return files


@pytest.mark.parametrize("name", ["cut.mkv", "cut.ts"])
def test_a_header_declaring_far_more_than_the_file_holds_plans_a_few_segments(
    overlong_files: dict[str, Path], name: str
) -> None:
    path = overlong_files[name]
    decodable = decodable_frames(path)
    assert 150 < decodable < 600
    rows = PlanStage(Config(decode=DecodeConfig(segment_frames=150))).process(listing_row(path))
    # Segments for what the file holds (the end time of its last packet), give or take a second.
    assert len(rows) <= -(-(decodable + 25) // 150)
    assert rows[-1]["end_frame"] == rows[0]["num_frames"]  # the last runs to the true end
    if name == "cut.mkv":
        assert rows[0]["num_frames"] == TEN_HOURS_S * 25  # 6,000 segments of 150 as declared
        assert any("file cut short: the container declares 900000 frames" in w for w in rows[0]["warnings"])


def test_truncated_uploads_are_indexed_up_to_the_break_through_ray(  # type: ignore[no-untyped-def]
    ray_local, overlong_files: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    synthetic.write_clip(tmp_path / "short.mp4", SHORT_SPEC, faststart=True)
    synthetic.write_truncated(tmp_path / "short.mp4", folder / "short.mp4", 0.6)
    (folder / "cut.mkv").write_bytes(overlong_files["cut.mkv"].read_bytes())
    decodable = {name: decodable_frames(folder / name) for name in ("short.mp4", "cut.mkv")}
    assert 200 < decodable["short.mp4"] < 300  # declared as four segments of 150, two past the break
    config = Config(decode=DecodeConfig(segment_frames=150))
    planned = {name: len(PlanStage(config).process(listing_row(folder / name))) for name in decodable}
    assert planned == {"short.mp4": 2, "cut.mkv": -(-decodable["cut.mkv"] // 150)}  # else the run takes hours

    summary = run_index(str(folder), str(tmp_path / "idx"), config, show_progress=False)

    assert (summary.counts["ok"], summary.counts["failed"]) == (2, 0)
    index = Index(str(tmp_path / "idx"))
    videos = {Path(v["uri"]).name: v for v in index.read("videos").to_pylist()}
    for name, declared in (("short.mp4", 600), ("cut.mkv", 900_000)):
        video = videos[name]
        assert (video["status"], video["error_stage"], video["num_frames"]) == ("ok", None, decodable[name])
        assert f"file cut short: the container declares {declared} frames" in video["warnings"]
        assert np.isclose(video["duration_s"], decodable[name] / 25)
        shots = shots_of(index, video)
        assert shots[0][0] == 0 and shots[-1][1] == decodable[name] - 1
    assert [start for start, _ in shots_of(index, videos["short.mp4"])][:2] == [0, 200]


def write_far_frame_file(path: Path) -> Path:
    """A Matroska file of 25 fps H.264 whose frames are at ``FAR_FRAME_PTS`` (in 1/25 s): under
    3 KB, and its header declares 10^7 s, 250,000,001 frames."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        for i, pts in enumerate(FAR_FRAME_PTS):
            frame = av.VideoFrame.from_ndarray(np.full((36, 64, 3), i * 4, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def test_a_file_with_one_frame_far_past_the_rest_is_planned_by_the_frames_it_holds(tmp_path: Path) -> None:
    """Its header declares 250,000,001 frames (166,667 segments of 1,500), its end time says
    the same; its size does not: its packets are counted, and it is one segment of 61 frames."""
    path = write_far_frame_file(tmp_path / "far.mkv")
    assert path.stat().st_size < 3000 and decodable_frames(path) == 61
    info = probe(str(path))
    assert (info.num_frames, info.frames_estimated, info.held_frames, info.held_counted) == (250_000_001, True, 61, True)
    config = Config()
    [row] = PlanStage(config).process(listing_row(path))
    assert (row["segment_index"], row["segment_count"], row["start_frame"], row["end_frame"]) == (0, 1, 0, 250_000_001)
    assert row["warnings"] == [
        "frame count estimated from duration",
        "fewer frames than declared: the container declares 250000001 frames (10000000.0 s) but the file holds 61 "
        "(its packets counted); indexed the frames held",
    ]
    decoded = DecodeStage(config).process(row)[0]
    assert decoded["decoded_frames"] == 61
    models = StandInModelStage(config)
    models.setup()
    video = stitch_video(row, [segment_result(models.process(decoded)[0])], config, "run", "digest").video
    assert (video["status"], video["num_frames"]) == ("ok", 61)
    # Under a cap, counting stops past it, and the video fails at planning saying why.
    [failed] = PlanStage(Config(decode=DecodeConfig(max_frames=50)))(listing_row(path))
    assert (failed["error_stage"], failed["error_message"]) == (
        "probe",
        "the video holds more than 50 frames; decode.max_frames allows 50: raise it to index this video",
    )


def shots_of(index: Index, video: dict[str, Any]) -> list[tuple[int, int]]:
    """(start, end) frames of a video's shots, in order."""
    rows = index.read("shots").to_pylist()
    return sorted((s["start_frame"], s["end_frame"]) for s in rows if s["video_id"] == video["video_id"])


def test_a_file_cut_before_its_first_frame_fails_at_decode(long_clip: Path, tmp_path: Path) -> None:
    data = long_clip.read_bytes()
    first_frame_at = data.index(b"mdat") + 4  # the index, then the media data's box header
    path = tmp_path / "headless.mp4"
    path.write_bytes(data[:first_frame_at])
    config = Config()
    planned = PlanStage(config)(listing_row(path))
    assert len(planned) == 1 and not planned[0].get("error_stage")
    assert any("holds about 0" in w for w in planned[0]["warnings"])
    [row] = DecodeStage(config)(planned[0])
    assert row["error_stage"] == "decode"
    assert row["error_message"].startswith("no frame could be decoded")
