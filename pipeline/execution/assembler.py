"""Videos reassembled from their segments and stitched: on the workers, or in one process.

:class:`VideoFinisher` runs in the actors of a run's last stage: a video of one segment is
stitched where it was modelled; the segments of a longer one meet through a
:class:`~pipeline.execution.rendezvous.Gathering` and the actor whose segment completes the
video stitches it. Either way the driver receives finished rows
(:class:`~pipeline.execution.records.FinishedVideo`) and only commits them: its cost no longer
grows with the frames a run decodes.

:class:`VideoAssembler` does the same in one process, for records handed over in any order
(benchmarks that time the stitching, tests). Both turn a failure record or a failed stitch
into the video's one ``failed`` row. Ray-free: tests drive them with hand-built records.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from pipeline.algorithms.stitch import (
    SegmentResult,
    ThumbnailSpill,
    VideoRows,
    stitch_video,
    video_row,
)
from pipeline.config import Config
from pipeline.errors import IncompleteVideosError, StitchError
from pipeline.execution.records import LISTING_RECORD, FinishedVideo, SegmentRecord, unpack, unpack_measures
from pipeline.execution.rendezvous import Gathering, Part, Remake
from pipeline.redaction import redact

log = logging.getLogger(__name__)


def segment_result(row: SegmentRecord, spill: ThumbnailSpill | None = None) -> SegmentResult:
    """A modelled segment record as the stitcher takes it; thumbnails go to ``spill`` if given."""
    thumbnails = row["thumbnails"] or []
    return SegmentResult(
        index=row["segment_index"],
        count=row["segment_count"],
        start_frame=row["start_frame"],
        num_frames=row["decoded_frames"],
        single=unpack(row["single"]),
        many=unpack(row["many"]),
        sample_frames=unpack(row["sample_frames"]),
        frame_times=unpack(row["frame_times"]),
        embeddings=unpack(row["embeddings"]),  # float16 until stitched: half the memory
        thumbnails=spill.add(thumbnails) if spill is not None else list(thumbnails),
        warnings=list(row["warnings"] or []),
        **unpack_measures(row, SegmentResult),
    )


@dataclass(frozen=True)
class Outcome:
    """A video's rows from its segments: stitched, or its one ``failed`` row."""

    config: Config
    run_id: str
    config_digest: str
    derived_digest: str | None = None

    def stitched(self, meta: SegmentRecord, segments: list[SegmentResult]) -> VideoRows:
        """The video stitched from ``segments``; its failed row if they do not stitch."""
        try:
            return stitch_video(
                dict(meta), segments, self.config, self.run_id, self.config_digest, self.derived_digest
            )
        except StitchError as exc:
            return self.failed(meta, exc.stage, str(exc))

    def failure(self, record: SegmentRecord) -> VideoRows:
        """The failed row a failure record stands for."""
        return self.failed(record, record["error_stage"] or "", record.get("error_message"), record.get("warnings"))

    def failed(
        self, record: SegmentRecord, stage: str, message: str | None, warnings: list[str] | None = None
    ) -> VideoRows:
        meta: dict[str, Any] = dict(record)
        return VideoRows(
            video_row(
                meta,
                status="failed",
                run_id=self.run_id,
                config_digest=self.config_digest,
                error_stage=stage,
                error_message=message,
                warnings=warnings,
            )
        )


@dataclass(frozen=True)
class Arrival:
    """What one segment record changed: frames it added, and the video it finished, if any."""

    #: Decoded frames of a segment taken in; 0 for a failure record or a finished video's segment.
    frames: int = 0
    #: The video's rows, when this record was its last segment or its failure.
    finished: VideoRows | None = None


class VideoAssembler:
    """Reassembles videos from segment records in any order, any interleaving of videos.

    ``add`` takes one record; a video is finished (ok, or failed with its stage and reason)
    exactly once, after which its remaining records are ignored. Use as a context manager,
    or call :meth:`close`: the thumbnail spills of videos still open are deleted.
    """

    def __init__(self, config: Config, run_id: str, config_digest: str, derived_digest: str | None = None) -> None:
        self.outcome = Outcome(config, run_id, config_digest, derived_digest)
        self._segments: dict[str, dict[int, SegmentResult]] = {}
        #: Thumbnails of open videos of more than one segment, on local disk.
        self._spills: dict[str, ThumbnailSpill] = {}
        self._finished: set[str] = set()

    @property
    def open_videos(self) -> int:
        """Videos with some segments in and some still to come."""
        return len(self._segments)

    @property
    def open_spills(self) -> int:
        """Thumbnail spill files currently held."""
        return len(self._spills)

    def add(self, record: SegmentRecord) -> Arrival:
        """Take one segment record; the video's rows when this finishes it."""
        video_id = record["video_id"]
        if video_id in self._finished:
            return Arrival()  # another segment of a video that already failed
        error_stage = record.get("error_stage")
        if error_stage:
            return Arrival(finished=self._finish(video_id, self.outcome.failure(record)))
        segments = self._segments.setdefault(video_id, {})
        spill = self._spills.get(video_id)
        if spill is None and record["segment_count"] > 1:  # a one-segment video is stitched at once
            spill = self._spills[video_id] = ThumbnailSpill()
        segments[record["segment_index"]] = segment_result(record, spill)
        frames = record["decoded_frames"] or 0
        if len(segments) < record["segment_count"]:
            return Arrival(frames=frames)
        rows = self.outcome.stitched(record, list(segments.values()))
        return Arrival(frames=frames, finished=self._finish(video_id, rows))

    def add_all(self, records: Iterable[SegmentRecord]) -> list[VideoRows]:
        """Every video that ``records`` finish, in the order they finish."""
        return [arrival.finished for arrival in map(self.add, records) if arrival.finished is not None]

    def check_complete(self) -> None:
        """Raise :class:`~pipeline.errors.IncompleteVideosError` if a video still waits for segments."""
        if self._segments:
            raise IncompleteVideosError(f"{len(self._segments)} videos never received all their segments")

    def close(self) -> None:
        """Delete the spills of videos still open."""
        for spill in self._spills.values():
            spill.close()
        self._spills.clear()

    def __enter__(self) -> VideoAssembler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _finish(self, video_id: str, rows: VideoRows) -> VideoRows:
        self._finished.add(video_id)
        self._segments.pop(video_id, None)
        spill = self._spills.pop(video_id, None)
        if spill is not None:
            spill.close()
        return rows


#: What a lost segment is modelled again from: its video's listing and plan (its own span apart).
PLAN_FIELDS = (
    *LISTING_RECORD,
    *("num_frames", "fps", "duration_s", "width", "height", "codec"),
    *("rotation", "decode_width", "decode_height", "segment_count"),
)


class VideoFinisher:
    """Stitches each video in the worker that modelled its last segment; see the module.

    ``add`` takes a record out of the run's last stage and returns the video's
    :class:`~pipeline.execution.records.FinishedVideo` when that record finishes it: at once
    for a one-segment video or a failure, through ``gathering`` for a longer video. A segment
    the gathering lost (its node died) is modelled again with ``remake``, from its plan.
    Holds nothing between calls, so an actor may call it from several threads.
    """

    def __init__(self, outcome: Outcome, gathering: Gathering, remake: Remake | None = None) -> None:
        self.outcome = outcome
        self.gathering = gathering
        self.remake = remake

    def add(self, record: SegmentRecord) -> FinishedVideo | None:
        count = record.get("segment_count") or 1
        if record.get("error_stage"):
            if count > 1:
                self.gathering.close(record["video_id"])
            return FinishedVideo.of(self.outcome.failure(record), segment_count=count)
        if count == 1:
            rows = self.outcome.stitched(record, [segment_result(record)])
            return FinishedVideo.of(rows, record["decoded_frames"] or 0)
        parts = self.gathering.offer(record)
        if parts is None:
            return None
        return self._stitch_parts(record, parts)

    def _stitch_parts(self, record: SegmentRecord, parts: list[Part]) -> FinishedVideo:
        """The video of ``parts``, read one at a time (thumbnails to a local spill, so that a long
        video's never sit in memory at once)."""
        frames, segments = 0, []
        with contextlib.closing(ThumbnailSpill()) as spill:
            for part in parts:
                got = record if part.index == record["segment_index"] else self._load(record, part)
                if got.get("error_stage"):
                    self.gathering.close(record["video_id"])
                    return FinishedVideo.of(self.outcome.failure(got), frames, len(parts))
                frames += got["decoded_frames"] or 0
                segments.append(segment_result(got, spill))
            rows = self.outcome.stitched(record, segments)
        return FinishedVideo.of(rows, frames, len(parts))

    def _load(self, record: SegmentRecord, part: Part) -> SegmentRecord:
        """``part``'s modelled record, modelled again from its plan if it was lost."""
        got = self.gathering.load(part)
        if got is not None:
            return got
        log.warning("%s: segment %d was lost with the node that held it; modelling it again", redact(record["uri"]), part.index)
        if self.remake is None:
            message = f"segment {part.index} was lost with the node that held it"
            return {**record, "error_stage": StitchError.stage, "error_message": message}  # type: ignore[typeddict-item]
        plan: dict[str, Any] = {name: record.get(name) for name in PLAN_FIELDS}
        plan.update(segment_index=part.index, start_frame=part.start_frame, end_frame=part.end_frame, warnings=[])
        return self.remake(cast(SegmentRecord, plan))[0]


__all__ = ["PLAN_FIELDS", "Arrival", "Outcome", "VideoAssembler", "VideoFinisher", "segment_result"]
