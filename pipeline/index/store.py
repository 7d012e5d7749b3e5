"""The index: Delta Lake tables under one location, written (schemas in
:mod:`pipeline.index.schemas`; reading, time travel included, in :mod:`pipeline.index.snapshot`).

How a batch of videos is committed (Delta transactions are atomic per table only):

1. the new ``shots``, ``scenes`` and ``keyframes`` rows are appended, each carrying the
   ``run_id`` that wrote them;
2. the ``videos`` rows are replaced (``overwrite`` with a ``video_id IN (...)`` predicate):
   a video's ``videos`` row is its commit marker, naming the run whose rows are current;
3. rows of the same videos written by runs that are over (finished, or whose heartbeat has
   stopped: killed) and that the marker does not name are deleted (:meth:`Index.collect_orphans`).

vindex's readers join every child table to ``videos`` on ``(video_id, run_id)``, so they
see exactly the current rows at every moment. A plain Delta reader sees, between steps 1
and 3, a re-indexed video's old and new rows side by side for a moment; after a killed
run, the rows it appended until the next run's step 3 (each run ends by collecting
the orphans of every run that is over). A run still in flight (its heartbeat fresh) keeps
its rows, so two concurrent runs never delete each other's work.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.errors import IndexError_
from pipeline.index.schemas import (  # noqa: F401 - re-exported: the store's readers import them from here
    TIMESTAMP,
    VIDEOS,
    LISTING_COLUMNS,
    SHOTS,
    SCENES,
    EMBEDDING,
    EMBEDDING_FIXED,
    KEYFRAMES,
    COUNTS,
    RUNS,
    CLIPS_TABLE,
    CLIPS,
    ADDED_COLUMNS,
    SCHEMAS,
    VIDEO_TABLES,
    CHILD_TABLES,
    table_uri,
    to_table,
)
from pipeline.index.snapshot import Snapshot
from pipeline.index.writer import (  # noqa: F401 - the seam's names re-exported: its tests import them from here
    EXIT_AFTER_COMMIT_ENV,
    TEST_EXIT_STATUS,
    TableWriter,
    after_commit,
    sql_in,
    sql_string,
)

log = logging.getLogger(__name__)

#: Run statuses of a run that made every commit it started, per-commit clean-up included.
CLEAN_END = ("ok", "partial")
#: How long a running run stays alive without a heartbeat. A run renews it every fifth of this.
DEFAULT_RUN_LEASE_S = 600.0


@dataclass
class Index(Snapshot):
    """An index location, written: tables created, videos committed, runs recorded, leftovers
    cleared. Reads as a :class:`~pipeline.index.snapshot.Snapshot` at the latest versions."""

    _writers: dict[str, TableWriter] = field(default_factory=dict, init=False, repr=False, compare=False)

    def writer(self, name: str) -> TableWriter:
        """The writer of table ``name`` (:mod:`pipeline.index.writer`), made once.

        Only the committing thread uses the kept-open tables (the heartbeat writes ``runs``,
        which is opened afresh each time); readers load their own, since reading a pinned
        version moves a table object.
        """
        writer = self._writers.get(name)
        if writer is None:
            writer = self._writers[name] = TableWriter(
                self.uri, name, SCHEMAS[name], self.storage_options, keep_open=name != "runs"
            )
        return writer

    def ensure(self) -> None:
        """Create missing tables (empty, with their schemas); add the columns a newer vindex
        defines to tables an older one created (nullable)."""
        from deltalake.exceptions import DeltaError

        for name in SCHEMAS:
            writer = self.writer(name)
            if not writer.create() and name in ADDED_COLUMNS:
                try:
                    writer.add_missing_columns(ADDED_COLUMNS[name])
                except (OSError, DeltaError) as exc:
                    raise IndexError_(f"cannot create table {name!r} in index {self.uri}: {exc}") from exc

    def _replace_where(self, name: str, table: pa.Table, predicate: str) -> None:
        """One Delta transaction: delete rows matching ``predicate``, add ``table``."""
        self.writer(name).replace_where(table, predicate)

    def _delete_where(self, name: str, predicate: str) -> None:
        """Delete rows matching ``predicate``: an overwrite that adds nothing."""
        self.writer(name).delete_where(predicate)

    def commit_videos(self, tables: Mapping[str, pa.Table], lease_s: float = DEFAULT_RUN_LEASE_S) -> None:
        """Commit a batch of videos: child rows appended, then the ``videos`` rows (the marker)
        replaced, then the rows the replaced markers named deleted (where their runs are over).

        What it reads does not grow with the child tables: the replaced markers are read from
        ``videos`` (one small column pair), and the rows they named are found by their
        ``run_id``, which is time-ordered, so file statistics skip every file of other runs.
        New videos replace nothing and delete nothing. (Measured, docs/scale.md: flat from 1k
        to 10k videos; 1.9x at 100k, where Delta's own log state makes each write dearer.)

        The replaced markers are read from the version the marker commit is made on, and a
        marker another run commits for the same videos in between makes this commit conflict
        and read again (:meth:`TableWriter.swap`): no marker is replaced unseen, so a run that
        ended in that instant still has its rows cleared here.
        """
        if not tables["videos"].num_rows:
            return
        self.append_children(tables)
        replaced = self.mark_videos(tables["videos"])
        self._collect_superseded(replaced, lease_s)

    def _collect_superseded(self, replaced: Mapping[str, str], lease_s: float) -> int:
        """Delete the child rows that replaced markers named, of runs that are over.

        A run still in flight keeps its rows (it clears them itself when it ends).
        """
        if not replaced:
            return 0
        over = self.runs_over(lease_s)
        by_run: dict[str, list[str]] = {}
        for video_id, run_id in replaced.items():
            if run_id in over:
                by_run.setdefault(run_id, []).append(video_id)
        if not by_run:
            return 0
        return self._delete_pairs(
            _by_run_filter(by_run), {(v, r) for r, ids in by_run.items() for v in ids}, set()
        )

    def _delete_pairs(self, where: pc.Expression, candidates: set[tuple[str, str]] | None, keep: set[tuple[str, str]]) -> int:
        """Delete the child rows matching ``where`` whose (video, run) pair is among ``candidates``
        (None: any) and not in ``keep``; one transaction per table that has such rows."""
        removed = 0
        for name in CHILD_TABLES:
            found = _pairs(self._raw(name).to_table(columns=["video_id", "run_id"], filter=where))
            orphans = sorted(p for p in found - keep if candidates is None or p in candidates)
            if not orphans:
                continue
            by_run: dict[str, list[str]] = {}
            for video_id, run_id in orphans:
                by_run.setdefault(run_id, []).append(video_id)
            predicate = " OR ".join(
                f"(run_id = {sql_string(run)} AND {sql_in('video_id', ids)})" for run, ids in sorted(by_run.items())
            )
            self._delete_where(name, predicate)
            after_commit("orphans:" + name)
            removed += len(orphans)
            log.info("%s: removed the rows of %d (video, run) pairs that runs now over left behind", name, len(orphans))
        return removed

    def append_children(self, tables: Mapping[str, pa.Table]) -> None:
        """Step 1 of a commit: append the batch's shots, scenes and keyframes (one transaction each)."""
        for name in CHILD_TABLES:
            self.writer(name).append(tables.get(name, SCHEMAS[name].empty_table()))

    def mark_videos(self, videos: pa.Table) -> dict[str, str]:
        """Step 2: replace the batch's ``videos`` rows, each naming the run whose rows are
        current; returns the run each replaced row named (videos that had none left out)."""
        return dict(_pairs(self.writer("videos").swap(videos, "video_id", ["video_id", "run_id"])))

    def append_run(self, row: Mapping[str, Any]) -> None:
        """Record a run; a later call with the same run_id replaces it."""
        self.writer("runs").replace(to_table("runs", [row]), "run_id")

    def runs_over(self, lease_s: float = DEFAULT_RUN_LEASE_S) -> set[str]:
        """Runs that can write nothing more: finished, or running with a heartbeat (or, without
        one, a start) older than ``lease_s`` seconds: killed."""
        now = dt.datetime.now(dt.timezone.utc)
        rows = self.read("runs", columns=["run_id", "status", "started_at", "heartbeat_at"]).to_pylist()
        return {r["run_id"] for r in rows if _is_over(r, now, lease_s)}

    def collect_orphans(self, video_ids: list[str] | None = None, lease_s: float = DEFAULT_RUN_LEASE_S) -> int:
        """Delete child rows that no ``videos`` row names, written by runs that are over; of
        ``video_ids`` only, or of every video. Returns how many (video, run) pairs were removed.

        The rows of a run still in flight are kept (it may be about to commit its marker),
        and so is whatever a marker names; so this is safe beside concurrent runs.

        Of every video (the clean-up each run ends with), only the runs that are over and not
        yet collected are read, by ``run_id`` (file statistics skip the rest), and they are
        then recorded as collected: the cost is that of the runs since the last clean-up, not
        of the index. A run that did not end cleanly (killed, or failed on an error) may also
        have left the rows its markers replaced: the videos it marked are checked whole.
        """
        if video_ids is not None:
            return self._collect_videos(video_ids, lease_s)
        now = dt.datetime.now(dt.timezone.utc)
        runs = self.read("runs").to_pylist()
        todo = [r for r in runs if _is_over(r, now, lease_s) and r.get("collected_at") is None]
        if not todo:
            return 0
        ids = [r["run_id"] for r in todo]
        where = pc.field("run_id").isin(ids)
        marked = self._raw("videos").to_table(columns=["video_id", "run_id"], filter=where)
        removed = self._delete_pairs(where, None, _pairs(marked))
        unclean = {r["run_id"] for r in todo if r["status"] not in CLEAN_END}
        if unclean:
            their_videos = [v for v, r in _pairs(marked) if r in unclean]
            if their_videos:
                removed += self._collect_videos(their_videos, lease_s)
        self._mark_collected(todo, now)
        return removed

    def _collect_videos(self, video_ids: list[str], lease_s: float) -> int:
        """Orphans of ``video_ids``, whatever run wrote them (reads the child tables by video)."""
        where = pc.field("video_id").isin(video_ids)
        current = _pairs(self._raw("videos").to_table(columns=["video_id", "run_id"], filter=where))
        over = self.runs_over(lease_s)
        found: set[tuple[str, str]] = set()
        for name in CHILD_TABLES:
            found |= _pairs(self._raw(name).to_table(columns=["video_id", "run_id"], filter=where))
        candidates = {p for p in found - current if p[1] in over}
        return self._delete_pairs(where, candidates, current) if candidates else 0

    def _mark_collected(self, runs: list[dict[str, Any]], now: dt.datetime) -> None:
        """Record ``runs`` (all over) as collected, in one transaction."""
        rows = [{**r, "collected_at": now} for r in runs]
        self.writer("runs").replace(to_table("runs", rows), "run_id")

    def abandon_stale_runs(self, lease_s: float = DEFAULT_RUN_LEASE_S) -> list[str]:
        """Mark ``abandoned`` the runs still ``running`` whose lease has passed (killed runs)."""
        now = dt.datetime.now(dt.timezone.utc)
        stale = [r for r in self.read("runs").to_pylist() if r["status"] == "running" and _is_over(r, now, lease_s)]
        for row in stale:
            self.append_run({**row, "status": "abandoned"})
        return [r["run_id"] for r in stale]

    def _raw(self, name: str) -> pads.Dataset:
        """Every row of a table at its latest version, current or not (for the writer)."""
        return self.writer(name).dataset()


def _is_over(run: Mapping[str, Any], now: dt.datetime, lease_s: float) -> bool:
    """A ``runs`` row whose run can write nothing more: finished, or silent past its lease."""
    last_sign: dt.datetime = run["heartbeat_at"] or run["started_at"]
    return bool(run["status"] != "running") or (now - last_sign).total_seconds() > lease_s


def _by_run_filter(by_run: Mapping[str, list[str]]) -> pc.Expression:
    """Rows of these (run, videos): run_id first, so file statistics prune by run."""
    terms = [(pc.field("run_id") == run) & pc.field("video_id").isin(ids) for run, ids in sorted(by_run.items())]
    expression = terms[0]
    for term in terms[1:]:
        expression = expression | term
    return expression


def _pairs(table: pa.Table) -> set[tuple[str, str]]:
    return set(zip(table.column("video_id").to_pylist(), table.column("run_id").to_pylist()))


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
