"""A plain-Parquet snapshot of an index, for readers that do not speak Delta Lake.

An index's folders hold Parquet files, but read as plain Parquet they show more than the
index: the files of rows that later commits removed (a re-indexed video's old rows, a
killed run's rows) stay on storage until ``vindex compact`` vacuums them, and only the
Delta log says which files are live. Even with the log, a Delta reader sees for a moment,
between a batch's commits, a re-indexed video's old and new rows side by side (see
:mod:`pipeline.index.store`). :func:`export_index` writes what vindex's own readers see:
exactly the live rows of one moment, one folder of Parquet per table::

    DEST/videos/part-0.parquet
    DEST/shots/part-0.parquet
    ...
    DEST/_VINDEX_EXPORT_FOLDER.json   (written first: the folder is a vindex export)
    DEST/_VINDEX_EXPORT.json          (written last: the versions read and the row counts)

Tables are read and written one at a time, record batch by record batch, so memory holds
one batch, not the index. On a local destination the data is written under a temporary
folder and renamed into place; object stores have no rename (a move is a copy), so there
the files are written in place. Either way the marker file is written last, and a reader
that finds it finds a complete export.

An export writes only into an absent or empty folder, or over an earlier export, which the
folder marker identifies (an unfinished one too). Replacing an earlier export deletes only
the files an export writes (the markers and ``TABLE/part-N.parquet``), never a file it did
not write: a folder without a marker is refused, and so is an earlier export whose table
folders hold anything else; other files beside the tables are left where they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import posixpath
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ExportError
from pipeline.index.schemas import CLIPS_TABLE, EMBEDDING_FIXED, SCHEMAS, SIDE_TABLES, table_uri
from pipeline.index.snapshot import Snapshot, delta_dataset
from pipeline.sources.reading import is_local

log = logging.getLogger(__name__)

#: Name of the file that marks a complete export; written after every table.
MARKER = "_VINDEX_EXPORT.json"
#: Format tag in the marker, raised when the export's layout changes.
EXPORT_FORMAT = "vindex-export/1"
#: Name of the file that marks a folder as a vindex export; written before any table, so that
#: an unfinished export is recognised as one (and only a folder holding it is ever cleared).
FOLDER_MARKER = "_VINDEX_EXPORT_FOLDER.json"
#: Format tag in the folder marker.
FOLDER_FORMAT = "vindex-export-folder/1"
#: The only files an export writes inside a table's folder.
TABLE_FILE = re.compile(r"part-[0-9]+\.parquet")
#: Prefix of the temporary folder a local export is written into before its rename.
TEMP_PREFIX = "_vindex_export_tmp-"
#: Rows per record batch read from the index and per Parquet row group written. Measured on
#: the real-footage set: a shots row is 5.2 KB (its 1,280-float embedding), a keyframes row
#: 10.5 KB (the embedding and a 5.2 KB JPEG thumbnail), so a batch is about 43 MB of shots or
#: 86 MB of keyframes: all the export holds in memory, and row groups large enough for fast scans.
BATCH_ROWS = 8 * 1024


@dataclass(frozen=True)
class TableExport:
    """One exported table: its rows and the files (relative to the destination) holding them."""

    table: str
    rows: int
    files: tuple[str, ...]


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_index` wrote."""

    dest: str
    as_of_run: str | None
    #: The Delta version of each table that was read (``None``: the table did not exist yet).
    versions: dict[str, int | None]
    tables: tuple[TableExport, ...]
    #: Files of an earlier export that were deleted to make room (relative to the destination).
    removed: tuple[str, ...] = ()
    #: Entries beside an earlier export that are not the export's own, left in place.
    left: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def export_index(
    index: Snapshot,
    dest: str,
    *,
    as_of_run: str | None = None,
    overwrite: bool = False,
    fs_options: dict[str, Any] | None = None,
) -> ExportSummary:
    """Write the index's live rows (now, or as run ``as_of_run`` left them) to ``dest`` as
    plain Parquet, one folder per table, and the marker file last.

    ``dest`` is a local path or an fsspec URL (``s3://...``; ``fs_options`` for its
    filesystem). A non-empty ``dest`` that is not an earlier export is refused, with or
    without ``overwrite``; an earlier export is replaced only with ``overwrite``, and only
    the files it wrote are deleted (see the module's docstring).
    """
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(dest, **(fs_options or {}))
    root = root.rstrip("/")
    # Pinned before anything is cleared: an index that cannot be read costs no earlier export.
    versions = _pin(index, as_of_run)
    pinned = dataclasses.replace(index, versions=versions)
    names = [n for n in (*SCHEMAS, *SIDE_TABLES) if n in versions]
    earlier = _make_room(fs, root, dest, overwrite)
    fs.makedirs(root, exist_ok=True)
    with fs.open(posixpath.join(root, FOLDER_MARKER), "w") as folder_marker:
        folder_marker.write(json.dumps(_folder_marker(names), indent=2, sort_keys=True))

    local = is_local(fs)
    staging = posixpath.join(root, TEMP_PREFIX + uuid.uuid4().hex[:12]) if local else root
    written = []
    for name in names:
        written.append(_export_table(pinned, name, fs, staging))
        log.info("exported %s: %d rows", name, written[-1].rows)
    if local:
        for table in written:
            fs.mv(posixpath.join(staging, table.table), posixpath.join(root, table.table), recursive=True)
        fs.rm(staging, recursive=True)
    summary = ExportSummary(dest, as_of_run, versions, tuple(written), earlier.removed, earlier.left)
    with fs.open(posixpath.join(root, MARKER), "w") as marker:
        marker.write(json.dumps(_marker(index, summary), indent=2, sort_keys=True))
    return summary


def read_marker(dest: str, fs_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The marker of the export at ``dest`` (versions, run, row counts), or None if there is none."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(dest, **(fs_options or {}))
    path = posixpath.join(root.rstrip("/"), MARKER)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return dict(json.load(f))


def _pin(index: Snapshot, as_of_run: str | None) -> dict[str, int | None]:
    """The version of each table to read, all taken at one moment.

    Now: ``videos`` (the markers) first, then the child tables, in the order the index's own
    readers use (child rows are committed before the marker naming them). As of a run: the
    versions of that run's end. The side tables (clips, duplicates), outside the run protocol,
    are read at their latest versions and only for a current export.
    """
    from deltalake import DeltaTable

    if as_of_run is not None:
        return dict(index.pinned_at_run(as_of_run))
    versions: dict[str, int | None] = {}
    for name in ("videos", *[n for n in SCHEMAS if n != "videos"], *SIDE_TABLES):
        uri = table_uri(index.uri, name)
        if DeltaTable.is_deltatable(uri, storage_options=index.storage_options):
            versions[name] = DeltaTable(uri, storage_options=index.storage_options).version()
        elif name not in SIDE_TABLES:
            raise ExportError(f"{index.uri} has no {name!r} table: is it a vindex index? (run `vindex run` first)")
    return versions


def _batches(index: Snapshot, name: str) -> Iterator[pa.RecordBatch]:
    """The table's live rows at its pinned version, typed as the index's readers type them."""
    if name in SIDE_TABLES:
        from deltalake import DeltaTable

        table = DeltaTable(table_uri(index.uri, name), storage_options=index.storage_options)
        version = (index.versions or {}).get(name)
        if version is not None:
            table.load_as_version(version)
        dataset = delta_dataset(table, index.storage_options)
        schema = dataset.schema
    else:
        dataset = index.dataset(name)
        schema = _reader_schema(SCHEMAS[name])
    for batch in dataset.to_batches(batch_size=BATCH_ROWS):
        yield batch.select(schema.names).cast(schema) if name not in SIDE_TABLES else batch


def _reader_schema(schema: pa.Schema) -> pa.Schema:
    """A table's schema with embeddings as fixed-size lists, as ``IndexReader.table`` returns them."""
    if "embedding" not in schema.names:
        return schema
    return schema.set(schema.get_field_index("embedding"), pa.field("embedding", EMBEDDING_FIXED))


def _export_table(index: Snapshot, name: str, fs: Any, root: str) -> TableExport:
    """Stream one table into ``root/name/part-0.parquet``; an empty table still gets its file."""
    relative = posixpath.join(name, "part-0.parquet")
    path = posixpath.join(root, relative)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    rows = 0
    writer = None
    with fs.open(path, "wb") as out:
        try:
            for batch in _batches(index, name):
                if writer is None:
                    writer = pq.ParquetWriter(out, batch.schema)
                if batch.num_rows:
                    writer.write_batch(batch, row_group_size=BATCH_ROWS)
                    rows += batch.num_rows
            if writer is None:  # no batch at all: an empty file typed by the schema
                schema = _reader_schema(SCHEMAS[name]) if name in SCHEMAS else SIDE_TABLES[name]
                writer = pq.ParquetWriter(out, schema)
        finally:
            if writer is not None:
                writer.close()
    return TableExport(name, rows, (relative,))


def _table_names() -> set[str]:
    return {*SCHEMAS, *SIDE_TABLES}


@dataclass(frozen=True)
class _Room:
    """What :func:`_make_room` did: the earlier export's files it deleted, the entries it left."""

    removed: tuple[str, ...] = ()
    left: tuple[str, ...] = ()


def _entries(fs: Any, path: str) -> dict[str, dict[str, Any]]:
    """The entries of a folder by name, with fsspec's details (``type``, ``islink``)."""
    listed = fs.ls(path, detail=True)
    entries = {}
    for info in listed:
        name = str(info["name"]).rstrip("/")
        if name != path.rstrip("/"):  # object stores may list a folder's own placeholder
            entries[posixpath.basename(name)] = info
    return entries


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    """A small JSON object file, or None where it is absent, unreadable or not an object."""
    try:
        with fs.open(path, "r") as f:
            content = json.load(f)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def _is_export(fs: Any, root: str) -> bool:
    """Whether ``root`` holds an export's marker: the folder marker, or the completion marker
    (which exports made before the folder marker existed hold alone)."""
    folder = _read_json(fs, posixpath.join(root, FOLDER_MARKER))
    complete = _read_json(fs, posixpath.join(root, MARKER))
    return (folder is not None and folder.get("format") == FOLDER_FORMAT) or (
        complete is not None and complete.get("format") == EXPORT_FORMAT
    )


def _is_plain(info: dict[str, Any], kind: str) -> bool:
    """A real file or folder (``kind``), not a link to somewhere else."""
    return info.get("type") == kind and not info.get("islink", False)


def _table_files(fs: Any, folder: str, relative: str, foreign: list[str]) -> list[str]:
    """The Parquet files an export wrote in a table's folder (relative paths); anything else
    in it goes to ``foreign``."""
    own = []
    for name, info in sorted(_entries(fs, folder).items()):
        path = posixpath.join(relative, name)
        if _is_plain(info, "file") and TABLE_FILE.fullmatch(name):
            own.append(path)
        else:
            foreign.append(path + ("/" if info.get("type") == "directory" else ""))
    return own


def _make_room(fs: Any, root: str, dest: str, overwrite: bool) -> _Room:
    """Refuse a non-empty destination that is not an earlier export; with ``overwrite``, delete
    an earlier export's own files (its completion marker first, so a half-cleared export never
    looks complete; its folder marker stays, so a half-cleared one is still recognised)."""
    if not fs.exists(root):
        return _Room()
    if not fs.isdir(root):
        raise ExportError(f"{dest} is a file, not a folder: choose an empty or new folder")
    entries = _entries(fs, root)
    if not entries:
        return _Room()
    tables = _table_names()
    # An index's own folders have the same names as an export's: never clear a Delta table.
    if any(fs.exists(posixpath.join(root, e, "_delta_log")) for e in entries if e in tables):
        raise ExportError(f"{dest} is a vindex index (its tables have Delta logs), not an export: choose an empty or new folder")
    if not _is_export(fs, root):
        shown = sorted(e + ("/" if info.get("type") == "directory" else "") for e, info in entries.items())
        raise ExportError(
            f"{dest} is not empty and is not a vindex export (it holds {', '.join(shown[:5])}"
            f"{', ...' if len(shown) > 5 else ''}; no {FOLDER_MARKER}): nothing was changed; "
            "choose an empty or new folder"
        )

    files: list[str] = []  # relative paths, deleted in this order
    folders: list[str] = []  # relative paths, removed (once empty) in this order
    foreign: list[str] = []
    left: list[str] = []
    for name, info in sorted(entries.items()):
        path = posixpath.join(root, name)
        if name == MARKER:
            if not _is_plain(info, "file"):
                foreign.append(name)
        elif name == FOLDER_MARKER:
            if not _is_plain(info, "file"):
                foreign.append(name)
        elif name in tables:
            if not _is_plain(info, "directory"):
                foreign.append(name)
                continue
            files += _table_files(fs, path, name, foreign)
            folders.append(name)
        elif name.startswith(TEMP_PREFIX) and _is_plain(info, "directory"):
            # An interrupted local export's staging folder: table folders and nothing else.
            for table, table_info in sorted(_entries(fs, path).items()):
                relative = posixpath.join(name, table)
                if table in tables and _is_plain(table_info, "directory"):
                    files += _table_files(fs, posixpath.join(path, table), relative, foreign)
                    folders.append(relative)
                else:
                    foreign.append(relative + ("/" if table_info.get("type") == "directory" else ""))
            folders.append(name)
        else:
            left.append(name + ("/" if info.get("type") == "directory" else ""))
    if foreign:
        raise ExportError(
            f"{dest} is an earlier vindex export, but it holds files an export does not write "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}) where the export's own go: "
            "nothing was deleted; move them out, or choose an empty or new folder"
        )
    if not overwrite:
        kind = "an earlier export" if MARKER in entries else "an unfinished earlier export"
        raise ExportError(f"{dest} holds {kind}: pass --overwrite to replace it")

    if MARKER in entries:
        files.insert(0, MARKER)
    for relative in files:
        fs.rm_file(posixpath.join(root, relative))
    for relative in folders:
        _remove_empty_folder(fs, posixpath.join(root, relative))
    if files:
        log.info("replaced the earlier export at %s: deleted %s", dest, ", ".join(files))
    if left:
        log.info("left in place beside the export at %s: %s", dest, ", ".join(left))
    return _Room(tuple(files), tuple(left))


def _remove_empty_folder(fs: Any, path: str) -> None:
    """Remove a folder emptied of the export's files. ``rmdir`` refuses a folder that is not
    empty, so a file that appeared meanwhile is never deleted; an object store has no folders
    (a prefix goes with its last object), so there is nothing to remove."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local", "memory"):
        try:
            fs.rmdir(path)
        except FileNotFoundError:  # a memory folder made only by its files goes with the last
            pass
    else:
        fs.invalidate_cache(path)


def _folder_marker(tables: list[str]) -> dict[str, Any]:
    """The folder marker's content: what the folder is, and which tables the export writes."""
    return {
        "format": FOLDER_FORMAT,
        "about": "a vindex export (vindex export --overwrite replaces the tables it wrote here)",
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "tables": tables,
    }


def _marker(index: Snapshot, summary: ExportSummary) -> dict[str, Any]:
    """The marker's content: what was read and what was written (never storage options)."""
    return {
        "format": EXPORT_FORMAT,
        "index": index.uri,
        "as_of_run": summary.as_of_run,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "versions": summary.versions,
        "tables": {t.table: {"rows": t.rows, "files": list(t.files)} for t in summary.tables},
    }


__all__ = ["CLIPS_TABLE", "FOLDER_MARKER", "MARKER", "ExportError", "ExportSummary", "TableExport", "export_index", "read_marker"]
