"""SQL over an index with DuckDB, confined to the index's tables.

Each Delta table is handed to DuckDB as a pyarrow dataset (DuckDB's delta extension
cannot be installed offline), so filters and projections are pushed down to Parquet.
pyarrow reads the tables' files, so DuckDB itself needs no access to storage: its
connection is opened with every outside access off (:data:`CONFINED_SETTINGS`), and a
query sees the index's tables and nothing else.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa

from pipeline.errors import QueryError
from pipeline.index.store import CLIPS_TABLE, SCHEMAS, Index

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


def connect(index: Index) -> Any:
    """A confined DuckDB connection with one view per table of the index."""
    import duckdb

    connection = duckdb.connect(config=dict(CONFINED_SETTINGS))
    for name in SCHEMAS:
        connection.register(name, index.dataset(name))
    # The clips table exists once `vindex clips` has written to the index.
    if index.exists(CLIPS_TABLE):
        connection.register(CLIPS_TABLE, index.dataset(CLIPS_TABLE))
    return connection


def _refused(exc: Exception) -> bool:
    """Whether DuckDB refused ``exc``'s statement because of :data:`CONFINED_SETTINGS`."""
    import duckdb

    return isinstance(exc, duckdb.PermissionException) or "the configuration has been locked" in str(exc)


def run_query(index: Index, sql: str) -> pa.Table:
    """The result of ``sql`` as an Arrow table."""
    import duckdb

    connection = connect(index)
    try:
        result = connection.sql(sql)
        return result.to_arrow_table() if result is not None else pa.table({})
    except duckdb.Error as exc:
        if _refused(exc):
            raise QueryError(
                f"refused: queries only see the index's tables ({', '.join(SCHEMAS)}); reading or writing "
                f"other files, attaching databases, installing or loading extensions and changing settings "
                f"are disabled ({str(exc).splitlines()[0]})"
            ) from exc
        raise QueryError(str(exc)) from exc
    finally:
        connection.close()


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
    cells = [[_cell(v)[:max_width] for v in r.values()] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(table.column_names)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(table.column_names, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells)
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)
