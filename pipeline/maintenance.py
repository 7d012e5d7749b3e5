"""Keeping an index small: compact its tables' small Parquet files, vacuum old versions.

Every commit of a run adds a few small files per table, so an index kept fresh by nightly
runs gathers thousands of them. Compaction rewrites a table's live rows into few large
files in one Delta commit (readers see the same rows before and after); vacuum then
deletes the data files that no version younger than ``retention_hours`` references,
including the files of commits that never happened (a run killed mid-commit) once they
are older than ``retention_hours``.

Run it while no run writes to the index: a compaction that races a run's commit fails its
conflict check (nothing is lost; run it again), and a vacuum with a short retention could
delete the files of a commit still in flight. Vacuumed versions can no longer be read
(time travel reaches back ``retention_hours`` at most).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError, IndexError_
from pipeline.index import SCHEMAS, Index, table_uri

log = logging.getLogger(__name__)

#: Delta Lake's own default: versions stay readable for a week.
DEFAULT_RETENTION_HOURS = 168


@dataclass(frozen=True)
class TableMaintenance:
    """What compaction and vacuum did to one table."""

    table: str
    #: Data files the current version references, before and after compaction.
    files_before: int
    files_after: int
    #: Data files deleted from storage (counted by listing it: Delta's own vacuum report also
    #: names files that earlier vacuums already deleted).
    files_vacuumed: int


def _data_files(uri: str, fs_options: dict[str, Any]) -> set[str]:
    """The Parquet files under a table's folder, outside its transaction log."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **fs_options)
    return {path for path in fs.find(root) if path.endswith(".parquet") and "/_delta_log/" not in path}


def compact_table(
    index: Index, name: str, retention_hours: int, fs_options: dict[str, Any] | None = None
) -> TableMaintenance:
    """Compact table ``name`` of ``index`` into fewer files, then vacuum what no version needs.

    ``fs_options`` are the fsspec options that list the index's storage.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError

    if not index.exists(name):
        raise IndexError_(f"{index.uri} has no {name!r} table: is it a vindex index? (run `vindex run` first)")
    uri = table_uri(index.uri, name)
    try:
        table = DeltaTable(uri, storage_options=index.storage_options)
        stored = _data_files(uri, fs_options or {})
        before = len(table.file_uris())
        table.optimize.compact()  # moves the table object to the compacted version
        after = len(table.file_uris())
        # The retention is the caller's explicit choice, so Delta's one-week floor is not
        # enforced; full: also files no commit ever referenced (older than the retention).
        table.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False, full=True)
        vacuumed = len(stored - _data_files(uri, fs_options or {}))
    except (DeltaError, OSError) as exc:
        raise IndexError_(f"cannot compact table {name!r} of {index.uri}: {exc}") from exc
    log.info("%s: %d files -> %d, %d deleted", name, before, after, vacuumed)
    return TableMaintenance(name, before, after, vacuumed)


def compact_index(
    index: Index, retention_hours: int = DEFAULT_RETENTION_HOURS, fs_options: dict[str, Any] | None = None
) -> list[TableMaintenance]:
    """Compact and vacuum every table of ``index``."""
    if retention_hours < 0:
        raise ConfigError(f"--retention-hours must be 0 or more, got {retention_hours}")
    return [compact_table(index, name, retention_hours, fs_options) for name in SCHEMAS]


__all__ = ["DEFAULT_RETENTION_HOURS", "TableMaintenance", "compact_index", "compact_table"]
