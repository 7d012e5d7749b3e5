"""Which clips to cut: units (shots or scenes) of an index, filtered, trimmed and split.

Pure span arithmetic (:func:`trim_span`, :func:`split_span`, :func:`plan_clips`) is apart
from reading the index (:func:`unit_table`) and from the SQL filter (:func:`filter_units`),
so it is tested on hand-built tables without an index. Frames are counted as the index
counts them: ``start_frame`` and ``end_frame`` are both inclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ConfigError, QueryError
from pipeline.index.query import CONFINED_SETTINGS
from pipeline.index.store import Index

#: Unit kinds and the table and index column each is read from.
UNIT_TABLES = {"shot": ("shots", "shot_index"), "scene": ("scenes", "scene_index")}
#: Columns of a unit table that ``--where`` sees (the embedding is left out: 5 KB a row).
UNIT_COLUMNS = {
    # With the curation signals (motion, brightness, sharpness, still) that --where filters on.
    "shot": [
        "video_id", "shot_index", "start_frame", "end_frame", "start_s", "end_s", "transition", "boundary_score",
        "motion", "brightness", "sharpness", "still", "run_id",
    ],
    "scene": ["video_id", "scene_index", "first_shot", "last_shot", "start_frame", "end_frame", "start_s", "end_s", "run_id"],
}
#: The name the unit table has in a ``--where`` predicate's query.
UNITS_VIEW = "units"


@dataclass(frozen=True)
class Selection:
    """Which units become clips, and how they are cut into clips.

    ``min_seconds`` and ``max_seconds`` apply to a unit after ``trim_seconds`` are dropped
    from each of its ends; a unit longer than ``max_seconds`` is split into equal pieces of
    at most that length. ``where`` is a SQL predicate over the unit's columns, its video's
    ``uri`` and ``fps``, and ``seconds`` (the unit's length before trimming).
    """

    by: str = "shot"
    min_seconds: float = 0.0
    max_seconds: float | None = None
    where: str | None = None
    trim_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.by not in UNIT_TABLES:
            raise ConfigError(f"clips by {self.by!r}: use one of {', '.join(UNIT_TABLES)}")
        if self.min_seconds < 0 or self.trim_seconds < 0:
            raise ConfigError("--min-seconds and --trim-seconds must be 0 or more")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"--max-seconds must be more than 0, got {self.max_seconds}")
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            raise ConfigError(f"--max-seconds ({self.max_seconds}) is below --min-seconds ({self.min_seconds})")


@dataclass(frozen=True)
class ClipSpan:
    """One clip to cut: frames ``start_frame..end_frame`` (inclusive) of one video."""

    video_id: str
    uri: str
    fps: float
    kind: str
    unit_index: int
    start_frame: int
    end_frame: int

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    @property
    def start_s(self) -> float:
        return self.start_frame / self.fps

    @property
    def end_s(self) -> float:
        """End of the last frame, as the index's ``end_s``: ``(end_frame + 1) / fps``."""
        return (self.end_frame + 1) / self.fps


def trim_span(start_frame: int, end_frame: int, trim_frames: int) -> tuple[int, int] | None:
    """The span without ``trim_frames`` at each end; None when nothing is left."""
    start, end = start_frame + trim_frames, end_frame - trim_frames
    return (start, end) if start <= end else None


def split_span(start_frame: int, end_frame: int, max_frames: int) -> list[tuple[int, int]]:
    """The span cut into the fewest equal pieces (lengths differ by one at most) of at most
    ``max_frames`` frames each, in order, together covering it exactly."""
    total = end_frame - start_frame + 1
    pieces = max(1, math.ceil(total / max_frames))
    bounds = [start_frame + total * i // pieces for i in range(pieces + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(pieces)]


def plan_clips(units: pa.Table, selection: Selection) -> list[ClipSpan]:
    """The clips of ``units`` (rows of :func:`unit_table`, ``where`` already applied), ordered
    by video and frame. Lengths in seconds become frames with each video's fps."""
    _, index_column = UNIT_TABLES[selection.by]
    clips: list[ClipSpan] = []
    for row in units.sort_by([("video_id", "ascending"), ("start_frame", "ascending")]).to_pylist():
        fps = row["fps"]
        if not fps or fps <= 0:
            continue
        trimmed = trim_span(row["start_frame"], row["end_frame"], round(selection.trim_seconds * fps))
        if trimmed is None or (trimmed[1] - trimmed[0] + 1) / fps < selection.min_seconds:
            continue
        max_frames = max(1, math.floor(selection.max_seconds * fps)) if selection.max_seconds else None
        pieces = split_span(*trimmed, max_frames) if max_frames else [trimmed]
        clips.extend(
            ClipSpan(row["video_id"], row["uri"], fps, selection.by, row[index_column], start, end)
            for start, end in pieces
        )
    return clips


def unit_table(index: Index, by: str) -> pa.Table:
    """The units of every ``ok`` video with their video's ``uri`` and ``fps`` and their length
    in ``seconds`` (the columns a ``--where`` predicate sees)."""
    table_name, _ = UNIT_TABLES[by]
    units = index.read(table_name, columns=UNIT_COLUMNS[by])
    videos = index.read("videos", columns=["video_id", "uri", "fps"], filter=pc.field("status") == "ok")
    joined = units.join(videos, "video_id", join_type="inner")
    seconds = pc.subtract(joined.column("end_s"), joined.column("start_s"))
    return joined.append_column("seconds", seconds)


def filter_units(units: pa.Table, where: str | None) -> pa.Table:
    """The rows of ``units`` for which the SQL predicate ``where`` holds (DuckDB, confined as
    ``vindex query`` is: the predicate sees this table and nothing else)."""
    if not where:
        return units
    import duckdb

    connection = duckdb.connect(config=dict(CONFINED_SETTINGS))
    try:
        connection.register(UNITS_VIEW, units)
        return connection.sql(f"SELECT * FROM {UNITS_VIEW} WHERE ({where})").to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(
            f"--where {where!r}: {str(exc).splitlines()[0]} (columns: {', '.join(units.column_names)})"
        ) from exc
    finally:
        connection.close()


def select_clips(index: Index, selection: Selection) -> list[ClipSpan]:
    """The clips ``selection`` asks for in ``index``."""
    return plan_clips(filter_units(unit_table(index, selection.by), selection.where), selection)


__all__ = [
    "UNIT_TABLES",
    "ClipSpan",
    "Selection",
    "filter_units",
    "plan_clips",
    "select_clips",
    "split_span",
    "trim_span",
    "unit_table",
]
