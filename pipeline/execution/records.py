"""The record that travels between stages: one video segment, filled in stage by stage.

``SEGMENT`` is its Arrow schema (how Ray Data ships it between workers) and
:class:`SegmentRecord` the same fields as Python sees them (how a stage reads and writes
it). Array payloads travel as ``.npy`` bytes (:func:`pack`, :func:`unpack`). A record whose
``error_stage`` is set stands for the whole video's failure; later stages pass it on
untouched, so a bad video reaches the driver as exactly one failure.

A video's segments are brought together and stitched where they were modelled
(:mod:`pipeline.execution.assembler`); what reaches the driver is one :data:`FINISHED`
record per video, its rows for every table as Arrow IPC (:class:`FinishedVideo`), which the
driver only commits.

Ray-free and torch-free: the assembler, the driver and tests use it without a cluster.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import pyarrow as pa

from pipeline.errors import VideoError
from pipeline.index.schemas import CHILD_TABLES, LISTING_COLUMNS, VIDEOS, to_table

if TYPE_CHECKING:
    from pipeline.algorithms.stitch import VideoRows

#: Where workers read a listed object: its uri, or a staged copy for process-local filesystems.
LOCATION = "location"
#: The listing's part of a record: the listed columns of ``videos``, with the location after the uri.
LISTING_RECORD = (*LISTING_COLUMNS[:2], LOCATION, *LISTING_COLUMNS[2:])

#: One record per video segment, filled in stage by stage.
SEGMENT = pa.schema(
    [
        # the listing: the video and the version of it listed, and where workers read it
        *(VIDEOS.field(name) if name != LOCATION else pa.field(LOCATION, pa.string()) for name in LISTING_RECORD),
        # plan
        *(VIDEOS.field(name) for name in ("num_frames", "fps", "duration_s", "width", "height", "codec")),
        ("rotation", pa.int32()),
        ("decode_width", pa.int32()),
        ("decode_height", pa.int32()),
        ("segment_index", pa.int32()),
        ("segment_count", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        # decode
        ("decoded_frames", pa.int64()),
        ("shot_input", pa.binary()),
        ("samples", pa.binary()),
        ("sample_frames", pa.binary()),
        ("frame_times", pa.binary()),
        # per-frame luma, colour layout and motion, per-sample sharpness (pipeline.media.decode.DecodedSegment)
        ("frame_luma", pa.binary()),
        ("frame_colours", pa.binary()),
        ("sample_sharpness", pa.binary()),
        ("frame_motion", pa.binary()),
        ("frame_layout", pa.binary()),  # per-frame luma layout (pipeline.algorithms.frame_stats.luma_layout)
        ("thumbnails", pa.list_(pa.binary())),
        # models
        ("single", pa.binary()),
        ("many", pa.binary()),
        ("embeddings", pa.binary()),
        # outcome
        ("warnings", pa.list_(pa.string())),
        ("error_stage", pa.string()),
        ("error_message", pa.string()),
    ]
)


class SegmentRecord(TypedDict, total=False):
    """One video segment between stages: the fields of :data:`SEGMENT`, as Python values.

    Filled stage by stage: the listing sets the first six, planning the video's metadata
    and the segment's span of frames, decoding the ``.npy`` payloads and thumbnails, the
    models the network outputs. A field is absent (or None, once the record has been
    through Arrow) until its stage has run; a stage reads only what earlier stages filled.
    The types say what a filled field holds; ``| None`` marks a field that may stay empty.
    """

    # listing
    video_id: str
    uri: str
    #: Where workers read the object: the uri, or a staged copy for process-local filesystems.
    location: str
    size_bytes: int | None
    etag: str | None
    mtime: dt.datetime | None
    # plan: the video's metadata, and this segment's frames [start_frame, end_frame)
    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str | None
    #: Degrees the frames are turned for display.
    rotation: int
    #: The size frames are decoded to (the decode box, display orientation).
    decode_width: int
    decode_height: int
    segment_index: int
    segment_count: int
    start_frame: int
    end_frame: int
    # decode: arrays as ``.npy`` bytes
    decoded_frames: int
    #: Frames at the shot network's input size; dropped (None) once the models have run. An
    #: array, not bytes, only from decode to the models inside one actor (never through Ray).
    shot_input: bytes | np.ndarray | None
    #: The sampled frames at the embedding network's input size; dropped like ``shot_input``.
    samples: bytes | np.ndarray | None
    #: Frame numbers of the sampled frames.
    sample_frames: bytes
    #: Presentation time of every decoded frame, in seconds.
    frame_times: bytes
    #: Per-frame luma, per-frame colour layout, per-sample sharpness, per-frame motion (change
    #: from the frame before): None in rows from before they were measured.
    frame_luma: bytes | None
    frame_colours: bytes | None
    sample_sharpness: bytes | None
    frame_motion: bytes | None
    #: Per-frame luma layout (16x9 blocks); None in rows from before it was measured.
    frame_layout: bytes | None
    #: One JPEG per sampled frame.
    thumbnails: list[bytes]
    # models: arrays as ``.npy`` bytes
    #: Per-frame probability of a transition at that frame (TransNetV2's single head).
    single: bytes
    #: Per-frame probability of being inside a transition (its "many" head).
    many: bytes
    #: float16 embedding of every sampled frame.
    embeddings: bytes
    # outcome
    warnings: list[str] | None
    #: Set when the video failed: the stage that failed it (the whole video, not this segment).
    error_stage: str | None
    error_message: str | None


#: Listing fields a failure record keeps, with the video's metadata where planning found it.
FAILURE_FIELDS = (*LISTING_RECORD, "num_frames", "fps", "duration_s", "width", "height", "codec")


def pack(array: np.ndarray) -> bytes:
    """An array as ``.npy`` bytes (no pickle), for a binary column."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def unpack(data: bytes) -> np.ndarray:
    """The array :func:`pack` wrote."""
    return np.load(io.BytesIO(data), allow_pickle=False)


#: The decode stage's per-frame statistics: row column = SegmentResult field.
FRAME_STATISTICS = ("frame_luma", "frame_colours", "sample_sharpness", "frame_motion", "frame_layout")


def frame_statistics(row: SegmentRecord | dict[str, Any]) -> dict[str, np.ndarray | None]:
    """A decoded segment row's statistics as :class:`~pipeline.algorithms.stitch.SegmentResult` keyword
    arguments; None for a column the row lacks (a row written before they were measured)."""
    values: dict[str, Any] = dict(row)
    return {name: unpack(values[name]) if values.get(name) is not None else None for name in FRAME_STATISTICS}


def failed(row: SegmentRecord, error: VideoError) -> SegmentRecord:
    """The row marked as failed at the error's stage; heavy payloads dropped."""
    values: dict[str, Any] = dict(row)
    out: dict[str, Any] = {key: values.get(key) for key in FAILURE_FIELDS}
    out.update(segment_index=values.get("segment_index") or 0, segment_count=values.get("segment_count") or 1)
    out.update(error_stage=error.stage, error_message=error.message, warnings=values.get("warnings"))
    return cast(SegmentRecord, out)


#: The tables a finished video has rows in, in the order they are committed.
VIDEO_TABLES = ("videos", *CHILD_TABLES)

#: One record per finished video, from the workers that stitched it to the driver that commits it.
FINISHED = pa.schema(
    [
        ("video_id", pa.string()),
        ("segment_count", pa.int32()),
        #: Frames decoded for the video (all its segments).
        ("frames", pa.int64()),
        #: The video's rows of each table, as an Arrow IPC stream in the table's schema.
        *((name, pa.binary()) for name in VIDEO_TABLES),
    ]
)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return cast(bytes, sink.getvalue().to_pybytes())


@dataclass(frozen=True)
class FinishedVideo:
    """One video's rows for every table, as Arrow tables: all that a run commits for it."""

    video_id: str
    #: The video's one ``videos`` row, as Python values (status, counts, error).
    video: dict[str, Any]
    #: Its rows of each of :data:`VIDEO_TABLES` (``videos``: the one row above).
    tables: dict[str, pa.Table]
    #: Frames decoded for it in this run.
    frames: int = 0
    segment_count: int = 1

    @classmethod
    def of(cls, rows: VideoRows, frames: int = 0, segment_count: int = 1) -> FinishedVideo:
        """Built from a video's stitched rows (where it was stitched, or on the driver)."""
        tables = {
            "videos": to_table("videos", [rows.video]),
            **{name: to_table(name, getattr(rows, name)) for name in CHILD_TABLES},
        }
        return cls(rows.video["video_id"], rows.video, tables, frames, segment_count)

    def to_record(self) -> dict[str, Any]:
        """The :data:`FINISHED` record that carries it through Ray."""
        return {
            "video_id": self.video_id,
            "segment_count": self.segment_count,
            "frames": self.frames,
            **{name: _ipc(self.tables[name]) for name in VIDEO_TABLES},
        }

    @classmethod
    def from_records(cls, batch: pa.Table) -> Iterator[FinishedVideo]:
        """The videos of a block of :data:`FINISHED` records; the tables read without a copy."""
        columns = {name: batch.column(name) for name in VIDEO_TABLES}
        ids, counts, frames = (batch.column(name).to_pylist() for name in ("video_id", "segment_count", "frames"))
        for i, video_id in enumerate(ids):
            tables = {name: pa.ipc.open_stream(column[i].as_buffer()).read_all() for name, column in columns.items()}
            video = tables["videos"].to_pylist()[0]
            yield cls(video_id, video, tables, frames[i] or 0, counts[i] or 1)

    def rows(self, table: str) -> int:
        """How many rows it has in ``table``."""
        return int(self.tables[table].num_rows)


def finished_table(videos: list[FinishedVideo]) -> pa.Table:
    """:data:`FINISHED` records of ``videos``, as a block for Ray."""
    return pa.Table.from_pylist([v.to_record() for v in videos], schema=FINISHED)


__all__ = [
    "FINISHED",
    "FRAME_STATISTICS",
    "VIDEO_TABLES",
    "FinishedVideo",
    "finished_table",
    "SEGMENT",
    "SegmentRecord",
    "failed",
    "frame_statistics",
    "pack",
    "unpack",
]
