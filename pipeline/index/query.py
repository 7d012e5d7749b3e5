"""SQL over an index with DuckDB, confined to the index's tables.

Each Delta table is handed to DuckDB as a pyarrow dataset (DuckDB's delta extension
cannot be installed offline), so filters and projections are pushed down to Parquet; a child
table as a view joining its stored rows to the ``videos`` markers (:func:`connect`).
pyarrow reads the tables' files, so DuckDB itself needs no access to storage: its
connection is opened with every outside access off (:data:`CONFINED_SETTINGS`), and a
query sees the index's tables and nothing else. A query runs for at most a time limit
(:data:`DEFAULT_TIMEOUT_S`), and what DuckDB spills to disk goes to a folder of its own in
the system's temporary folder, removed when the connection closes.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pyarrow as pa

from pipeline.errors import QueryError
from pipeline.index.schemas import SCHEMAS, SIDE_TABLES
from pipeline.index.snapshot import Snapshot
from pipeline.redaction import printable

T = TypeVar("T")

FORMATS = ("table", "csv", "json")

#: DuckDB settings of a query's connection: no reading or writing of files or URLs (read_csv,
#: COPY ... TO, ATTACH, EXPORT DATABASE), no extension installed or loaded beyond those built
#: in, no persistent secrets, no scans of Python variables, and the settings locked so that a
#: query cannot turn any of this back on. Arrow objects registered from Python stay readable.
CONFINED_SETTINGS: dict[str, bool] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "allow_persistent_secrets": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


#: How long a query may run unless told otherwise (``vindex query --timeout``): a minute is
#: far above what the index's own queries take (joins over a million shots take seconds),
#: and stops a runaway one (an endless recursive CTE, ``range(1e14)``) that would otherwise
#: run, and spill to disk, until killed.
DEFAULT_TIMEOUT_S = 60.0
#: Prefix of the folder in the system's temporary folder that a connection spills to.
SPILL_PREFIX = "vindex-duckdb-"


@contextmanager
def confined_connection() -> Iterator[Any]:
    """A DuckDB connection with :data:`CONFINED_SETTINGS`, spilling into a folder of its own.

    DuckDB's default spill folder is ``.tmp`` in the working directory; the one given here is
    a fresh folder in the system's temporary folder, removed (with what was spilled) when the
    connection closes. It is set with the other settings, before they are locked.
    """
    import duckdb

    spill = tempfile.mkdtemp(prefix=SPILL_PREFIX)
    try:
        connection = duckdb.connect(config={**CONFINED_SETTINGS, "temp_directory": spill})
        try:
            yield connection
        finally:
            connection.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def within(connection: Any, timeout_s: float | None, action: Callable[[], T], what: str = "the query") -> T:
    """``action()`` (which runs SQL on ``connection``), interrupted after ``timeout_s`` seconds
    (None or 0: no limit) with a :class:`QueryError`."""
    import duckdb

    if not timeout_s:
        return action()
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        connection.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    timer.start()
    try:
        return action()
    except duckdb.InterruptException as exc:
        if not expired.is_set():
            raise
        raise QueryError(
            f"{what} ran longer than {timeout_s:g} s and was stopped (pass --timeout SECONDS for a longer limit, "
            "0 for none)"
        ) from exc
    finally:
        timer.cancel()
        timer.join()


def table_names(index: Snapshot) -> list[str]:
    """The tables a query on ``index`` sees: the run's tables, and each side table (``clips``,
    ``duplicates``) once its command has written to the index (not as of a run: side tables
    are outside the run protocol, so no run's end pins a version of them)."""
    names = list(SCHEMAS)
    if index.versions is None:
        names += [name for name in SIDE_TABLES if index.exists(name)]
    return names


def mentioned(names: list[str], sql: str) -> list[str]:
    """The ``names`` that ``sql`` mentions as a word (any case): the tables it can read."""
    return [name for name in names if re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", sql, re.IGNORECASE)]


@contextmanager
def connect(index: Snapshot, sql: str | None = None) -> Iterator[Any]:
    """A confined DuckDB connection with one view per table of the index (:func:`table_names`);
    given the ``sql`` to run, only of the tables it mentions (opening a table costs: 1.3 s of a
    2.0 s one-video query at 100k videos went to opening all five).

    A child table's view is its stored rows semi-joined to the ``videos`` markers on
    ``(video_id, run_id)``: the rows :meth:`Snapshot.dataset` shows, but DuckDB pushes a
    query's filters (``video_id = ...``) into both sides, where the dataset's own filter would
    build and match a key for every stored row (0.7 s of a one-video query at 100k videos).
    """
    with confined_connection() as connection:
        names = table_names(index)
        for name in names if sql is None else mentioned(names, sql):
            rows, markers = index.stored(name)
            if markers is None:
                connection.register(name, rows)
                continue
            keys = connection.from_arrow(markers).select("video_id, run_id")
            connection.from_arrow(rows).join(keys, ["video_id", "run_id"], how="semi").create_view(name)
        yield connection


def _refused(exc: Exception) -> bool:
    """Whether DuckDB refused ``exc``'s statement because of :data:`CONFINED_SETTINGS`."""
    import duckdb

    return isinstance(exc, duckdb.PermissionException) or "the configuration has been locked" in str(exc)


def run_query(index: Snapshot, sql: str, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> pa.Table:
    """The result of ``sql`` as an Arrow table; stopped with a :class:`QueryError` after
    ``timeout_s`` seconds (None or 0: no limit)."""
    import duckdb

    with connect(index, sql) as connection:

        def execute() -> pa.Table:
            result = connection.sql(sql)
            return result.to_arrow_table() if result is not None else pa.table({})

        try:
            return within(connection, timeout_s, execute)
        except duckdb.Error as exc:
            if _refused(exc):
                raise QueryError(
                    f"refused: queries only see the index's tables ({', '.join(table_names(index))}); reading or "
                    f"writing other files, attaching databases, installing or loading extensions and changing "
                    f"settings are disabled ({str(exc).splitlines()[0]})"
                ) from exc
            raise QueryError(str(exc)) from exc


def _cell(value: Any) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list) and len(value) > 6:
        return f"[{len(value)} values]"
    return "NULL" if value is None else str(value)


def format_result(table: pa.Table, fmt: str = "table", max_width: int = 60) -> str:
    """Render a result for a terminal (aligned columns), or as CSV or JSON lines."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    rows = table.to_pylist()
    if fmt == "json":
        return "\n".join(json.dumps({k: _cell(v) if isinstance(v, bytes) else v for k, v in r.items()}, default=str) for r in rows)
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        for r in rows:
            writer.writerow([_cell(v) if v is not None else "" for v in r.values()])
        return buffer.getvalue().rstrip("\n")
    # A terminal shows values, never runs them: control characters in a name (an escape
    # sequence, a newline forging a line) are escaped here; CSV and JSON keep the raw value.
    names = [printable(c) for c in table.column_names]
    cells = [[printable(_cell(v))[:max_width] for v in r.values()] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(names)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(names, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells)
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
