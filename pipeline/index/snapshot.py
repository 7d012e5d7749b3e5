"""A snapshot of the index: its tables read at their latest versions, or at the versions a
finished run left them in (time travel), each child table showing only the rows its videos'
markers name. Read-only: writing is :mod:`pipeline.index.store`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.errors import IndexError_
from pipeline.index.schemas import CHILD_TABLES, EMBEDDING_FIXED, SCHEMAS, SIDE_TABLES, table_uri


@dataclass
class Snapshot:
    """An index location (an fsspec-style URL understood by deltalake), read."""

    uri: str
    storage_options: dict[str, str] | None = None
    #: Table versions to read instead of the latest (see :meth:`pinned_at_run`); a table
    #: mapped to ``None`` did not exist yet and reads as empty.
    versions: Mapping[str, int | None] | None = None

    def _delta(self, name: str) -> Any:
        from deltalake import DeltaTable

        return DeltaTable(table_uri(self.uri, name), storage_options=self.storage_options)

    def exists(self, name: str = "videos") -> bool:
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(table_uri(self.uri, name), storage_options=self.storage_options))

    def dataset(self, name: str, version: int | None = None) -> pads.Dataset:
        """A pyarrow dataset over the table's current (or a given, or a pinned) version.

        A child table (shots, scenes, keyframes) shows only the rows of the run that each
        video's ``videos`` row names (read at the same pin), so a reader never sees rows a
        run left behind uncommitted, whatever happens between commits.
        """
        rows, markers = self.stored(name, version)
        if markers is None:
            return rows
        return rows.filter(_row_key().isin(_joined_keys(markers.to_table(columns=["video_id", "run_id"]))))

    def stored(self, name: str, version: int | None = None) -> tuple[pads.Dataset, pads.Dataset | None]:
        """A table's rows as stored, current or not, at the current (or a given, or a pinned)
        version; for a child table also the ``videos`` markers (at the same pin) whose
        ``(video_id, run_id)`` pairs select its current rows (:meth:`dataset` applies them;
        a query joins on them instead)."""
        # The side tables (clips, duplicates) are read as the others are; they are only kept out
        # of the run protocol.
        schema = SIDE_TABLES.get(name) or SCHEMAS.get(name)
        if schema is None:
            raise IndexError_(f"no table {name!r}; tables are {', '.join((*SCHEMAS, *SIDE_TABLES))}")
        pins = self.versions if version is None else None
        if pins is not None:
            version = pins.get(name)
            if version is None:  # the table did not exist at the pinned moment
                empty = pads.dataset(schema.empty_table())
                return empty, (pads.dataset(SCHEMAS["videos"].empty_table()) if name in CHILD_TABLES else None)
        if not self.exists(name):
            raise IndexError_(f"{self.uri} has no {name!r} table: is it a vindex index? (run `vindex run` first)")
        # Markers first (the same pin, or the latest version): child rows are committed before
        # the marker that names them, so the child table read next holds them all.
        markers = self.stored("videos")[0] if name in CHILD_TABLES else None
        table = self._delta(name)
        if version is not None:
            table.load_as_version(version)
        return delta_dataset(table, self.storage_options), markers

    def pinned_at_run(self, run_id: str) -> dict[str, int | None]:
        """Each table's version at the moment run ``run_id`` recorded its end.

        That moment is the runs-table commit holding the run's final row; every table is
        read at its last commit made no later (Delta commit timestamps). Another run writing
        at the same time may have committed some of its videos by then: they are included,
        exactly as a reader at that moment saw them. Versions removed by ``vindex compact``
        (vacuum) can no longer be read.
        """
        def run_row(version: int | None = None) -> dict[str, Any] | None:
            runs = self._delta("runs")
            if version is not None:
                runs.load_as_version(version)
            rows = delta_dataset(runs, self.storage_options).to_table(
                columns=["status", "finished_at"], filter=pc.field("run_id") == run_id
            ).to_pylist()
            return rows[0] if rows else None

        row = run_row()
        if row is None:
            raise IndexError_(f"no run {run_id!r} in {self.uri}; `vindex status` lists the runs")
        if row["status"] == "running" or row["finished_at"] is None:
            raise IndexError_(f"run {run_id!r} never finished (still running, or stopped): pick a finished run")
        finished_ms = int(row["finished_at"].timestamp() * 1000)
        cutoff = None
        for commit in sorted(self._delta("runs").history(), key=lambda c: c["version"]):
            if commit["timestamp"] < finished_ms:
                continue
            try:
                then = run_row(commit["version"])
            except FileNotFoundError as exc:
                raise vacuumed(run_id, exc) from exc
            if then is not None and then["status"] != "running":
                cutoff = commit["timestamp"]
                break
        if cutoff is None:
            raise IndexError_(f"the runs table has no commit recording the end of run {run_id!r}")
        versions: dict[str, int | None] = {}
        for name in SCHEMAS:
            earlier = [c["version"] for c in self._delta(name).history() if c["timestamp"] <= cutoff]
            versions[name] = max(earlier) if earlier else None
        return versions

    def read(self, name: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """A whole table as Arrow, embeddings as fixed-size lists."""
        table = self.dataset(name).to_table(columns=columns, filter=filter)
        if "embedding" in table.column_names:
            i = table.column_names.index("embedding")
            table = table.set_column(i, "embedding", table.column("embedding").cast(EMBEDDING_FIXED))
        return table


#: The columns whose file statistics a table's dataset carries, for pyarrow to skip the files a
#: filter on them cannot match: ``run_id`` (time-ordered, so a run's rows sit in few files) and
#: ``video_id`` (ordered by ``vindex compact``).
PRUNING_COLUMNS = ("video_id", "run_id")


def delta_dataset(table: Any, storage_options: dict[str, str] | None = None) -> pads.Dataset:
    """A pyarrow dataset over the files of ``table`` (a ``DeltaTable`` at the version to read).

    deltalake's own ``to_pyarrow_dataset`` turns the statistics of every column of every file
    into that file's expression: 0.3-0.8 s for the ~400 files of a 100k-video index's ``shots``,
    most of a one-video query. Here only :data:`PRUNING_COLUMNS` are (1 ms). Tables with
    reader features this cannot honour (deletion vectors, column mapping: vindex writes
    neither) and files outside the table's folder are left to deltalake.
    """
    import pyarrow.fs as pa_fs
    from deltalake.fs import DeltaStorageHandler

    protocol = table.protocol()
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    if protocol.min_reader_version >= 3 or any("://" in path for path in paths):
        return table.to_pyarrow_dataset()
    sizes = dict(zip(paths, actions.column("size_bytes").to_pylist()))
    filesystem = pa_fs.PyFileSystem(DeltaStorageHandler(table.table_uri, storage_options, sizes))
    file_format = pads.ParquetFileFormat(default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=True))
    expressions = [pc.scalar(True)] * len(paths)
    for column in PRUNING_COLUMNS:
        low, high, nulls = (f"min.{column}", f"max.{column}", f"null_count.{column}")
        if low not in actions.column_names or high not in actions.column_names:
            continue
        null_counts = actions.column(nulls).to_pylist() if nulls in actions.column_names else [None] * len(paths)
        for i, (lo, hi, null_count) in enumerate(zip(actions.column(low).to_pylist(), actions.column(high).to_pylist(), null_counts)):
            if lo is None or hi is None or null_count is None:
                continue  # no statistics: the file is always read
            within = (pc.field(column) >= lo) & (pc.field(column) <= hi)
            expressions[i] = expressions[i] & (within | pc.field(column).is_null() if null_count else within)
    fragments = [
        file_format.make_fragment(path, filesystem=filesystem, partition_expression=expression)
        for path, expression in zip(paths, expressions)
    ]
    schema = pa.schema(table.schema().to_arrow())
    return pads.FileSystemDataset(fragments, schema, file_format, filesystem)


def vacuumed(run_id: str, exc: FileNotFoundError) -> IndexError_:
    """The error for reading the index as of a run whose files compaction has vacuumed."""
    return IndexError_(
        f"the index as of run {run_id!r} can no longer be read: compaction has vacuumed its files ({exc}); "
        "runs newer than the retention of the last `vindex compact` can still be read"
    )


#: Joins video_id and run_id into one key (a character neither holds).
_KEY_SEP = "\x1f"


def _row_key() -> pc.Expression:
    """``video_id + SEP + run_id`` as a dataset expression, evaluated while scanning."""
    return pc.Expression._call("binary_join_element_wise", [pc.field("video_id"), pc.field("run_id"), pc.scalar(_KEY_SEP)])


def _joined_keys(table: pa.Table) -> pa.Array:
    """The :func:`_row_key` of each (video_id, run_id) row of ``table``, as a string array."""
    if table.num_rows == 0:
        return pa.array([], pa.string())
    table = table.combine_chunks()
    return pc.binary_join_element_wise(table["video_id"].chunk(0), table["run_id"].chunk(0), _KEY_SEP)
