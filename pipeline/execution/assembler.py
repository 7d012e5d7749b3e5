"""The driver's half of a run: videos reassembled from their segments as they arrive.

Ray Data hands segment records back in whatever order its workers finish them, the
segments of many videos interleaved. :class:`VideoAssembler` holds each open video's
segments (their thumbnails spilled to local disk), stitches a video as soon as its last
segment arrives, and turns a failure record or a failed stitch into the video's one
``failed`` row. Ray-free: tests and benchmarks drive it with hand-built records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from pipeline.algorithms.stitch import (
    SegmentResult,
    ThumbnailSpill,
    VideoRows,
    stitch_video,
    video_row,
)
from pipeline.config import Config
from pipeline.errors import IncompleteVideosError, StitchError
from pipeline.execution.records import SegmentRecord, frame_statistics, unpack


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
        **frame_statistics(row),
    )  # type: ignore[arg-type]  # a modelled record has every field SegmentResult needs


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
        self.config = config
        self.run_id = run_id
        self.config_digest = config_digest
        self.derived_digest = derived_digest
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
            rows = self._failed(record, error_stage, record.get("error_message"), record.get("warnings"))
            return Arrival(finished=self._finish(video_id, rows))
        segments = self._segments.setdefault(video_id, {})
        spill = self._spills.get(video_id)
        if spill is None and record["segment_count"] > 1:  # a one-segment video is stitched at once
            spill = self._spills[video_id] = ThumbnailSpill()
        segments[record["segment_index"]] = segment_result(record, spill)
        frames = record["decoded_frames"] or 0
        if len(segments) < record["segment_count"]:
            return Arrival(frames=frames)
        try:
            rows = stitch_video(
                dict(record), list(segments.values()), self.config, self.run_id, self.config_digest, self.derived_digest
            )
        except StitchError as exc:
            rows = self._failed(record, exc.stage, str(exc))
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

    def _failed(
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

    def _finish(self, video_id: str, rows: VideoRows) -> VideoRows:
        self._finished.add(video_id)
        self._segments.pop(video_id, None)
        spill = self._spills.pop(video_id, None)
        if spill is not None:
            spill.close()
        return rows


__all__ = ["Arrival", "VideoAssembler", "segment_result"]
