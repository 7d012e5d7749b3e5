"""Keeping an index small: compact its tables' small Parquet files, vacuum old versions.

Every commit of a run adds a few small files per table, so an index kept fresh by nightly
runs gathers thousands of them. Compaction rewrites a table's live rows into few large
files in one Delta commit (readers see the same rows before and after). ``vindex compact``
also clusters the rows by ``video_id`` (Delta's Z-order on that one column: a sort), so each
file holds a narrow range of ids and a one-video read opens one file, pruned by the files'
statistics, instead of every file (ids are hashes: files in arrival order each span all of
them). The compaction a run does as it commits (:func:`compact_small_files`) only merges the
files it wrote, which stays cheap, and leaves ordering to ``vindex compact``. Vacuum then
deletes the data files that no version younger than ``retention_hours`` references,
including the files of commits that never happened (a run killed mid-commit) once they
are older than ``retention_hours``.

It is safe while a run writes to the index. A compaction and a run's commit that touch the
same files conflict in Delta's commit check: the one that commits second fails and is
retried on the new version, so no row is lost or duplicated. Vacuum never deletes a file
younger than :data:`MIN_RETENTION_HOURS`: a file a writer has written but not yet committed
is always younger than that. Vacuumed versions can no longer be read (time travel reaches
back ``retention_hours`` at most).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.errors import ConfigError, IndexError_, IndexWriteError

if TYPE_CHECKING:
    from pipeline.index.store import Index
# The store (pyarrow, and pandas through pyarrow.dataset) is imported where it is used: the
# command line reads the retention defaults below to build `vindex --help`, and importing the
# store made that take 1.2 s instead of 0.3 s (measured on 2 shared CPUs).

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Delta Lake's own default: versions stay readable for a week.
DEFAULT_RETENTION_HOURS = 168
#: The shortest retention vacuum accepts. A full vacuum deletes every unreferenced file older
#: than the retention (by its storage timestamp), and a file a run has written but not yet
#: committed is one. A run writes and commits its files in one ``write_deltalake`` call per
#: table and batch (seconds; minutes for a large batch on object storage; a retried commit
#: writes new files), so no in-flight file is an hour old. The floor also keeps the files a
#: compaction has just replaced, which a run committing at that moment may still be scanning
#: (measured with no floor: such a commit failed on a file vacuumed under it), and leaves a
#: margin for clock skew between the storage and this host.
MIN_RETENTION_HOURS = 1


@dataclass(frozen=True)
class TableMaintenance:
    """What compaction and vacuum did to one table."""

    table: str
    #: Data files the current version references, before and after compaction.
    files_before: int
    files_after: int
    #: Data files deleted from storage, relative to the table folder.
    deleted: tuple[str, ...]

    @property
    def files_vacuumed(self) -> int:
        return len(self.deleted)


def _check_retention(retention_hours: int) -> None:
    """Refuse a retention under :data:`MIN_RETENTION_HOURS`: vacuum could delete a run's in-flight files."""
    if retention_hours < MIN_RETENTION_HOURS:
        raise ConfigError(
            f"--retention-hours must be at least {MIN_RETENTION_HOURS}, got {retention_hours}: a shorter "
            "retention could delete the files of a commit that a running `vindex run` has not made yet"
        )


def _vacuum(table: Any, retention_hours: int, fs_options: dict[str, Any]) -> list[str]:
    """Delete the table's data files that no version within ``retention_hours`` references;
    their paths relative to the table folder.

    Delta's full vacuum would delete every unreferenced file under the table folder, a
    user's video as readily as a killed commit's Parquet. Its dry run names the candidates;
    only those a Delta writer named (:func:`~pipeline.index.location.is_table_data_file`)
    are deleted, here.
    """
    import fsspec

    from pipeline.index.location import is_table_data_file

    # Delta's one-week floor gives way to MIN_RETENTION_HOURS, checked by the caller. Full, not
    # lite: lite deletes only files a commit removed, never the debris of killed commits.
    candidates = table.vacuum(
        retention_hours=retention_hours, dry_run=True, enforce_retention_duration=False, full=True
    )
    fs, root = fsspec.core.url_to_fs(table.table_uri, **fs_options)
    deleted = []
    for relative in sorted(candidates):
        if not is_table_data_file(relative):
            log.warning("vacuum left %s/%s alone: not a data file a Delta writer names", root, relative)
            continue
        try:
            fs.rm_file(f"{root.rstrip('/')}/{relative}")
        except FileNotFoundError:  # another vacuum got there first
            continue
        deleted.append(relative)
        log.info("deleted %s/%s (no version within the retention references it)", root, relative)
    return deleted


def _retrying(uri: str, storage_options: dict[str, str] | None, step: Callable[[Any], T]) -> T:
    """``step`` on the table at ``uri``, loaded afresh and retried when a run's commit conflicts.

    Optimize and vacuum each commit to the log; a run that commits first makes that commit
    fail Delta's conflict check, and the step is run again on the new version, with the
    backoff of the index's own commits.
    """
    from deltalake import DeltaTable

    from pipeline.index.writer import COMMIT_ATTEMPTS, retry_on_conflict

    def exhausted(exc: BaseException) -> IndexWriteError:
        return IndexWriteError(
            f"could not compact {uri} after {COMMIT_ATTEMPTS} attempts: runs keep committing to it "
            f"({exc}); run `vindex compact` again later"
        )

    return retry_on_conflict(
        lambda: step(DeltaTable(uri, storage_options=storage_options)), exhausted, f"compaction of {uri}"
    )


#: The column a full compaction orders a table's rows by, where the table has it.
CLUSTER_COLUMN = "video_id"


def _optimize(table: Any, target_bytes: int | None = None, cluster: bool = False) -> tuple[int, int]:
    """Compact ``table``'s small files (up to ``target_bytes``, else Delta's default), or with
    ``cluster`` rewrite all of it ordered by :data:`CLUSTER_COLUMN`; its data file count before
    and after. Either moves the table object to the new version."""
    before = len(table.file_uris())
    if cluster and CLUSTER_COLUMN in table.schema().to_arrow().names:
        table.optimize.z_order([CLUSTER_COLUMN], target_size=target_bytes)
    else:
        table.optimize.compact(target_size=target_bytes)
    return before, len(table.file_uris())


def _small_files(table: Any) -> int:
    """How many of ``table``'s data files are under :data:`AUTO_COMPACT_TARGET_BYTES`."""
    import pyarrow as pa

    sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist()
    return sum(1 for size in sizes if size < AUTO_COMPACT_TARGET_BYTES)


def compact_table(
    index: Index,
    name: str,
    retention_hours: int,
    fs_options: dict[str, Any] | None = None,
    target_bytes: int | None = None,
) -> TableMaintenance:
    """Compact table ``name`` of ``index`` into fewer files of up to ``target_bytes`` (Delta's
    default, 100 MB), its rows ordered by ``video_id``; then vacuum what no version needs.

    ``retention_hours`` must be at least :data:`MIN_RETENTION_HOURS`. ``fs_options`` are the
    fsspec options that list the index's storage.
    """
    from deltalake.exceptions import DeltaError

    from pipeline.index.location import check_table_folder
    from pipeline.index.schemas import table_uri

    _check_retention(retention_hours)
    if not index.exists(name):
        raise IndexError_(f"{index.uri} has no {name!r} table: is it a vindex index? (run `vindex run` first)")
    uri = table_uri(index.uri, name)
    check_table_folder(uri, name, fs_options)
    try:
        before, after = _retrying(uri, index.storage_options, lambda table: _optimize(table, target_bytes, cluster=True))
        deleted = _vacuum(_retrying(uri, index.storage_options, lambda table: table), retention_hours, fs_options or {})
    except (DeltaError, OSError) as exc:
        raise IndexWriteError(f"cannot compact table {name!r} of {index.uri}: {exc}") from exc
    log.info("%s: %d files -> %d, %d deleted", name, before, after, len(deleted))
    return TableMaintenance(name, before, after, tuple(deleted))


#: A table holding more small data files (under :data:`AUTO_COMPACT_TARGET_BYTES`) than this is
#: compacted by the run writing to it (see :func:`compact_small_files`), so no index gathers
#: thousands of files between manual compactions.
AUTO_COMPACT_FILES = 32
#: The size a run's compaction merges small files up to. Delta's compaction rewrites every bin
#: of files under its target that holds two or more, so the last, partly filled bin is written
#: again at each compaction: at the default 100 MB that was up to 100 MB every 16 commits
#: (9.6 s commits at 4,000 videos, benchmarks/scale.py); 16 MB keeps it small, and still
#: leaves about 1,300 files in all for 100k videos' keyframes, shots and scenes (~20 GB).
AUTO_COMPACT_TARGET_BYTES = 16 * 1024 * 1024


def compact_small_files(index: Index, max_files: int | None = None) -> dict[str, tuple[int, int]]:
    """Merge the small data files of every table holding more than ``max_files``; no vacuum.

    What a run does as it commits: each commit adds a file or two per table, and a table's
    reads, and the ``videos`` replace of every commit, open each file. Delta's compaction only
    rewrites files under its target size (100 MB), so the cost is that of the files written
    since the last compaction, not of the table. The replaced files stay until ``vindex
    compact`` vacuums them (older versions stay readable until then). Returns, per table
    compacted, its file count before and after.
    """
    from deltalake.exceptions import DeltaError

    from pipeline.index.schemas import SCHEMAS, table_uri

    limit = AUTO_COMPACT_FILES if max_files is None else max_files
    done: dict[str, tuple[int, int]] = {}
    for name in SCHEMAS:
        uri = table_uri(index.uri, name)
        try:
            if _retrying(uri, index.storage_options, _small_files) <= limit:
                continue
            done[name] = _retrying(
                uri, index.storage_options, lambda table: _optimize(table, AUTO_COMPACT_TARGET_BYTES)
            )
        except (DeltaError, OSError) as exc:
            raise IndexWriteError(f"cannot compact table {name!r} of {index.uri}: {exc}") from exc
        log.info("%s: compacted %d files into %d", name, *done[name])
    return done


def compact_index(
    index: Index,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    fs_options: dict[str, Any] | None = None,
    target_bytes: int | None = None,
) -> list[TableMaintenance]:
    """Compact (ordered by ``video_id``) and vacuum every table of ``index`` (the side tables,
    ``clips`` and ``duplicates``, too, once written); safe while a run writes to it."""
    from pipeline.index.schemas import SCHEMAS, SIDE_TABLES

    _check_retention(retention_hours)
    names = [*SCHEMAS, *[name for name in SIDE_TABLES if index.exists(name)]]
    return [compact_table(index, name, retention_hours, fs_options, target_bytes) for name in names]


__all__ = [
    "AUTO_COMPACT_FILES",
    "CLUSTER_COLUMN",
    "DEFAULT_RETENTION_HOURS",
    "MIN_RETENTION_HOURS",
    "TableMaintenance",
    "compact_index",
    "compact_small_files",
    "compact_table",
]
