"""The index at corpus scale: what each video costs as the index grows, and what readers pay.

    python benchmarks/scale.py [--sizes 1000,10000,100000] [--quick] [--index PATH] [--keep]
                               [--export-max-videos N] [--seed 0] [--group-commit]

An index is grown to each size N in turn through the code ``vindex run`` commits with: one
simulated run per growth step (a real run id from ``new_run_id``, its ``runs`` row kept by
``RunRecord`` with its heartbeat), each video's rows made as a run makes them (``video_row``
for ``videos``; the stitcher's shot, scene and keyframe rows: 10 shots, 2-4 scenes and 10
keyframes a video, 1,280-float embeddings on shots and keyframes, a real 6-10 KB JPEG
thumbnail on each keyframe), committed through the runner's ``Committer`` in batches of the
default ``write.commit_every_videos`` (with ``--group-commit``, on the committer's own thread as
``vindex run`` commits: the videos that arrive during a commit all go into the next), and the
run ended with the same clean-up
(``collect_orphans``, ``abandon_stale_runs``, and the compaction of tables that gathered too
many files where the runner does one). Nothing is decoded: no network runs.

At each N, printed as one row of a table:

* the growth step's wall time, the commit cost per video over the step, and the median commit
  of the step's last 50 (the cost at N: a step's mean is the cost near its middle);
* the one-video query of ``vindex query`` (``select count(*) from shots where video_id = ...``),
  ``vindex status``, ``vindex similar`` to a keyframe, and ``vindex export`` (seconds, GB
  written, seconds per GB);
* an unchanged re-run's diff: the run's read of the indexed videos plus
  ``diff_against_index`` against a listing of exactly what is indexed (building the listing
  is not counted: a run lists before it diffs);
* the run-end clean-up, and the peak RSS of this process so far (``ru_maxrss``);

and per table: live data files (those the latest version names), data files on disk and Delta
log versions. Each cost is then fitted against N (linear least squares, and a power law
through the measured points) and projected to 1M and 100M videos; the commit cost per video
is also integrated to the total commit time of growing an index to those sizes.

The index lives in a temporary folder on local disk (``--index`` for another, new folder),
deleted at the end unless ``--keep``. Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import inspect
import io
import json
import logging
import math
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

# The repository root: the checkout's own `pipeline`.
from benchmarks.measure import machine_header
from pipeline.algorithms.stitch import VideoRows, video_row
from pipeline.config import DERIVED, OUTPUTS, Config
# The index class, its table registry and the runs row's JSON are taken from the runner's own
# module (the names it imports, not the module that defines them today), so the benchmark
# commits through whatever the runner commits with.
from pipeline.execution import runner
from pipeline.index.schemas import SCHEMAS
from pipeline.index.store import Index

try:  # the run's steps, each in its own module
    from pipeline.digests import OUTPUTS_VERSION, Digests
    from pipeline.execution.committer import Committer, RunRecord
    from pipeline.index.diff import KNOWN_COLUMNS, Plan, diff_against_index
except ImportError:  # an older checkout: all of them in the runner
    from pipeline.execution.runner import (  # type: ignore[attr-defined,no-redef]
        KNOWN_COLUMNS, OUTPUTS_VERSION, Committer, Digests, Plan, RunRecord, diff_against_index,
    )

try:  # videos are stitched, and their rows made into Arrow tables, on the workers
    from pipeline.execution.records import FinishedVideo
except ImportError:  # an older checkout: the driver made its tables at commit time
    FinishedVideo = None  # type: ignore[assignment,misc]
from pipeline.index.location import claim_index
from pipeline.index.export import export_index
from pipeline.index.query import run_query
from pipeline.index.reader import open_index
from pipeline.index.similarity import similar
from pipeline.index.status import index_status
from pipeline.models.spec import EMBEDDING_DIM
from pipeline.sources.listing import ListingScope, VideoObject, video_id_for
from pipeline.sources.storage import delta_options, fsspec_options

T = TypeVar("T")

DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (200, 1_000)
PROJECTED_SIZES = (1_000_000, 100_000_000)
#: The corpus the simulated runs list: URIs only, no file is read.
SOURCE = "file:///vindex-scale-corpus"
EXTENSION = ".mp4"
SHOTS_PER_VIDEO = 10
FPS = 25.0
FRAMES_PER_VIDEO = 1_500  # a minute at 25 fps
#: Distinct JPEG thumbnails made once (about 3 s) and drawn at random for each keyframe: a
#: fresh JPEG for each would cost 1.3 ms, 22 minutes of the 100k growth.
THUMBNAILS = 2048
#: The commits at the end of a growth step whose median stands for the commit cost at its size.
TAIL_COMMITS = 50
TABLES = ("videos", "shots", "scenes", "keyframes", "runs")
PROGRESS_EVERY_S = 30.0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def peak_rss_gb() -> float:
    """This process's peak resident set so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


@dataclass
class PeakTracker:
    """Which step of a size raised the process's peak RSS the most."""

    last_gb: float = field(default_factory=peak_rss_gb)
    rises: dict[str, float] = field(default_factory=dict)

    def after(self, step: str) -> None:
        now = peak_rss_gb()
        self.rises[step] = now - self.last_gb
        self.last_gb = now

    def top(self) -> str:
        step, rise = max(self.rises.items(), key=lambda item: item[1], default=("", 0.0))
        return f"{step} +{rise:.2f}" if rise >= 0.01 else "an earlier size"


# ---------------------------------------------------------------- the machine


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def code_version() -> str:
    """The commit the benchmark runs on, and whether ``pipeline/`` differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "log", "-1", "--oneline"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "pipeline"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    line = head.stdout.strip()[:100]
    return line + (" (pipeline/ has uncommitted changes)" if dirty.stdout.strip() else "")


# ---------------------------------------------------------------- rows as a run makes them


def make_thumbnails(rng: np.random.Generator, quality: int) -> list[bytes]:
    """Real JPEGs of 320x180 frames (shifted gradients with grain), 7-9 KB each at the default
    ``embed.thumbnail_quality``, like a keyframe's. A pool this large keeps Parquet's dictionary
    and compression from finding repeats: with 8, the export deduplicated them (0.45 GB for
    4,000 videos instead of 0.69)."""
    from PIL import Image

    height, width = 180, 320
    y, x = np.mgrid[0:height, 0:width]
    grain = rng.normal(0, 6, (1024, 1024, 3)).astype(np.float32)
    thumbnails = []
    for i in range(THUMBNAILS):
        shift = rng.integers(0, 256, 3)
        base = np.stack(
            [
                (x * 255 / width + shift[0]) % 256,
                (y * 255 / height + shift[1]) % 256,
                ((x + y) * 128 / (width + height) + shift[2]) % 256,
            ],
            axis=-1,
        )
        top, left = rng.integers(0, 1024 - height), rng.integers(0, 1024 - width)
        pixels = (base + grain[top : top + height, left : left + width]).clip(0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=quality)
        thumbnails.append(out.getvalue())
    return thumbnails


def uri_of(number: int) -> str:
    return f"{SOURCE}/batch-{number // 1000:05d}/video-{number:09d}{EXTENSION}"


@dataclass(frozen=True)
class ListedVideo:
    """What a listing found of one simulated video (the ``videos`` row's listing columns)."""

    video_id: str
    uri: str
    size_bytes: int
    mtime: dt.datetime

    def as_object(self) -> VideoObject:
        return VideoObject(uri=self.uri, size_bytes=self.size_bytes, etag=None, mtime=self.mtime)


def listed_video(number: int) -> ListedVideo:
    uri = uri_of(number)
    mtime = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=number)
    return ListedVideo(video_id_for(uri), uri, 20_000_000 + number, mtime)


@dataclass
class RowMaker:
    """Builds each video's rows as the stitcher does, with fresh embeddings for every video."""

    digests: Digests
    thumbnails: list[bytes]
    rng: np.random.Generator
    #: The keyframe each size's ``similar`` starts from: (video_id, frame) of the last video made.
    last_keyframe: tuple[str, int] = ("", 0)
    seconds: float = 0.0

    def rows(self, video: ListedVideo, number: int, run_id: str) -> Any:
        started = time.perf_counter()
        rng = self.rng
        cuts = np.sort(rng.choice(np.arange(30, FRAMES_PER_VIDEO - 30), SHOTS_PER_VIDEO - 1, replace=False))
        starts = np.concatenate([[0], cuts])
        ends = np.concatenate([cuts - 1, [FRAMES_PER_VIDEO - 1]])
        # Unit-norm float32 vectors, as stored: one per shot and one per keyframe.
        vectors = rng.standard_normal((2 * SHOTS_PER_VIDEO, EMBEDDING_DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        motion = rng.random(SHOTS_PER_VIDEO, dtype=np.float32) * 0.1
        shots = [
            {
                "video_id": video.video_id,
                "shot_index": i,
                "start_frame": int(starts[i]),
                "end_frame": int(ends[i]),
                "start_s": float(starts[i] / FPS),
                "end_s": float((ends[i] + 1) / FPS),
                "transition": "start" if i == 0 else ("cut" if i % 4 else "gradual"),
                "boundary_score": None if i == 0 else float(0.5 + 0.5 * rng.random()),
                "embedding": vectors[i],
                "motion": float(motion[i]),
                "brightness": float(0.2 + 0.6 * rng.random()),
                "sharpness": float(50 + 400 * rng.random()),
                "still": bool(motion[i] < 0.01),
                "run_id": run_id,
            }
            for i in range(SHOTS_PER_VIDEO)
        ]
        num_scenes = 2 + number % 3  # 2, 3 or 4: about 3 a video
        bounds = np.linspace(0, SHOTS_PER_VIDEO, num_scenes + 1).astype(int)
        scenes = [
            {
                "video_id": video.video_id,
                "scene_index": s,
                "first_shot": int(bounds[s]),
                "last_shot": int(bounds[s + 1] - 1),
                "start_frame": shots[bounds[s]]["start_frame"],
                "end_frame": shots[bounds[s + 1] - 1]["end_frame"],
                "start_s": shots[bounds[s]]["start_s"],
                "end_s": shots[bounds[s + 1] - 1]["end_s"],
                "run_id": run_id,
            }
            for s in range(num_scenes)
        ]
        scene_of = {shot: s for s in range(num_scenes) for shot in range(bounds[s], bounds[s + 1])}
        thumbnail_picks = rng.integers(0, len(self.thumbnails), SHOTS_PER_VIDEO)
        keyframes = []
        for i, shot in enumerate(shots):
            frame = (shot["start_frame"] + shot["end_frame"]) // 2
            keyframes.append(
                {
                    "video_id": video.video_id,
                    "shot_index": i,
                    "scene_index": scene_of[i],
                    "frame": frame,
                    "time_s": frame / FPS,
                    "score": float(rng.random()),
                    "embedding": vectors[SHOTS_PER_VIDEO + i],
                    "thumbnail": self.thumbnails[int(thumbnail_picks[i])],
                    "run_id": run_id,
                }
            )
        meta = {
            "video_id": video.video_id,
            "uri": video.uri,
            "size_bytes": video.size_bytes,
            "etag": None,
            "mtime": video.mtime,
            "duration_s": FRAMES_PER_VIDEO / FPS,
            "fps": FPS,
            "num_frames": FRAMES_PER_VIDEO,
            "width": 1280,
            "height": 720,
            "codec": "h264",
        }
        row = video_row(
            meta,
            status="ok",
            run_id=run_id,
            config_digest=self.digests.outputs,
            derived_digest=self.digests.derived,
            counts=(len(shots), len(scenes), len(keyframes)),
        )
        self.last_keyframe = (video.video_id, keyframes[0]["frame"])
        rows: Any = VideoRows(row, shots, scenes, keyframes)
        if FinishedVideo is not None:  # as the worker that stitched it sends it to the driver
            rows = FinishedVideo.of(rows)
        self.seconds += time.perf_counter() - started
        return rows


def version_info(config: Config) -> dict[str, str]:
    """A run's ``versions``, with fixed weight digests: the benchmark needs no weights file."""
    return {
        "vindex": package_version("vindex"),
        "outputs": OUTPUTS_VERSION,
        "transnetv2_weights": "scale-benchmark",
        "efficientnet_lite0_weights": "scale-benchmark",
        "config": config.digest(OUTPUTS),
        "derived": config.digest(DERIVED),
    }


# ---------------------------------------------------------------- growing the index


@dataclass
class Growth:
    """One simulated run that grew the index from ``start`` to ``stop`` videos."""

    start: int
    stop: int
    wall_s: float = 0.0
    rows_s: float = 0.0
    #: (videos in the index before the commit, videos committed, seconds) of each commit.
    commits: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def commit_s(self) -> float:
        return sum(c[2] for c in self.commits)

    @property
    def commit_s_per_video(self) -> float:
        return self.commit_s / max(1, self.stop - self.start)

    @property
    def slowest_commit_s(self) -> float:
        return max(c[2] for c in self.commits)

    @property
    def tail_commit_s(self) -> float:
        return statistics.median(c[2] for c in self.commits[-TAIL_COMMITS:])


def grow(
    index: Any, config: Config, maker: RowMaker, start: int, stop: int, version: dict[str, str], group: bool = False
) -> Growth:
    """Index videos ``start`` to ``stop - 1`` as one run does: a runs row kept alive while the
    Committer commits batch after batch, the run's end recorded, then the run-end clean-up
    (timed apart, by the caller's measurements).

    By default each batch of ``write.commit_every_videos`` is committed as it fills, in this
    thread: every commit the same size, so commit costs compare across sizes. With ``group``
    the commits run on the committer's own thread as in ``vindex run``
    (:meth:`Committer.in_background`): videos that arrive during a commit all go into the
    next, so commits grow with the rate videos arrive at (here, as fast as rows are made).
    """
    growth = Growth(start, stop)
    run_id = runner.new_run_id()
    started_at = dt.datetime.now(dt.timezone.utc)
    counts = dict(listed=stop, new=stop - start, changed=0, unchanged=start, deleted=0, ok=0, failed=0, frames=0)
    run_row = {
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": None,
        "source": SOURCE,
        "counts": counts,
        "config": json.dumps(config.to_dict(), sort_keys=True, default=str),
        "versions": json.dumps(version, sort_keys=True),
        "status": "running",
        "heartbeat_at": started_at,
    }
    lease_s = config.write.run_lease_s
    began = time.perf_counter()
    rows_before = maker.seconds
    with RunRecord(index, run_row, lease_s) as record:
        committer = Committer(index, config.write.commit_every_videos, lease_s)
        if group:
            commit_batch = committer._commit

            def timed_commit(batch: list[Any]) -> None:
                before, t0 = committer.committed, time.perf_counter()
                commit_batch(batch)
                growth.commits.append((start + before, len(batch), time.perf_counter() - t0))

            committer._commit = timed_commit  # type: ignore[method-assign]
        with committer.in_background() if group else contextlib.nullcontext():
            _feed(committer, maker, start, stop, run_id, counts, growth, began, group)
        before, pending = committer.committed, len(committer.pending)
        t0 = time.perf_counter()
        committer.flush()
        if pending and not group:
            growth.commits.append((start + before, pending, time.perf_counter() - t0))
        record.finish("ok")
    growth.wall_s = time.perf_counter() - began
    growth.rows_s = maker.seconds - rows_before
    return growth


def _feed(
    committer: Any, maker: RowMaker, start: int, stop: int, run_id: str, counts: dict[str, int], growth: Growth,
    began: float, group: bool,
) -> None:
    """Hand videos ``start`` to ``stop - 1`` to the committer, timing each commit it makes in
    this thread (the committer's own thread times its own with ``group``)."""
    last_note = began
    for number in range(start, stop):
        rows = maker.rows(listed_video(number), number, run_id)
        counts["ok"] += 1
        counts["frames"] += FRAMES_PER_VIDEO
        before = committer.committed
        pending = len(committer.pending) + 1
        t0 = time.perf_counter()
        committer.add(rows)
        if committer.committed != before and not group:
            growth.commits.append((start + before, pending, time.perf_counter() - t0))
        now = time.perf_counter()
        if now - last_note > PROGRESS_EVERY_S:
            last_note = now
            last = f", last commit {growth.commits[-1][1]} videos in {growth.commits[-1][2]:.2f} s" if growth.commits else ""
            done = number + 1 - start
            progress(f"  growing {start:,} -> {stop:,}: {done:,}/{stop - start:,} videos, {now - began:.0f} s{last}")


def run_end_cleanup(index: Any, lease_s: float) -> None:
    """What ``run_index`` does after recording its end: clear what runs now over left behind,
    mark killed runs abandoned, and, where the runner does so, compact tables grown too many files."""
    index.collect_orphans(lease_s=lease_s)
    index.abandon_stale_runs(lease_s)
    compact: Callable[[Any], object] | None = getattr(runner, "compact_small_files", None)
    if compact is not None:
        compact(index)


# ---------------------------------------------------------------- what readers pay


@dataclass
class TableFiles:
    live: int
    on_disk: int
    log_versions: int
    bytes_on_disk: int


def table_files(index_path: Path, name: str) -> TableFiles:
    """A table's live data files (the latest version's), data files on disk, log versions."""
    from deltalake import DeltaTable

    folder = index_path / name
    on_disk, size = 0, 0
    for path in folder.rglob("*.parquet"):
        if "_delta_log" not in path.parts:
            on_disk += 1
            size += path.stat().st_size
    log_versions = sum(1 for p in (folder / "_delta_log").glob("*.json") if p.stem.isdigit())
    live = len(DeltaTable(str(folder)).file_uris())
    return TableFiles(live, on_disk, log_versions, size)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class Measured:
    """Everything measured at one size."""

    videos: int
    growth: Growth
    query_s: float
    status_s: float
    similar_s: float
    export_s: float | None
    export_gb: float | None
    diff_s: float
    cleanup_s: float
    peak_rss_gb: float
    #: The step that raised the peak most at this size, and by how many GB.
    peak_step: str
    files: dict[str, TableFiles]

    @property
    def export_s_per_gb(self) -> float | None:
        if self.export_s is None or not self.export_gb:
            return None
        return self.export_s / self.export_gb


def measure_readers(
    index_path: Path,
    index: Any,
    growth: Growth,
    cleanup_s: float,
    keyframe: tuple[str, int],
    digests: Digests,
    export: bool,
    scratch: Path,
    peaks: PeakTracker,
) -> Measured:
    videos = growth.stop
    reader = open_index(str(index_path))
    video_id = keyframe[0]

    progress(f"  {videos:,}: one-video query")
    sql = f"select count(*) from shots where video_id = '{video_id}'"
    # No time limit where the query has one (`vindex query --timeout`): a slow query is measured, not stopped.
    unlimited = {"timeout_s": None} if "timeout_s" in inspect.signature(run_query).parameters else {}
    result, query_s = timed(lambda: run_query(reader, sql, **unlimited))
    if result.column(0)[0].as_py() != SHOTS_PER_VIDEO:
        raise RuntimeError(f"the one-video query counted {result.column(0)[0].as_py()} shots, not {SHOTS_PER_VIDEO}")
    peaks.after("query")

    progress(f"  {videos:,}: status")
    status, status_s = timed(lambda: index_status(reader))
    if status.videos_by_status.get("ok") != videos or status.rows.get("shots") != videos * SHOTS_PER_VIDEO:
        raise RuntimeError(f"status counts {status.videos_by_status} {status.rows}, expected {videos:,} ok videos")
    peaks.after("status")

    progress(f"  {videos:,}: similar")
    matches, similar_s = timed(lambda: similar(reader, keyframe=keyframe, k=10))
    if matches.num_rows != 10 or matches.column("video_id")[0].as_py() != video_id:
        raise RuntimeError("similar did not find the query keyframe first")
    peaks.after("similar")

    export_s = export_gb = None
    if export:
        progress(f"  {videos:,}: export")
        dest = scratch / f"export-{videos}"
        _, export_s = timed(lambda: export_index(reader, str(dest)))
        export_gb = folder_bytes(dest) / 1e9
        shutil.rmtree(dest)
        peaks.after("export")

    progress(f"  {videos:,}: an unchanged re-run's diff")
    listed = [listed_video(n).as_object() for n in range(videos)]  # the listing itself: not timed
    scope = ListingScope("file://", SOURCE.removeprefix("file://") + "/**", (EXTENSION,))

    def diff() -> Plan:
        known = index.read("videos", columns=KNOWN_COLUMNS).to_pylist()
        # `listed` is deleted below, after diff() has run; pyflakes sees only the `del`.
        return diff_against_index(listed, known, scope, digests, full=False)  # noqa: F821

    plan, diff_s = timed(diff)
    if plan.counts["unchanged"] != videos or plan.todo or plan.deleted:
        raise RuntimeError(f"an unchanged re-run would do something: {plan.counts}")
    del listed, plan
    peaks.after("diff")

    files = {name: table_files(index_path, name) for name in TABLES}
    return Measured(
        videos, growth, query_s, status_s, similar_s, export_s, export_gb, diff_s, cleanup_s,
        peak_rss_gb(), peaks.top(), files,
    )


# ---------------------------------------------------------------- tables and fits


def seconds(value: float | None) -> str:
    if value is None:
        return "skipped"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def costs_table(results: list[Measured]) -> str:
    header = [
        "videos", "step", "step wall s", "rows s", "commit s/video (step)", "commit s (median of last 50)",
        "slowest commit s", "commits", "videos a commit (median)", "one-video query s", "status s", "similar s",
        "export s", "export GB", "export s/GB",
        "unchanged diff s", "run-end cleanup s", "peak RSS GB", "peak raised by (GB)",
    ]
    rows = []
    for m in results:
        g = m.growth
        rows.append(
            [
                f"{m.videos:,}", f"{g.start:,}->{g.stop:,}", seconds(g.wall_s), seconds(g.rows_s),
                f"{g.commit_s_per_video:.4f}", seconds(g.tail_commit_s),
                seconds(g.slowest_commit_s), f"{len(g.commits):,}", f"{statistics.median(c[1] for c in g.commits):g}",
                seconds(m.query_s), seconds(m.status_s), seconds(m.similar_s), seconds(m.export_s),
                "skipped" if m.export_gb is None else f"{m.export_gb:.3g}", seconds(m.export_s_per_gb),
                seconds(m.diff_s), seconds(m.cleanup_s), f"{m.peak_rss_gb:.2f}", m.peak_step,
            ]
        )
    return markdown(header, rows)


def files_table(results: list[Measured]) -> str:
    header = ["videos", *[f"{name}: live / on disk / log versions" for name in TABLES], "index GB on disk"]
    rows = []
    for m in results:
        cells = [f"{f.live:,} / {f.on_disk:,} / {f.log_versions:,}" for f in m.files.values()]
        total = sum(f.bytes_on_disk for f in m.files.values()) / 1e9
        rows.append([f"{m.videos:,}", *cells, f"{total:.3g}"])
    return markdown(header, rows)


@dataclass(frozen=True)
class Fit:
    """``y = intercept + slope * N`` (least squares) and ``y = scale * N ** exponent``."""

    intercept: float
    slope: float
    scale: float | None
    exponent: float | None

    def linear(self, n: float) -> float:
        return self.intercept + self.slope * n

    def power(self, n: float) -> float | None:
        return None if self.scale is None or self.exponent is None else self.scale * n**self.exponent


def fit(points: list[tuple[float, float]]) -> Fit | None:
    xs = np.array([p[0] for p in points], np.float64)
    ys = np.array([p[1] for p in points], np.float64)
    if len(set(xs.tolist())) < 2:
        return None
    slope, intercept = np.polyfit(xs, ys, 1)
    scale = exponent = None
    if np.all(xs > 0) and np.all(ys > 0):
        exponent, log_scale = np.polyfit(np.log(xs), np.log(ys), 1)
        scale = math.exp(log_scale)
    return Fit(float(intercept), float(slope), scale, None if exponent is None else float(exponent))


def fits_table(results: list[Measured]) -> str:
    """Each cost fitted against N and projected; the per-commit cost from every commit measured."""
    series: list[tuple[str, list[tuple[float, float]]]] = [
        ("one commit s (every commit, against videos before it)",
         [(float(n + b / 2), s) for m in results for (n, b, s) in m.growth.commits]),
        ("commit s/video (median of last 50 commits / batch)",
         [(float(m.videos), m.growth.tail_commit_s / max(c[1] for c in m.growth.commits)) for m in results]),
        ("one-video query s", [(float(m.videos), m.query_s) for m in results]),
        ("status s", [(float(m.videos), m.status_s) for m in results]),
        ("similar s", [(float(m.videos), m.similar_s) for m in results]),
        ("export s", [(float(m.videos), m.export_s) for m in results if m.export_s is not None]),
        ("export GB", [(float(m.videos), m.export_gb) for m in results if m.export_gb is not None]),
        ("unchanged diff s", [(float(m.videos), m.diff_s) for m in results]),
        ("run-end cleanup s", [(float(m.videos), m.cleanup_s) for m in results]),
        ("peak RSS GB", [(float(m.videos), m.peak_rss_gb) for m in results]),
        ("index GB on disk",
         [(float(m.videos), sum(f.bytes_on_disk for f in m.files.values()) / 1e9) for m in results]),
    ]
    for name in TABLES:
        series.append((f"{name} live files", [(float(m.videos), float(m.files[name].live)) for m in results]))
        series.append((f"{name} log versions", [(float(m.videos), float(m.files[name].log_versions)) for m in results]))
    header = ["cost", "linear fit", *[f"linear at {n:,}" for n in PROJECTED_SIZES],
              "power fit", *[f"power at {n:,}" for n in PROJECTED_SIZES], "points"]
    rows = []
    for label, points in series:
        f = fit(points)
        if f is None:
            rows.append([label, "too few sizes", *["-"] * (2 * len(PROJECTED_SIZES) + 1), str(len(points))])
            continue
        power = [f.power(n) for n in PROJECTED_SIZES]
        rows.append(
            [
                label,
                f"{f.intercept:.4g} + {f.slope:.4g}·N",
                *[f"{f.linear(n):.4g}" for n in PROJECTED_SIZES],
                "-" if f.scale is None else f"{f.scale:.4g}·N^{f.exponent:.3f}",
                *["-" if p is None else f"{p:.4g}" for p in power],
                f"{len(points):,}",
            ]
        )
    return markdown(header, rows)


def total_commit_time(results: list[Measured], batch: int) -> str:
    """The commit time of growing an index from empty to each projected size: the per-commit
    fit integrated over the commits it takes (linear: a + b·N per commit of ``batch`` videos)."""
    f = fit([(float(n + b / 2), s) for m in results for (n, b, s) in m.growth.commits])
    if f is None:
        return "too few sizes to project the total commit time"
    lines = []
    for size in PROJECTED_SIZES:
        commits = size / batch
        linear = commits * f.intercept + f.slope * size * commits / 2  # sum of a + b*N over N = 0..size
        power = None
        if f.scale is not None and f.exponent is not None and f.exponent > -1:
            power = f.scale * size ** (f.exponent + 1) / ((f.exponent + 1) * batch)
        shown = "-" if power is None else f"{power / 86400:,.3g} days"
        lines.append(
            f"- growing to {size:,} videos in commits of {batch}: linear fit {linear / 86400:,.3g} days "
            f"({linear / size:.3g} s a video on average); power fit {shown}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    if not sizes or any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive and increasing, got {text!r}")
    return sizes


@contextlib.contextmanager
def index_folder(chosen: str | None, keep: bool) -> Iterator[Path]:
    """``chosen`` (new or empty), or a temporary folder deleted afterwards unless ``keep``."""
    if chosen is not None:
        path = Path(chosen).resolve()
        if path.exists() and any(path.iterdir()):
            raise SystemExit(f"--index {chosen}: the folder must be new or empty")
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="vindex-scale-"))
    try:
        yield path
    finally:
        if keep:
            progress(f"index kept at {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="index sizes in videos, increasing (default 1000,10000,100000)")
    parser.add_argument("--quick", action="store_true", help=f"sizes {','.join(map(str, QUICK_SIZES))}")
    parser.add_argument("--index", help="a new or empty local folder for the index (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary index")
    parser.add_argument("--export-max-videos", type=int, default=None,
                        help="skip the export at sizes above this many videos (default: export at every size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--group-commit", action="store_true",
                        help="commit on the committer's own thread, as vindex run does (commits grow with the rate)")
    args = parser.parse_args()
    sizes = list(QUICK_SIZES) if args.quick else args.sizes
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    config = Config()
    version = version_info(config)
    digests = Digests.of(version)
    rng = np.random.default_rng(args.seed)
    maker = RowMaker(digests, make_thumbnails(rng, config.embed.thumbnail_quality), rng)
    lease_s = config.write.run_lease_s
    batch = config.write.commit_every_videos

    print(f"# vindex index at scale, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"- code: {code_version()}")
    for line in machine_header().splitlines():
        print(f"- {line}")
    print(
        f"- python {platform.python_version()}, torch {package_version('torch')}, "
        f"deltalake {package_version('deltalake')}, pyarrow {package_version('pyarrow')}, "
        f"duckdb {package_version('duckdb')}"
    )
    print(
        f"- rows a video: {SHOTS_PER_VIDEO} shots, 2-4 scenes, {SHOTS_PER_VIDEO} keyframes; "
        f"{EMBEDDING_DIM}-float embeddings; "
        f"thumbnails {min(map(len, maker.thumbnails)):,}-{max(map(len, maker.thumbnails)):,} bytes; "
        + (f"group commits of {batch}+ videos, on the committer's thread" if args.group_commit else f"commits of {batch} videos")
        + f"; sizes {', '.join(f'{s:,}' for s in sizes)}",
        flush=True,
    )

    import duckdb  # noqa: F401  (imported before the first query is timed, as the others' modules are)

    results: list[Measured] = []
    with index_folder(args.index, args.keep) as index_path, tempfile.TemporaryDirectory(
        prefix="vindex-scale-export-", dir=index_path.parent
    ) as scratch:
        index_uri = str(index_path)
        index = Index(index_uri, delta_options(index_uri, config.storage))
        # As a run begins: the location claimed, the tables made.
        claim_index(index_uri, SCHEMAS, fsspec_options(index_uri, config.storage), source=SOURCE)
        index.ensure()
        start = 0
        for size in sizes:
            progress(f"growing the index {start:,} -> {size:,} videos (one run)")
            peaks = PeakTracker()
            growth = grow(index, config, maker, start, size, version, group=args.group_commit)
            peaks.after("growth")
            progress(
                f"  grown to {size:,} in {growth.wall_s:.0f} s (rows {growth.rows_s:.0f} s, "
                f"commits {growth.commit_s:.0f} s, "
                f"median of the last commits {growth.tail_commit_s:.2f} s); run-end clean-up"
            )
            _, cleanup_s = timed(lambda: run_end_cleanup(index, lease_s))
            peaks.after("cleanup")
            export = args.export_max_videos is None or size <= args.export_max_videos
            results.append(
                measure_readers(
                    index_path, index, growth, cleanup_s, maker.last_keyframe, digests, export, Path(scratch), peaks
                )
            )
            progress(f"  measured {size:,}")
            start = size

    print("\n## Costs at each size\n")
    print(costs_table(results))
    print("\n## Files per table\n")
    print(files_table(results))
    print("\n## Fitted against N, projected\n")
    print(fits_table(results))
    print()
    # Group commits grow to the committer's bound when videos arrive faster than commits: project
    # with the size the last step's commits had.
    projected_batch = int(statistics.median(c[1] for c in results[-1].growth.commits)) if args.group_commit else batch
    print(total_commit_time(results, projected_batch))
    print(
        "\nstep wall s: the growth run, rows and commits; rows s: building the rows (not the code under test); "
        "run-end cleanup: collect_orphans, abandon_stale_runs and the runner's compaction where it has one; "
        "peak RSS: this process's so far (ru_maxrss); a fit through two sizes passes through both."
    )


if __name__ == "__main__":
    main()
