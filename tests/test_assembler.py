"""Reassembly and stitching, driven with hand-built segment records, without Ray: in one
process (:class:`VideoAssembler`), and as the workers do it, each finisher seeing only its own
segments and meeting the others through a rendezvous (:class:`VideoFinisher`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import sys
from typing import Any

import numpy as np
import pytest

from pipeline.algorithms.attention import normalise
from pipeline.algorithms.stitch import VideoRows, stitch_video
from pipeline.config import Config
from pipeline.errors import DecodeError, IncompleteVideosError
from pipeline.execution.assembler import PLAN_FIELDS, Outcome, VideoAssembler, VideoFinisher, segment_result
from pipeline.execution.records import FinishedVideo, SegmentRecord, failed, finished_table, pack
from pipeline.execution.rendezvous import LocalGathering, Part

FPS = 25.0
#: Every sixth frame is sampled, as the decode stage does at its default stride.
STRIDE = 6


def meta(video_id: str, num_frames: int) -> dict[str, Any]:
    return {"video_id": video_id, "uri": f"file:///{video_id}.mp4", "size_bytes": 10, "fps": FPS,
            "width": 320, "height": 180, "num_frames": num_frames}  # fmt: skip


def record(
    video: dict[str, Any], index: int, count: int, start: int, length: int, cuts: list[int], looks: dict[int, int]
) -> SegmentRecord:
    """A modelled segment record: probabilities peak on ``cuts``, samples show ``looks[shot start]``."""
    single = np.zeros(length, np.float32)
    for cut in cuts:
        if start <= cut < start + length:
            single[cut - start] = 0.95
    frames = np.arange(-(-start // STRIDE) * STRIDE, start + length, STRIDE)
    embeddings = normalise(np.eye(8)[[max(v for k, v in looks.items() if k <= f) for f in frames]] + 0.01)
    return {  # type: ignore[typeddict-item]
        **video,
        "segment_index": index,
        "segment_count": count,
        "start_frame": start,
        "end_frame": start + length,
        "decoded_frames": length,
        "single": pack(single),
        "many": pack(single),
        "sample_frames": pack(frames),
        "frame_times": pack((start + np.arange(length)) / FPS),
        "embeddings": pack(embeddings.astype(np.float16)),
        "thumbnails": [f"jpeg{f}".encode() for f in frames],
        "warnings": [],
        "error_stage": None,
        "error_message": None,
    }


def comparable(rows: VideoRows) -> dict[str, Any]:
    """A video's rows with arrays as lists and without the time they were made."""

    def plain(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in row.items() if k != "indexed_at"}

    return {
        "video": plain(rows.video),
        **{table: [plain(r) for r in getattr(rows, table)] for table in ("shots", "scenes", "keyframes")},
    }


def stitched(records: list[SegmentRecord]) -> dict[str, Any]:
    """What stitching the records in segment order directly gives."""
    ordered = sorted(records, key=lambda r: r["segment_index"])
    return comparable(stitch_video(dict(ordered[0]), [segment_result(r) for r in ordered], Config(), "run", "out", "der"))


A = meta("a", 300)
A_PARTS = [record(A, i, 3, i * 100, 100, [99, 149, 260], {0: 0, 100: 1, 150: 2, 261: 3}) for i in range(3)]
B = meta("b", 120)
B_PARTS = [record(B, i, 2, i * 60, 60, [39], {0: 4, 40: 5}) for i in range(2)]


def assembler() -> VideoAssembler:
    return VideoAssembler(Config(), "run", "out", "der")


def test_out_of_order_segments_stitch_when_the_last_arrives() -> None:
    with assembler() as video:
        first, second, last = (video.add(A_PARTS[i]) for i in (2, 0, 1))
        assert (first.frames, first.finished, second.frames, second.finished) == (100, None, 100, None)
        assert last.frames == 100 and last.finished is not None
        assert comparable(last.finished) == stitched(A_PARTS)
        assert last.finished.video["status"] == "ok" and last.finished.video["num_shots"] == 4
        # thumbnails came back from the spill, which is gone with the finished video
        assert {k["thumbnail"] for k in last.finished.keyframes} <= {t for r in A_PARTS for t in r["thumbnails"]}
        assert (video.open_videos, video.open_spills) == (0, 0)
        video.check_complete()


def test_two_interleaved_videos_finish_each_with_its_own_rows() -> None:
    with assembler() as video:
        finished = video.add_all([A_PARTS[0], B_PARTS[1], A_PARTS[2], B_PARTS[0], A_PARTS[1]])
        assert [rows.video["video_id"] for rows in finished] == ["b", "a"]
        assert comparable(finished[0]) == stitched(B_PARTS)
        assert comparable(finished[1]) == stitched(A_PARTS)
        assert (video.open_videos, video.open_spills) == (0, 0)


def test_a_failure_after_a_good_segment_fails_the_video_once() -> None:
    with assembler() as video:
        assert video.add(A_PARTS[0]).frames == 100 and video.open_spills == 1
        failure = failed(A_PARTS[1], DecodeError(A["uri"], "corrupt frame"))
        failure["warnings"] = ["estimated"]
        arrival = video.add(failure)
        assert arrival.frames == 0 and arrival.finished is not None
        row = arrival.finished.video
        assert (row["status"], row["error_stage"], row["error_message"], row["warnings"]) == (
            "failed", "decode", "corrupt frame", "estimated"
        )
        assert (row["run_id"], row["config_digest"], row["num_shots"]) == ("run", "out", None)
        assert arrival.finished.shots == arrival.finished.scenes == arrival.finished.keyframes == []
        assert (video.open_videos, video.open_spills) == (0, 0)
        # the video's remaining segment is ignored: no frames, no second row
        late = video.add(A_PARTS[2])
        assert (late.frames, late.finished) == (0, None)
        video.check_complete()


def test_segments_that_do_not_join_fail_the_video_at_stitch() -> None:
    gap = [record(B, 0, 2, 0, 60, [], {0: 0}), record(B, 1, 2, 80, 40, [], {0: 0})]
    with assembler() as video:
        assert video.add(gap[0]).finished is None
        arrival = video.add(gap[1])
        assert arrival.frames == 40 and arrival.finished is not None
        row = arrival.finished.video
        assert (row["status"], row["error_stage"], row["error_message"]) == (
            "failed", "stitch", "segment 1 starts at frame 80, expected 60"
        )
        assert (video.open_videos, video.open_spills) == (0, 0)


def spill_files() -> int:
    """Thumbnail spill files this process holds open (unnamed temporary files: counted by
    their descriptors' targets, not by all descriptors, which other threads open and close)."""
    folder = os.path.realpath(tempfile.gettempdir())
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            count += target.startswith(folder + "/") and target.endswith(" (deleted)")
    return count


def test_a_video_left_open_is_an_error_and_its_spill_is_closed() -> None:
    before = spill_files()
    with assembler() as video:
        video.add(A_PARTS[0])
        video.add(B_PARTS[0])
        assert (video.open_videos, video.open_spills) == (2, 2)
        assert spill_files() == before + 2  # one spill file per open video of several segments
        with pytest.raises(IncompleteVideosError, match="2 videos never received all their segments"):
            video.check_complete()
    assert video.open_spills == 0 and spill_files() == before


def test_a_finished_video_closes_its_spill_file() -> None:
    before = spill_files()
    with assembler() as video:
        video.add_all(B_PARTS[:1])
        assert spill_files() == before + 1
        video.add_all(B_PARTS[1:])
        assert spill_files() == before


def test_a_one_segment_video_is_stitched_without_a_spill() -> None:
    whole = record(B, 0, 1, 0, 120, [39], {0: 4, 40: 5})
    with assembler() as video:
        arrival = video.add(whole)
        assert arrival.finished is not None and comparable(arrival.finished) == stitched([whole])
        assert video.open_spills == 0


def test_the_assembler_and_the_records_import_no_ray_or_torch() -> None:
    heavy = ("torch", "ray", "decord", "pipeline.execution.stages", "pipeline.media.decode")
    code = (
        "import sys, pipeline.execution.assembler, pipeline.execution.records; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# --- on the workers: VideoFinisher --------------------------------------------------------


def outcome() -> Outcome:
    return Outcome(Config(), "run", "out", "der")


def committed(video: FinishedVideo) -> dict[str, Any]:
    """A finished video as it reaches the driver (through a FINISHED record), comparable."""
    (back,) = FinishedVideo.from_records(finished_table([video]))
    assert (back.video_id, back.frames, back.segment_count) == (video.video_id, video.frames, video.segment_count)
    assert all(back.tables[name].equals(table) for name, table in video.tables.items())
    tables = {name: back.tables[name].to_pylist() for name in ("shots", "scenes", "keyframes")}
    return comparable(VideoRows(back.video, **tables))


def stitched_rows(records: list[SegmentRecord]) -> dict[str, Any]:
    """What stitching the records in segment order directly gives, as the driver receives it."""
    ordered = sorted(records, key=lambda r: r["segment_index"])
    rows = stitch_video(dict(ordered[0]), [segment_result(r) for r in ordered], Config(), "run", "out", "der")
    return committed(FinishedVideo.of(rows))


def test_two_workers_each_with_some_segments_finish_the_video_once_where_the_last_lands() -> None:
    gathering = LocalGathering()
    workers = [VideoFinisher(outcome(), gathering), VideoFinisher(outcome(), gathering)]
    order = [(0, A_PARTS[2]), (1, B_PARTS[1]), (1, A_PARTS[0]), (0, B_PARTS[0]), (1, A_PARTS[1])]
    finished = [(i, workers[i].add(part)) for i, part in order]
    assert [(i, video.video_id) for i, video in finished if video is not None] == [(0, "b"), (1, "a")]
    by_id = {video.video_id: video for _, video in finished if video is not None}
    assert committed(by_id["a"]) == stitched_rows(A_PARTS) and committed(by_id["b"]) == stitched_rows(B_PARTS)
    assert (by_id["a"].frames, by_id["a"].segment_count, by_id["b"].frames) == (300, 3, 120)


def test_a_one_segment_video_finishes_where_it_was_modelled() -> None:
    whole = record(B, 0, 1, 0, 120, [39], {0: 4, 40: 5})
    gathering = LocalGathering()
    video = VideoFinisher(outcome(), gathering).add(whole)
    assert video is not None and committed(video) == stitched_rows([whole])
    assert gathering.rendezvous.waiting() == 0  # never offered: nothing held for it


class Losing(LocalGathering):
    """A gathering that lost the segments of ``lost`` (their node died)."""

    def __init__(self, lost: set[int]) -> None:
        super().__init__()
        self.lost = lost

    def load(self, part: Part) -> SegmentRecord | None:
        return None if part.index in self.lost else super().load(part)


def test_a_lost_segment_is_modelled_again_from_its_plan_by_the_finishing_worker() -> None:
    remade: list[dict[str, Any]] = []

    def remake(plan: SegmentRecord) -> list[SegmentRecord]:
        remade.append(dict(plan))
        return [A_PARTS[plan["segment_index"]]]  # what modelling that span gives

    finisher = VideoFinisher(outcome(), Losing({0}), remake)
    assert finisher.add(A_PARTS[0]) is None and finisher.add(A_PARTS[1]) is None
    video = finisher.add(A_PARTS[2])
    assert video is not None and committed(video) == stitched_rows(A_PARTS)
    (plan,) = remade
    assert (plan["segment_index"], plan["start_frame"], plan["end_frame"]) == (0, 0, 100)
    assert {k: plan[k] for k in PLAN_FIELDS if k in A_PARTS[2]} == {k: A_PARTS[2][k] for k in PLAN_FIELDS if k in A_PARTS[2]}
    assert "single" not in plan and "decoded_frames" not in plan  # a plan, not the lost outputs


def test_a_lost_segment_that_cannot_be_remade_fails_its_video_only() -> None:
    finisher = VideoFinisher(outcome(), Losing({1}))
    for part in A_PARTS[:2] + B_PARTS[:1]:
        assert finisher.add(part) is None
    video = finisher.add(A_PARTS[2])
    assert video is not None
    assert (video.video["status"], video.video["error_stage"]) == ("failed", "stitch")
    assert "segment 1 was lost" in video.video["error_message"] and video.rows("shots") == 0
    other = finisher.add(B_PARTS[1])
    assert other is not None and other.video["status"] == "ok"


def test_the_completing_segment_offered_again_gets_the_video_again_and_no_other_does() -> None:
    gathering = LocalGathering()
    finisher = VideoFinisher(outcome(), gathering)
    assert [finisher.add(p) for p in A_PARTS[:2]] == [None, None]
    first = finisher.add(A_PARTS[2])
    # its actor died before the video reached the driver: Ray runs that segment again
    again = finisher.add(A_PARTS[2])
    assert first is not None and again is not None and committed(again) == committed(first)
    assert finisher.add(A_PARTS[0]) is None  # a late retry of another segment finishes nothing
    gathering.close("a")  # the driver received it
    assert finisher.add(A_PARTS[2]) is None and gathering.rendezvous.waiting() == 0


def test_a_failed_segment_fails_the_video_once_and_drops_what_was_held() -> None:
    gathering = LocalGathering()
    finisher = VideoFinisher(outcome(), gathering)
    assert finisher.add(A_PARTS[0]) is None and gathering.rendezvous.waiting() == 1
    video = finisher.add(failed(A_PARTS[1], DecodeError(A["uri"], "corrupt frame")))
    assert video is not None
    assert (video.video["status"], video.video["error_stage"], video.video["error_message"]) == (
        "failed", "decode", "corrupt frame"
    )
    assert gathering.rendezvous.waiting() == 0
    assert finisher.add(A_PARTS[2]) is None  # the rest of a failed video finishes nothing
