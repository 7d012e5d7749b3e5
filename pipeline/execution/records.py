"""The record that travels between stages: one video segment, filled in stage by stage.

:class:`SegmentRecord` declares its fields once, each as Python sees it (how a stage reads and
writes it) and with its Arrow type, from which ``SEGMENT`` (how Ray Data ships it between
workers) is generated. Array payloads travel as ``.npy`` bytes (:func:`pack`, :func:`unpack`);
the statistics measured while decoding travel together in one ``measures`` column whose fields
are generated from :class:`~pipeline.algorithms.frame_stats.SegmentMeasures` (:func:`pack_measures`,
:func:`unpack_measures`). A record whose
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
from typing import TYPE_CHECKING, Annotated, Any, TypedDict, cast, get_type_hints

import numpy as np
import pyarrow as pa

from pipeline.algorithms.frame_stats import SegmentMeasures, measured, measures
from pipeline.errors import VideoError
from pipeline.index.schemas import CHILD_TABLES, LISTING_COLUMNS, VIDEOS, to_table

if TYPE_CHECKING:
    from pipeline.algorithms.stitch import VideoRows

#: Where workers read a listed object: its uri, or a staged copy for process-local filesystems.
LOCATION = "location"
#: The listing's part of a record: the listed columns of ``videos``, with the location after the uri.
LISTING_RECORD = (*LISTING_COLUMNS[:2], LOCATION, *LISTING_COLUMNS[2:])


class _LikeVideos:
    """Marks a :class:`SegmentRecord` field typed as the ``videos`` column of its name."""

    def __repr__(self) -> str:
        return "LIKE_VIDEOS"


LIKE_VIDEOS = _LikeVideos()


def measures_type(definition: type[SegmentMeasures] = SegmentMeasures) -> pa.StructType:
    """The Arrow type of a record's ``measures``: a ``.npy`` binary for each field of ``definition``."""
    return pa.struct([(name, pa.binary()) for name in measures(definition)])


class SegmentRecord(TypedDict, total=False):
    """One video segment between stages, as Python values; each field's Arrow type is declared
    beside it, and :data:`SEGMENT` is generated from them.

    Filled stage by stage: the listing sets the first six, planning the video's metadata
    and the segment's span of frames, decoding the ``.npy`` payloads and thumbnails, the
    models the network outputs. A field is absent (or None, once the record has been
    through Arrow) until its stage has run; a stage reads only what earlier stages filled.
    The types say what a filled field holds; ``| None`` marks a field that may stay empty.
    """

    # listing
    video_id: Annotated[str, LIKE_VIDEOS]
    uri: Annotated[str, LIKE_VIDEOS]
    #: Where workers read the object: the uri, or a staged copy for process-local filesystems.
    location: Annotated[str, pa.string()]
    size_bytes: Annotated[int | None, LIKE_VIDEOS]
    etag: Annotated[str | None, LIKE_VIDEOS]
    mtime: Annotated[dt.datetime | None, LIKE_VIDEOS]
    # plan: the video's metadata, and this segment's frames [start_frame, end_frame)
    num_frames: Annotated[int, LIKE_VIDEOS]
    fps: Annotated[float, LIKE_VIDEOS]
    duration_s: Annotated[float, LIKE_VIDEOS]
    width: Annotated[int, LIKE_VIDEOS]
    height: Annotated[int, LIKE_VIDEOS]
    codec: Annotated[str | None, LIKE_VIDEOS]
    #: Degrees the frames are turned for display.
    rotation: Annotated[int, pa.int32()]
    #: The size frames are decoded to (the decode box, display orientation).
    decode_width: Annotated[int, pa.int32()]
    decode_height: Annotated[int, pa.int32()]
    segment_index: Annotated[int, pa.int32()]
    segment_count: Annotated[int, pa.int32()]
    start_frame: Annotated[int, pa.int64()]
    end_frame: Annotated[int, pa.int64()]
    #: The packets the segment decodes, ``[span_first, span_first + span_frames)``, as planning
    #: found them in the container's index (:class:`~pipeline.media.spans.PlannedSpan`): two
    #: numbers a segment, not the index. ``span_frames`` 0: the whole file; None: not planned
    #: (the decoder reads the container's index itself).
    span_first: Annotated[int | None, pa.int64()]
    span_frames: Annotated[int | None, pa.int64()]
    # decode: arrays as ``.npy`` bytes
    decoded_frames: Annotated[int, pa.int64()]
    #: Frames at the shot network's input size; dropped (None) once the models have run. An
    #: array, not bytes, only from decode to the models inside one actor (never through Ray).
    shot_input: Annotated[bytes | np.ndarray | None, pa.binary()]
    #: The sampled frames at the embedding network's input size; dropped like ``shot_input``.
    samples: Annotated[bytes | np.ndarray | None, pa.binary()]
    #: Frame numbers of the sampled frames.
    sample_frames: Annotated[bytes, pa.binary()]
    #: Presentation time of every decoded frame, in seconds.
    frame_times: Annotated[bytes, pa.binary()]
    #: The statistics measured while decoding, one ``.npy`` each by name
    #: (:class:`~pipeline.algorithms.frame_stats.SegmentMeasures`, :func:`pack_measures`): None
    #: for the whole (a failure) or for one (a measure a row was made without).
    measures: Annotated[dict[str, bytes | None] | None, measures_type()]
    #: One JPEG per sampled frame.
    thumbnails: Annotated[list[bytes], pa.list_(pa.binary())]
    # models: arrays as ``.npy`` bytes
    #: Per-frame probability of a transition at that frame (TransNetV2's single head).
    single: Annotated[bytes, pa.binary()]
    #: Per-frame probability of being inside a transition (its "many" head).
    many: Annotated[bytes, pa.binary()]
    #: float16 embedding of every sampled frame.
    embeddings: Annotated[bytes, pa.binary()]
    # outcome
    warnings: Annotated[list[str] | None, pa.list_(pa.string())]
    #: Set when the video failed: the stage that failed it (the whole video, not this segment).
    error_stage: Annotated[str | None, pa.string()]
    error_message: Annotated[str | None, pa.string()]


def record_schema(record: type = SegmentRecord) -> pa.Schema:
    """The Arrow schema of a record type whose fields declare their Arrow types (``Annotated``)."""
    columns = []
    for name, hint in get_type_hints(record, include_extras=True).items():
        declared = [item for item in getattr(hint, "__metadata__", ()) if item is LIKE_VIDEOS or isinstance(item, pa.DataType)]
        if len(declared) != 1:
            raise TypeError(f"{record.__name__}.{name} must declare one Arrow type")
        columns.append(pa.field(name, VIDEOS.field(name).type if declared[0] is LIKE_VIDEOS else declared[0]))
    return pa.schema(columns)


#: One record per video segment, filled in stage by stage (generated from :class:`SegmentRecord`).
SEGMENT = record_schema()


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


def pack_measures(value: SegmentMeasures) -> dict[str, bytes | None]:
    """A record's ``measures`` from ``value``: each measure as ``.npy`` bytes (None stays None)."""
    return {name: None if array is None else pack(array) for name, array in measured(value).items()}


def unpack_measures(
    row: SegmentRecord | dict[str, Any], definition: type[SegmentMeasures] = SegmentMeasures
) -> dict[str, np.ndarray | None]:
    """A record's measures as keyword arguments for ``definition`` (or a class extending it,
    such as :class:`~pipeline.algorithms.stitch.SegmentResult`); None for a measure the record
    lacks."""
    packed: dict[str, Any] = dict(row).get("measures") or {}
    return {name: None if packed.get(name) is None else unpack(packed[name]) for name in measures(definition)}


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


def listing_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Listed videos (:data:`LISTING_RECORD` columns of each row) as a block for Ray."""
    return pa.Table.from_pylist(rows, schema=pa.schema([SEGMENT.field(c) for c in LISTING_RECORD]))


def finished_table(videos: list[FinishedVideo]) -> pa.Table:
    """:data:`FINISHED` records of ``videos``, as a block for Ray."""
    return pa.Table.from_pylist([v.to_record() for v in videos], schema=FINISHED)


__all__ = [
    "FINISHED",
    "VIDEO_TABLES",
    "FinishedVideo",
    "finished_table",
    "listing_table",
    "SEGMENT",
    "SegmentRecord",
    "failed",
    "measures_type",
    "pack",
    "pack_measures",
    "record_schema",
    "unpack",
    "unpack_measures",
]
