"""Which clips to cut: units (shots or scenes) of an index, filtered, trimmed and split.

Pure span arithmetic (:func:`trim_span`, :func:`split_span`, :func:`plan_clips`) is apart
from reading the index (:func:`unit_table`) and from the SQL filter (:func:`filter_units`),
so it is tested on hand-built tables without an index. Frames are counted as the index
counts them: ``start_frame`` and ``end_frame`` are both inclusive.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ConfigError, QueryError
from pipeline.index.query import DEFAULT_TIMEOUT_S, confined_connection, within
from pipeline.index.snapshot import Snapshot

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
    ``uri`` and ``fps``, and ``seconds`` (the unit's length before trimming). ``unique`` keeps
    one shot per group of duplicates (the ``duplicates`` table's representative).
    """

    by: str = "shot"
    min_seconds: float = 0.0
    max_seconds: float | None = None
    where: str | None = None
    trim_seconds: float = 0.0
    unique: bool = False

    def __post_init__(self) -> None:
        if self.by not in UNIT_TABLES:
            raise ConfigError(f"clips by {self.by!r}: use one of {', '.join(UNIT_TABLES)}")
        if self.min_seconds < 0 or self.trim_seconds < 0:
            raise ConfigError("--min-seconds and --trim-seconds must be 0 or more")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"--max-seconds must be more than 0, got {self.max_seconds}")
        if self.unique and self.by != "shot":
            raise ConfigError("--unique keeps one shot per group of duplicate shots: use it with --by shot")
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


def unit_table(index: Snapshot, by: str) -> pa.Table:
    """The units of every ``ok`` video with their video's ``uri`` and ``fps`` and their length
    in ``seconds`` (the columns a ``--where`` predicate sees)."""
    table_name, _ = UNIT_TABLES[by]
    units = index.read(table_name, columns=UNIT_COLUMNS[by])
    videos = index.read("videos", columns=["video_id", "uri", "fps"], filter=pc.field("status") == "ok")
    joined = units.join(videos, "video_id", join_type="inner")
    seconds = pc.subtract(joined.column("end_s"), joined.column("start_s"))
    return joined.append_column("seconds", seconds)


#: Control characters a predicate may hold: whitespace. Any other has no place in SQL text.
_PREDICATE_WHITESPACE = frozenset("\t\n\r")
#: Nodes of a predicate's syntax tree that would read something other than the unit's row:
#: a query nested in it, a ``*``/``COLUMNS(*)`` expansion, a prepared statement's parameter.
_REFUSED_CLASSES = {"SUBQUERY": "a subquery", "STAR": "a * or COLUMNS(...) expansion", "PARAMETER": "a parameter"}


def _without_locations(node: Any) -> Any:
    """A parse tree without the offsets of its nodes in the SQL text (which differ with the text)."""
    if isinstance(node, dict):
        return {k: _without_locations(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_without_locations(v) for v in node]
    return node


def _parse(connection: Any, sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of ``sql`` (``json_serialize_sql``), or a QueryError with the parser's message."""
    tree = json.loads(connection.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchall()[0][0])
    if tree.get("error"):
        raise QueryError(str(tree.get("error_message") or "not one SELECT statement"))
    return dict(tree)


def _scalar_functions(connection: Any) -> set[str]:
    """Names of the functions a row predicate may call: scalar functions and the macros that
    expand into scalar expressions (not into a query), not table, aggregate or window functions."""
    rows = connection.sql(
        "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'scalar' "
        "OR (function_type = 'macro' AND macro_definition NOT ILIKE '%select%')"
    ).fetchall()
    return {name.lower() for (name,) in rows}


def _check_tree(node: Any, columns: set[str], functions: set[str]) -> None:
    """Refuse any node of a predicate's parse tree that reads more than the unit's own columns."""
    if isinstance(node, list):
        for child in node:
            _check_tree(child, columns, functions)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("class")
    if kind in _REFUSED_CLASSES or "subquery" in node or "from_table" in node:
        raise QueryError(f"{_REFUSED_CLASSES.get(str(kind), 'a query')} is not allowed: only the unit's own columns")
    if kind == "COLUMN_REF":
        names = [str(n) for n in node.get("column_names", [])]
        name = names[-1].lower() if names else ""
        # ``shot_index`` or ``units.shot_index``; nothing longer (no other table, no struct field).
        if not (len(names) == 1 or (len(names) == 2 and names[0].lower() == UNITS_VIEW)) or name not in columns:
            raise QueryError(f"no column {'.'.join(names)!r}")
    if kind == "FUNCTION":
        name = str(node.get("function_name", ""))
        if node.get("schema") or node.get("catalog") or name.lower() not in functions:
            raise QueryError(f"function {name!r} is not allowed: only scalar functions of the unit's columns")
    for value in node.values():
        _check_tree(value, columns, functions)


def predicate_query(connection: Any, where: str, columns: list[str]) -> str:
    """The query selecting the units for which ``where`` holds, once ``where`` is known to be
    one boolean expression over ``columns`` and nothing else.

    ``where`` is parsed, not trusted. DuckDB's tokenizer reads it alone: its parentheses must
    balance (text that closes the wrapping parenthesis, to add a UNION, an ORDER BY or a second
    statement, is refused), with no ``;`` and no comment (which could hide the rest of the
    wrapping query). DuckDB's parser then reads ``SELECT * FROM units WHERE (<where>)``: the
    tree must be that of the same query with a plain filter, and the filter must hold no
    subquery, no column but the unit's and no function but scalar ones. The query returned
    is the text so checked.
    """
    import duckdb

    bad = sorted({c for c in where if (ord(c) < 32 or ord(c) == 127) and c not in _PREDICATE_WHITESPACE})
    if bad:
        raise QueryError(f"control character {bad[0]!r} in the predicate")
    tokens = duckdb.tokenize(where)
    ends = [start for start, _ in tokens[1:]] + [len(where)]
    depth = 0
    for (start, kind), end in zip(tokens, ends):
        if kind == duckdb.token_type.comment:
            raise QueryError("comments are not allowed in the predicate")
        if kind != duckdb.token_type.operator:
            continue
        for char in where[start:end]:
            if char == ";":
                raise QueryError("one expression only: ';' is not allowed in the predicate")
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth < 0:
                raise QueryError("unbalanced ')': the predicate must not close the WHERE clause")
    sql = f"SELECT * FROM {UNITS_VIEW} WHERE ({where})"
    tree = _parse(connection, sql)
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise QueryError("one expression only")
    if statements[0].get("named_param_map"):
        raise QueryError("parameters ($1, ?) are not allowed in the predicate")
    node = dict(statements[0]["node"])
    reference = dict(_parse(connection, f"SELECT * FROM {UNITS_VIEW} WHERE (true)")["statements"][0]["node"])
    where_clause = node.pop("where_clause", None)
    reference.pop("where_clause", None)
    if where_clause is None or _without_locations(node) != _without_locations(reference):
        raise QueryError("one boolean expression only: it must not close the WHERE clause or add to the query")
    _check_tree(where_clause, {c.lower() for c in columns}, _scalar_functions(connection))
    return sql


def filter_units(units: pa.Table, where: str | None, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> pa.Table:
    """The rows of ``units`` for which the SQL predicate ``where`` holds: one boolean expression
    over the units' columns (:func:`predicate_query`), evaluated by DuckDB confined as ``vindex
    query`` is (the predicate sees this table and nothing else), within ``timeout_s`` seconds."""
    import duckdb

    if not where or not where.strip():
        return units
    with confined_connection() as connection:
        try:
            sql = predicate_query(connection, where, units.column_names)
            connection.register(UNITS_VIEW, units)
            table: pa.Table = within(
                connection, timeout_s, lambda: connection.sql(sql).to_arrow_table(), "the --where predicate"
            )
            return table
        except (duckdb.Error, QueryError) as exc:
            raise QueryError(
                f"--where {where!r}: {str(exc).splitlines()[0]} (columns: {', '.join(units.column_names)})"
            ) from exc


def select_clips(index: Snapshot, selection: Selection) -> list[ClipSpan]:
    """The clips ``selection`` asks for in ``index``."""
    units = unit_table(index, selection.by)
    if selection.unique:
        from pipeline.index.dedup import unique_shots

        units = unique_shots(index, units)
    return plan_clips(filter_units(units, selection.where), selection)


__all__ = [
    "UNIT_TABLES",
    "ClipSpan",
    "Selection",
    "filter_units",
    "plan_clips",
    "predicate_query",
    "select_clips",
    "split_span",
    "trim_span",
    "unit_table",
]
