"""The index's tables: their schemas, one registry, and rows typed by them.

Schemas are defined once here; every stage builds rows from them and the Parquet written is
typed by them. Nothing here reads or writes storage (see :mod:`pipeline.index.store`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from pipeline.models.spec import EMBEDDING_DIM

TIMESTAMP = pa.timestamp("us", tz="UTC")
VIDEOS = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("size_bytes", pa.int64()),
        ("etag", pa.string()),
        ("mtime", TIMESTAMP),
        ("status", pa.string()),  # ok | failed | deleted
        ("error_stage", pa.string()),
        ("error_message", pa.string()),
        ("warnings", pa.string()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("codec", pa.string()),
        ("num_shots", pa.int32()),
        ("num_scenes", pa.int32()),
        ("num_keyframes", pa.int32()),
        ("config_digest", pa.string()),  # weights and settings decoding and the networks used
        ("run_id", pa.string()),
        ("indexed_at", TIMESTAMP),
        ("derived_digest", pa.string()),  # settings of what is derived from stored outputs (scenes)
    ]
)
#: The columns of ``videos`` that a listing fills: which object (``video_id``, ``uri``) and which
#: version of it was listed (``size_bytes``, ``etag``, ``mtime``; a change re-indexes it).
LISTING_COLUMNS = ("video_id", "uri", "size_bytes", "etag", "mtime")

SHOTS = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_index", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),  # inclusive
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),  # end of the last frame: (end_frame + 1) / fps
        ("transition", pa.string()),  # how the shot begins: start | cut | gradual
        ("boundary_score", pa.float32()),  # peak probability of that transition; null for the first shot
        ("run_id", pa.string()),
        # The shot's embedding (normalised mean of its frames'): scenes are derived from it.
        ("embedding", pa.list_(pa.float32())),
        # Curation signals (pipeline.algorithms.frame_stats.shot_signals), transition frames left
        # out; null in rows indexed before they were measured.
        ("motion", pa.float32()),  # mean |delta luma| between consecutive 48x27 frames, 0-1
        ("brightness", pa.float32()),  # mean luma, 0-1
        ("sharpness", pa.float32()),  # mean variance of the Laplacian of sampled frames' luma (0-255 scale)
        ("still", pa.bool_()),  # motion below frame_stats.STILL_MOTION
        # Share of the shot's frames' colour-layout cells in each of 4x4x4 RGB bins
        # (pipeline.algorithms.scenes.colour_histogram): scenes are derived from it and the
        # embedding; null in rows indexed before it was kept.
        ("colour_histogram", pa.list_(pa.float32())),
        # The mean luma (0-255) of each 3x3 block of the 48x27 copies of the shot's frames, 9
        # rows of 16 (pipeline.algorithms.frame_stats.shot_layout): near-duplicate shots are found
        # by it and the embedding (pipeline.index.dedup); null in rows indexed before it was kept.
        ("luma_layout", pa.list_(pa.float32())),
    ]
)

SCENES = pa.schema(
    [
        ("video_id", pa.string()),
        ("scene_index", pa.int32()),
        ("first_shot", pa.int32()),
        ("last_shot", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("run_id", pa.string()),
    ]
)

#: Delta has no fixed-size list; embeddings are stored as list<float32> of EMBEDDING_DIM
#: and :func:`read_table` restores the fixed-size type.
EMBEDDING = pa.list_(pa.float32())
EMBEDDING_FIXED = pa.list_(pa.float32(), EMBEDDING_DIM)

KEYFRAMES = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_index", pa.int32()),
        ("scene_index", pa.int32()),
        ("frame", pa.int64()),
        ("time_s", pa.float64()),
        ("score", pa.float32()),
        ("embedding", EMBEDDING),
        ("thumbnail", pa.binary()),  # JPEG
        ("run_id", pa.string()),
    ]
)

COUNTS = pa.struct(
    [
        ("listed", pa.int64()),
        ("new", pa.int64()),
        ("changed", pa.int64()),
        ("unchanged", pa.int64()),
        ("deleted", pa.int64()),
        ("ok", pa.int64()),
        ("failed", pa.int64()),
        ("frames", pa.int64()),
    ]
)
#: A run's counts by name, in the order of the ``runs`` table's ``counts`` column.
COUNT_KEYS: tuple[str, ...] = tuple(COUNTS.field(i).name for i in range(COUNTS.num_fields))

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", TIMESTAMP),
        ("finished_at", TIMESTAMP),
        ("source", pa.string()),
        ("counts", COUNTS),
        ("config", pa.string()),  # JSON
        ("versions", pa.string()),  # JSON: vindex, weights hashes, config digest
        ("status", pa.string()),  # running | ok | partial | failed | abandoned
        # Last sign of life of a running run; a run whose heartbeat is older than its lease
        # is over (killed) and its uncommitted rows may be collected.
        ("heartbeat_at", TIMESTAMP),
        # Videos whose scenes the run derived again from stored shots, without decoding.
        ("rederived", pa.int64()),
        # When a run's leftovers were last cleared (Index.collect_orphans): a run over and
        # collected can leave nothing more, so later clean-ups never read its rows again.
        ("collected_at", TIMESTAMP),
    ]
)
#: The table of clip files cut from shots or scenes (``vindex clips``): one row per clip, ok or failed.
#: Kept out of :data:`SCHEMAS`: it is written by ``vindex clips`` only, outside the run
#: protocol (no ``videos`` marker names its rows), and an index without clips has no such table.
CLIPS_TABLE = "clips"
CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),  # uuid5 of video, kind, requested frames and the file settings
        ("video_id", pa.string()),
        ("kind", pa.string()),  # shot | scene
        ("unit_index", pa.int32()),  # shot_index or scene_index
        ("start_frame", pa.int64()),  # the frames the file holds, inclusive (copy: whole GOPs)
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),  # end of the last frame: (end_frame + 1) / fps
        ("uri", pa.string()),
        ("size_bytes", pa.int64()),
        ("codec", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("mode", pa.string()),  # reencode (frame-exact) | copy (keyframe-aligned)
        ("run_id", pa.string()),
        ("status", pa.string()),  # ok | failed
        ("error_message", pa.string()),
        ("created_at", TIMESTAMP),
    ]
)
#: Near-duplicate groups of shots and videos (``vindex dedup``, :mod:`pipeline.index.dedup`): one
#: row per current shot and per video, a shot or video with no duplicate being a group of one.
#: Outside the run protocol like ``clips``: rewritten whole by each dedup run.
DUPLICATES_TABLE = "duplicates"
DUPLICATES = pa.schema(
    [
        ("group_id", pa.string()),  # uuid5 of the level and the representative chosen when the group was made
        ("level", pa.string()),  # shot | video
        ("video_id", pa.string()),
        ("shot_index", pa.int32()),  # null at video level
        # Shot: pipeline.index.dedup.pair_similarity to the representative (the threshold itself
        # where the shots around both lifted the pair: sequence_similarity); video: the share of
        # the video's shot duration that is footage of the representative video.
        ("similarity", pa.float32()),
        ("is_representative", pa.bool_()),
        ("group_size", pa.int32()),
        ("video_run_id", pa.string()),  # the index run whose shots the row describes
        ("threshold", pa.float32()),  # the shot threshold the groups were made with
        ("run_id", pa.string()),  # the dedup run that wrote the row
    ]
)
#: Tables written outside the run protocol by their own commands (no ``videos`` marker names
#: their rows), each present once its command has written it: readers list them beside
#: :data:`SCHEMAS`.
SIDE_TABLES: dict[str, pa.Schema] = {CLIPS_TABLE: CLIPS, DUPLICATES_TABLE: DUPLICATES}
#: Columns added to a table after indexes were first written: ``Index.ensure`` adds them.
ADDED_COLUMNS = {
    "runs": ("heartbeat_at", "rederived", "collected_at"),
    "videos": ("derived_digest",),
    "shots": ("embedding", "motion", "brightness", "sharpness", "still", "colour_histogram", "luma_layout"),
}
SCHEMAS: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "shots": SHOTS,
    "scenes": SCENES,
    "keyframes": KEYFRAMES,
    "runs": RUNS,
}
#: Tables keyed by video, committed child tables first and ``videos`` (the marker) last.
VIDEO_TABLES = ("shots", "scenes", "keyframes", "videos")
#: The tables whose rows belong to the run that a video's ``videos`` row names.
CHILD_TABLES = ("shots", "scenes", "keyframes")
def table_uri(index: str, name: str) -> str:
    return index.rstrip("/") + "/" + name


def to_table(name: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) -> an Arrow table typed by the named schema."""
    return pa.Table.from_pylist(list(rows), schema=SCHEMAS[name])


__all__ = [
    "ADDED_COLUMNS",
    "CHILD_TABLES",
    "CLIPS",
    "CLIPS_TABLE",
    "COUNTS",
    "DUPLICATES",
    "DUPLICATES_TABLE",
    "EMBEDDING",
    "EMBEDDING_FIXED",
    "KEYFRAMES",
    "LISTING_COLUMNS",
    "RUNS",
    "SCENES",
    "SCHEMAS",
    "SHOTS",
    "SIDE_TABLES",
    "TIMESTAMP",
    "VIDEOS",
    "VIDEO_TABLES",
    "table_uri",
    "to_table",
]
