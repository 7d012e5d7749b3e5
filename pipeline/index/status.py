"""The state of an index at a glance: its latest runs, videos by status, failed videos.

Reads only small columns (never embeddings or thumbnails), so it is quick on any index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.index.schemas import COUNT_KEYS
from pipeline.index.snapshot import Snapshot

#: Order in which video statuses are reported; any other status follows, sorted.
STATUSES = ("ok", "failed", "deleted")
#: Child table -> the ``videos`` column counting a video's current rows in it.
ROW_COUNTS = {"shots": "num_shots", "scenes": "num_scenes", "keyframes": "num_keyframes"}


@dataclass(frozen=True)
class Failure:
    """A video whose latest processing failed."""

    video_id: str
    uri: str
    stage: str
    message: str
    run_id: str


@dataclass(frozen=True)
class IndexStatus:
    uri: str
    #: Runs, newest first (at most the number asked for), as rows of the ``runs`` table.
    runs: list[dict[str, Any]]
    total_runs: int
    #: Videos by status, in :data:`STATUSES` order.
    videos_by_status: dict[str, int]
    #: Rows of the shots, scenes and keyframes tables.
    rows: dict[str, int]
    failures: list[Failure] = field(default_factory=list)

    @property
    def total_videos(self) -> int:
        return sum(self.videos_by_status.values())


def count_by_status(statuses: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    counts = {str(row["values"]): int(row["counts"]) for row in pc.value_counts(statuses).to_pylist()}
    ordered = {name: counts.pop(name, 0) for name in STATUSES}
    return ordered | dict(sorted(counts.items()))


def latest_runs(index: Snapshot, limit: int | None) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` runs (``None``: all), newest first, and how many runs there are."""
    runs = index.read("runs").sort_by([("started_at", "descending"), ("run_id", "descending")])
    shown = runs if limit is None else runs.slice(0, limit)
    return shown.to_pylist(), runs.num_rows


def failures(index: Snapshot, limit: int | None = None) -> list[Failure]:
    """Failed videos, ordered by URI."""
    table = index.dataset("videos").to_table(
        columns=["video_id", "uri", "error_stage", "error_message", "run_id"],
        filter=pc.field("status") == "failed",
    ).sort_by([("uri", "ascending")])
    if limit is not None:
        table = table.slice(0, limit)
    return [
        Failure(r["video_id"], r["uri"], r["error_stage"] or "unknown", r["error_message"] or "", r["run_id"] or "")
        for r in table.to_pylist()
    ]


def index_status(index: Snapshot, runs: int | None = 5) -> IndexStatus:
    """Runs (newest first, at most ``runs``), counts, and every failed video."""
    videos = index.dataset("videos").to_table(columns=["status", *ROW_COUNTS.values()])
    shown_runs, total_runs = latest_runs(index, runs)
    # Each video's row counts its current rows (a commit writes both at once), so the totals come
    # from the small videos table: counting the child tables read 1M keys each at 100k videos.
    rows = {name: int(pc.sum(videos.column(column)).as_py() or 0) for name, column in ROW_COUNTS.items()}
    return IndexStatus(index.uri, shown_runs, total_runs, count_by_status(videos.column("status")), rows, failures(index))


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def runs_table(runs: list[dict[str, Any]]) -> pa.Table:
    """Runs as a flat table for display: one column per count."""
    counts = [r["counts"] or {} for r in runs]
    return pa.table(
        {
            "run_id": [r["run_id"] for r in runs],
            "started": [_when(r["started_at"]) for r in runs],
            "finished": [_when(r["finished_at"]) for r in runs],
            "status": [r["status"] for r in runs],
            **{key: [c.get(key) for c in counts] for key in COUNT_KEYS},
            "source": [r["source"] for r in runs],
        }
    )


def format_status(status: IndexStatus) -> str:
    """The status as text for a terminal."""
    from pipeline.index.query import format_result
    from pipeline.redaction import shown

    by_status = ", ".join(f"{n} {name}" for name, n in status.videos_by_status.items())
    lines = [
        f"index {shown(status.uri)}",
        f"videos: {by_status} ({status.total_videos} in all)",
        "rows: " + ", ".join(f"{name} {n:,}" for name, n in status.rows.items()),
        "",
    ]
    if status.runs:
        older = status.total_runs - len(status.runs)
        lines.append(f"last {len(status.runs)} of {status.total_runs} runs, newest first:" if older else "runs, newest first:")
        lines.append(format_result(runs_table(status.runs), max_width=80))
    else:
        lines.append("no runs yet")
    lines.append("")
    if status.failures:
        lines.append(f"failed videos ({len(status.failures)}):")
        failed = pa.table(
            {
                "uri": [f.uri for f in status.failures],
                "stage": [f.stage for f in status.failures],
                "message": [f.message for f in status.failures],
            }
        )
        lines.append(format_result(failed, max_width=300))
    else:
        lines.append("no failed videos")
    return "\n".join(line.rstrip() for text in lines for line in text.splitlines() or [""])


__all__ = ["Failure", "IndexStatus", "count_by_status", "failures", "format_status", "index_status", "latest_runs"]
