"""A run's writes to the index: finished videos committed in batches (on a thread of their
own during the run: group commit), and the run's own row kept alive by a heartbeat."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pipeline.algorithms.stitch import VideoRows
from pipeline.errors import IndexError_
from pipeline.execution import timeline
from pipeline.execution.processes import release_free_heap
from pipeline.execution.records import VIDEO_TABLES, FinishedVideo
from pipeline.index.maintenance import compact_small_files
from pipeline.index.store import DEFAULT_RUN_LEASE_S, Index

log = logging.getLogger(__name__)

#: Every this many commits a run compacts the tables that have gathered too many files.
COMPACT_CHECK_COMMITS = 16
#: While a commit is in flight, finished videos wait for the next one, which takes them all, up
#: to this many batches of ``write.commit_every_videos``: a commit's cost is mostly per commit
#: (10k videos indexed: 0.31 s for 16 videos, 0.30 s for 64, 0.57 s for 256), so batches grow
#: with the rate videos finish at, and so does what one driver can commit.
GROUP_COMMIT_BATCHES = 16


class Committer:
    """Collects finished videos and commits them in batches of at least ``every``.

    By default each batch is committed as it fills, by the caller. Inside :meth:`in_background`
    commits run on a thread of their own while the caller goes on receiving videos; the
    videos that finish during a commit all go into the next one (at most ``most``: beyond
    that :meth:`add` waits for the commit in flight). A crash loses at most the batch in
    flight and the videos waiting for the next, and memory holds at most those.
    """

    def __init__(
        self, index: Index, every: int, lease_s: float = DEFAULT_RUN_LEASE_S, most: int | None = None
    ) -> None:
        self.index = index
        self.every = every
        self.most = max(every, most if most is not None else every * GROUP_COMMIT_BATCHES)
        self.lease_s = lease_s
        self.pending: list[FinishedVideo] = []
        self.committed = 0
        self.commits = 0
        self._changed = threading.Condition()
        self._background: threading.Thread | None = None
        self._closing = False
        self._failure: BaseException | None = None

    def add(self, video: FinishedVideo | VideoRows) -> None:
        """Take a finished video (its rows, as built where it was stitched or on the driver)."""
        finished = video if isinstance(video, FinishedVideo) else FinishedVideo.of(video)
        if self._background is None:
            self.pending.append(finished)
            if len(self.pending) >= self.every:
                self.flush()
            return
        with self._changed:
            while len(self.pending) >= self.most and self._failure is None:
                self._changed.wait()  # the commit in flight holds the caller up: memory stays bounded
            self._raise_failure()
            self.pending.append(finished)
            self._changed.notify_all()

    def flush(self) -> None:
        """Commit what is pending, now, in the caller's thread."""
        if self._background is not None:
            raise RuntimeError("flush() while commits run in the background")
        batch, self.pending = self.pending, []
        if batch:
            self._commit(batch)

    @contextlib.contextmanager
    def in_background(self) -> Iterator[Committer]:
        """Commit on a thread of its own while the caller receives videos (see the class). On the
        way out the commit in flight ends; what is still pending is left for :meth:`flush`. A
        commit that failed is raised here, or by the :meth:`add` after it."""
        self._closing, self._failure = False, None
        self._background = threading.Thread(target=self._commit_loop, name="vindex-commits", daemon=True)
        self._background.start()
        try:
            yield self
        finally:
            with self._changed:
                self._closing = True
                self._changed.notify_all()
            self._background.join()
            self._background = None
        self._raise_failure()

    def _commit_loop(self) -> None:
        while True:
            with self._changed:
                while len(self.pending) < self.every and not self._closing:
                    self._changed.wait()
                if self._closing:
                    return
                batch, self.pending = self.pending, []
                self._changed.notify_all()  # room again for a caller waiting in add()
            try:
                self._commit(batch)
            except BaseException as exc:  # handed to the caller's thread, which raises it
                with self._changed:
                    self._failure = exc
                    self._changed.notify_all()
                return

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _commit(self, batch: list[FinishedVideo]) -> None:
        tables = {name: pa.concat_tables([v.tables[name] for v in batch]) for name in VIDEO_TABLES}
        self.index.commit_videos(tables, self.lease_s)
        log.info("committed %d videos", len(batch))
        self.commits += 1
        if self.commits % COMPACT_CHECK_COMMITS == 0:
            compact_small_files(self.index)
        if not self.committed:
            timeline.mark(timeline.FIRST_VIDEO_COMMITTED)
        self.committed += len(batch)
        release_free_heap()  # the batch's rows are gone; keep the driver at its working set


class RunRecord:
    """A run's row in the ``runs`` table, kept alive by a heartbeat while the run works.

    The heartbeat (every fifth of the lease) tells other runs that this one is still in
    flight, so they leave its not-yet-marked rows alone; a killed run's heartbeat stops, and
    once its lease has passed the next run clears what it left. A run that fails on an
    exception records ``failed`` on the way out.
    """

    def __init__(self, index: Index, row: dict[str, Any], lease_s: float) -> None:
        self.index = index
        self.row = row
        self.lease_s = lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="vindex-heartbeat", daemon=True)

    def __enter__(self) -> "RunRecord":
        self.index.append_run(self.row)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 5):
            now = dt.datetime.now(dt.timezone.utc)
            try:
                self.index.append_run({**self.row, "counts": dict(self.row["counts"]), "heartbeat_at": now})
            except IndexError_ as exc:  # the run itself will meet the same storage problem
                log.warning("run heartbeat not recorded: %s", exc)

    def finish(self, status: str, rederived: int = 0) -> None:
        """Record the run's end (heartbeat stopped first, so no late beat overwrites it)."""
        self._halt()
        now = dt.datetime.now(dt.timezone.utc)
        self.index.append_run(
            {**self.row, "finished_at": now, "heartbeat_at": now, "status": status, "rederived": rederived}
        )

    def _halt(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._halt()
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            with contextlib.suppress(Exception):  # best effort: the original error matters more
                self.finish("failed")


__all__ = ["COMPACT_CHECK_COMMITS", "GROUP_COMMIT_BATCHES", "Committer", "RunRecord"]
