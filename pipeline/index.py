"""The index: five Delta Lake tables under one location, their schemas, writes and reads.

Schemas are defined once here; every stage builds rows from them and the Parquet
written is typed by them. A commit replaces all rows of the committed videos in one
Delta transaction per table (``overwrite`` with a ``video_id IN (...)`` predicate),
so re-indexing never duplicates rows. The ``videos`` table is written last: a video's
status row appears only once its shots, scenes and keyframes are committed.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.errors import IndexError_
from pipeline.models.efficientnet_lite import EMBEDDING_DIM

log = logging.getLogger(__name__)

TIMESTAMP = pa.timestamp("us", tz="UTC")
#: Attempts at a commit that conflicts with another run's, with exponential backoff.
COMMIT_ATTEMPTS = 8
COMMIT_BACKOFF_S = 0.2

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
        ("config_digest", pa.string()),
        ("run_id", pa.string()),
        ("indexed_at", TIMESTAMP),
    ]
)

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

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", TIMESTAMP),
        ("finished_at", TIMESTAMP),
        ("source", pa.string()),
        ("counts", COUNTS),
        ("config", pa.string()),  # JSON
        ("versions", pa.string()),  # JSON: vindex, weights hashes, config digest
        ("status", pa.string()),  # running | ok | partial | failed
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "shots": SHOTS,
    "scenes": SCENES,
    "keyframes": KEYFRAMES,
    "runs": RUNS,
}
#: Tables keyed by video, committed child tables first and ``videos`` last.
VIDEO_TABLES = ("shots", "scenes", "keyframes", "videos")


def table_uri(index: str, name: str) -> str:
    return index.rstrip("/") + "/" + name


def to_table(name: str, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) -> an Arrow table typed by the named schema."""
    return pa.Table.from_pylist(list(rows), schema=SCHEMAS[name])


@dataclass
class Index:
    """An index location (an fsspec-style URL understood by deltalake)."""

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

    def ensure(self) -> None:
        """Create missing tables (empty, with their schemas)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        for name, schema in SCHEMAS.items():
            if not self.exists(name):
                try:
                    DeltaTable.create(
                        table_uri(self.uri, name), schema=schema, mode="ignore", storage_options=self.storage_options
                    )
                except (OSError, DeltaError) as exc:
                    raise IndexError_(f"cannot create table {name!r} in index {self.uri}: {exc}") from exc

    def _replace_where(self, name: str, table: pa.Table, predicate: str) -> None:
        """One Delta transaction: delete rows matching ``predicate``, add ``table``.

        Another run committing to the same table at the same moment makes the transaction
        fail its conflict check; it is then retried against the new table version.
        """
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        for attempt in range(COMMIT_ATTEMPTS):
            try:
                write_deltalake(
                    table_uri(self.uri, name),
                    table,
                    mode="overwrite",
                    predicate=predicate,
                    storage_options=self.storage_options,
                )
                return
            except CommitFailedError as exc:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise IndexError_(
                        f"could not commit to {name!r} after {COMMIT_ATTEMPTS} attempts: other runs keep "
                        f"writing to {self.uri} ({exc}); run again when they finish"
                    ) from exc
                delay = COMMIT_BACKOFF_S * 2**attempt * (1 + random.random())
                log.info("commit to %s conflicted with another writer; retrying in %.1f s", name, delay)
                time.sleep(delay)

    def commit_videos(self, tables: Mapping[str, pa.Table]) -> None:
        """Replace every row of the videos in ``tables['videos']`` in each table, videos last."""
        video_ids = tables["videos"].column("video_id").to_pylist()
        if not video_ids:
            return
        predicate = "video_id IN (" + ", ".join(_sql_string(v) for v in video_ids) + ")"
        for name in VIDEO_TABLES:
            self._replace_where(name, tables.get(name, SCHEMAS[name].empty_table()), predicate)

    def append_run(self, row: Mapping[str, Any]) -> None:
        """Record a run; a later call with the same run_id replaces it."""
        self._replace_where("runs", to_table("runs", [row]), f"run_id = {_sql_string(row['run_id'])}")

    def dataset(self, name: str, version: int | None = None) -> pads.Dataset:
        """A pyarrow dataset over the table's current (or a given, or a pinned) version."""
        if name not in SCHEMAS:
            raise IndexError_(f"no table {name!r}; tables are {', '.join(SCHEMAS)}")
        if version is None and self.versions is not None:
            version = self.versions.get(name)
            if version is None:  # the table did not exist at the pinned moment
                return pads.dataset(SCHEMAS[name].empty_table())
        if not self.exists(name):
            raise IndexError_(f"{self.uri} has no {name!r} table: is it a vindex index? (run `vindex run` first)")
        table = self._delta(name)
        if version is not None:
            table.load_as_version(version)
        return table.to_pyarrow_dataset()

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
            rows = runs.to_pyarrow_dataset().to_table(
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


def vacuumed(run_id: str, exc: FileNotFoundError) -> IndexError_:
    """The error for reading the index as of a run whose files compaction has vacuumed."""
    return IndexError_(
        f"the index as of run {run_id!r} can no longer be read: compaction has vacuumed its files ({exc}); "
        "runs newer than the retention of the last `vindex compact` can still be read"
    )


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
