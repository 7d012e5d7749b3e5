"""Cutting the selected clips of an index in parallel on Ray, and the ``clips`` table.

Steps of :func:`run_clips`:

1. select the clips (:mod:`pipeline.clips.select`) and give each a deterministic id;
2. drop those the ``clips`` table already holds as ``ok`` with that id (a re-run only does
   what is missing or failed);
3. one task per video cuts its clips (:class:`CutStage`, run by the stage adapter
   :func:`pipeline.execution.adapter.apply_stage` as the index's stages are, under the run's
   crash guard; :func:`cut_video`: one read of the source, each clip uploaded as soon as it
   is written) and returns one row per clip, ok or failed;
4. rows are committed to the ``clips`` Delta table (through the index's table writer,
   :class:`pipeline.index.writer.TableWriter`) as tasks finish, a batch at a time.

A source that vanished or cannot be decoded gives failed rows, never a stopped run; so does a
video whose cutting kills its worker process twice (the crash guard). Memory is bounded: a task
holds one video's decoder and the clips it is writing, Ray Data runs as many as there are CPUs
and holds back the rest, and the driver holds at most one commit batch of rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.clips.cut import CutRequest, CutResult, EncodeSettings, cut_copied, cut_reencoded
from pipeline.clips.select import UNIT_TABLES, ClipSpan, Selection, select_clips
from pipeline.config import Config
from pipeline.errors import ClipError, IndexError_, VideoError
from pipeline.execution.records import SegmentRecord
from pipeline.execution.stages import Stage
from pipeline.index.schemas import CLIPS, CLIPS_TABLE
from pipeline.index.snapshot import Snapshot
from pipeline.index.writer import TableWriter, new_run_id
from pipeline.media.opening import open_container
from pipeline.sources.reading import LOCAL_PROTOCOLS, filesystem_protocol
from pipeline.sources.storage import fsspec_options

log = logging.getLogger(__name__)

#: The clips table's name in the index.
#: Namespace of ``clip_id`` = uuid5(namespace, video, kind, unit, requested frames, settings, destination).
CLIP_NAMESPACE = uuid.UUID("3b0c6f0e-5a7d-4d0b-9a51-0e6c2f4d8b17")
#: Rows committed to the clips table at a time. A commit took 7 ms for one row and about 20 ms
#: for 256 on local disk (measured; object storage adds round trips to each), while a clip
#: takes tens of milliseconds to cut at least: batches keep commits a small part of a run, and
#: a run stopped midway loses at most this many rows (their clips are cut again next time).
COMMIT_EVERY_CLIPS = 256
#: A cutting task decodes and encodes on one thread (see pipeline.clips.cut.ENCODER_THREADS).
CUT_TASK_CPUS = 1.0

#: One video's clips to cut, as a row of the dataset the stage adapter runs (:class:`VideoJob`).
JOB = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("fps", pa.float64()),
        # fsspec options for reading the source, resolved on the driver (settings, never
        # credentials: see pipeline.sources.storage), as JSON.
        ("source_options", pa.string()),
        (
            "clips",
            pa.list_(
                pa.struct(
                    [
                        ("clip_id", pa.string()),
                        ("kind", pa.string()),
                        ("unit_index", pa.int64()),
                        ("start_frame", pa.int64()),
                        ("end_frame", pa.int64()),
                    ]
                )
            ),
        ),
    ]
)


@dataclass(frozen=True)
class ClipFailure:
    clip_id: str
    video_uri: str
    message: str


@dataclass(frozen=True)
class ClipsSummary:
    """What :func:`run_clips` did."""

    run_id: str
    ok: int
    failed: int
    skipped: int
    bytes_written: int
    seconds: float
    failures: tuple[ClipFailure, ...] = field(default=())


@dataclass(frozen=True)
class VideoJob:
    """The clips of one video, as one task cuts them."""

    video_id: str
    uri: str
    fps: float
    clips: tuple[tuple[str, ClipSpan], ...]  # (clip_id, span)

    def record(self, source_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The job as a :data:`JOB` row."""
        return {
            "video_id": self.video_id,
            "uri": self.uri,
            "fps": self.fps,
            "source_options": json.dumps(dict(source_options or {}), sort_keys=True),
            "clips": [
                {
                    "clip_id": clip_id,
                    "kind": span.kind,
                    "unit_index": span.unit_index,
                    "start_frame": span.start_frame,
                    "end_frame": span.end_frame,
                }
                for clip_id, span in self.clips
            ],
        }

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> "VideoJob":
        """The job a :data:`JOB` row holds."""
        video_id, uri, fps = row["video_id"], row["uri"], float(row["fps"])
        clips = tuple(
            (
                clip["clip_id"],
                ClipSpan(
                    video_id, uri, fps, clip["kind"], int(clip["unit_index"]), int(clip["start_frame"]), int(clip["end_frame"])
                ),
            )
            for clip in row["clips"]
        )
        return cls(video_id, uri, fps, clips)


def clip_id_for(span: ClipSpan, settings: EncodeSettings, destination: str) -> str:
    """The deterministic id of a clip file: the same unit range cut with the same settings into
    the same destination (a :func:`destination_url`) has the same id, so a re-run skips it;
    cutting into another destination makes other files, with their own rows."""
    key = "|".join(
        [span.video_id, span.kind, str(span.unit_index), str(span.start_frame), str(span.end_frame), settings.key, destination]
    )
    return str(uuid.uuid5(CLIP_NAMESPACE, key))


def destination_url(dest: str, fs_options: Mapping[str, Any] | None = None) -> str:
    """``dest`` in one canonical form: protocol explicit, a local path absolute, no trailing slash."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(dest, **dict(fs_options or {}))
    return str(fs.unstrip_protocol(root.rstrip("/")))


def check_span(span: ClipSpan) -> None:
    """Refuse (:class:`IndexError_`) a unit whose ids are not ones vindex makes.

    A clip's path is built from its unit's ``video_id``, kind and frame numbers as the index
    holds them: an index written by anything else could hold ``../elsewhere`` or an absolute
    path there and send the clip outside the destination. A ``video_id`` must be a uuid5 in
    its canonical text (:func:`pipeline.sources.listing.video_id_for`), the kind one of
    :data:`UNIT_TABLES`, the unit index and frames integers of 0 or more.
    """
    try:
        parsed = uuid.UUID(span.video_id) if isinstance(span.video_id, str) else None
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != span.video_id or parsed.version != 5:
        raise IndexError_(f"video_id {span.video_id!r} is not an id vindex makes (a uuid5): its clips are not cut")
    if span.kind not in UNIT_TABLES:
        raise IndexError_(f"unit kind {span.kind!r} is not one of {', '.join(UNIT_TABLES)}: its clips are not cut")
    numbers = {"unit index": span.unit_index, "start frame": span.start_frame, "end frame": span.end_frame}
    for what, value in numbers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise IndexError_(f"{what} {value!r} of video {span.video_id} is not an integer of 0 or more: not cut")


def clip_path(root: str, span: ClipSpan, clip_id: str) -> str:
    """Where a clip's file goes under the destination ``root``: one folder per video, names that
    sort by unit and say which frames were asked for. Every part is checked (:func:`check_span`)
    and the path is known to lie inside ``root``, or :class:`IndexError_` is raised."""
    check_span(span)
    name = f"{span.kind}{span.unit_index:05d}_{span.start_frame:07d}-{span.end_frame:07d}_{clip_id[:8]}.mp4"
    relative = posixpath.join(span.video_id, name)
    # Known by construction from the checked parts; checked again so that no later change of
    # the naming can make a path that leaves ``root``.
    if posixpath.normpath(relative) != relative or relative.startswith("/") or ".." in relative.split("/"):
        raise IndexError_(f"clip {clip_id} of video {span.video_id} would be written outside {root}: not cut")
    return posixpath.join(root, relative)


def _check_local_folder(root: str, folder: str) -> None:
    """Refuse a local clip folder that resolves outside the destination (a symbolic link in
    the destination pointing elsewhere)."""
    real_root, real_folder = os.path.realpath(root), os.path.realpath(folder)
    if os.path.commonpath([real_root, real_folder]) != real_root or real_folder == real_root:
        raise IndexError_(f"{folder} resolves to {real_folder}, outside the destination {real_root}")


@dataclass(frozen=True)
class ClipsTable:
    """The ``clips`` Delta table of an index, kept out of the run protocol: rows are replaced
    by ``clip_id`` (a failed clip cut again), never joined to the ``videos`` markers."""

    index: Snapshot

    @property
    def writer(self) -> TableWriter:
        # Opened afresh at each use: a run commits a batch every COMMIT_EVERY_CLIPS clips.
        return TableWriter(self.index.uri, CLIPS_TABLE, CLIPS, self.index.storage_options, keep_open=False)

    @property
    def uri(self) -> str:
        return self.writer.uri

    def exists(self) -> bool:
        return self.writer.exists()

    def ensure(self, fs_options: Mapping[str, Any] | None = None) -> None:
        """Create the table (empty) where the index has none yet, never in a folder of other files."""
        from pipeline.index.location import check_table_folder

        check_table_folder(self.uri, CLIPS_TABLE, dict(fs_options or {}))
        self.writer.create()

    def read(self, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """The table as Arrow (empty with its schema when the index has no clips yet)."""
        if not self.exists():
            return CLIPS.empty_table().select(columns or CLIPS.names)
        return self.writer.dataset().to_table(columns=columns, filter=filter)

    def done(self) -> set[str]:
        """Ids of the clips written ``ok``."""
        table = self.read(columns=["clip_id"], filter=pc.field("status") == "ok")
        return set(table.column("clip_id").to_pylist())

    def commit(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows``, replacing the rows of the same clip ids (a failed clip cut again), in
        one transaction retried on conflicts with other writers."""
        self.writer.replace(pa.Table.from_pylist(rows, schema=CLIPS), "clip_id")


def read_clips(index: Snapshot) -> pa.Table:
    """The index's clips table as Arrow (empty when no clips were cut)."""
    return ClipsTable(index).read()


def _row(job: VideoJob, span: ClipSpan, clip_id: str, result: CutResult, settings: EncodeSettings, run_id: str,
         uri: str | None, size_bytes: int | None) -> dict[str, Any]:
    return {
        "clip_id": clip_id,
        "video_id": job.video_id,
        "kind": span.kind,
        "unit_index": span.unit_index,
        "start_frame": result.start_frame,
        "end_frame": result.end_frame,
        "start_s": result.start_frame / job.fps,
        "end_s": (result.end_frame + 1) / job.fps,
        "uri": uri,
        "size_bytes": size_bytes,
        "codec": result.codec,
        "width": result.width,
        "height": result.height,
        "mode": settings.mode,
        "run_id": run_id,
        "status": "ok" if result.error is None else "failed",
        "error_message": result.error,
        "created_at": dt.datetime.now(dt.timezone.utc),
    }


def cut_video(
    job: VideoJob,
    settings: EncodeSettings,
    dest: str,
    run_id: str,
    source_options: Mapping[str, Any] | None = None,
    dest_options: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Cut one video's clips into ``dest`` and return one clips-table row per clip (the body
    of a Ray task; callable directly). Each clip is written to a local temporary file and
    moved (local destination) or uploaded (object storage) as soon as it is complete."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(dest, **dict(dest_options or {}))
    root = root.rstrip("/")
    local = filesystem_protocol(fs) in LOCAL_PROTOCOLS
    if local:
        os.makedirs(root, exist_ok=True)
    # A local destination gets its temporary files beside the clips, so a rename finishes them.
    staging = tempfile.mkdtemp(prefix=".vindex-clips-", dir=root if local else None)
    spans = {clip_id: span for clip_id, span in job.clips}
    # Paths first: a unit whose ids could lead outside the destination is a failed row, not cut.
    targets: dict[str, str] = {}
    refused: list[CutResult] = []
    for clip_id, span in job.clips:
        try:
            targets[clip_id] = clip_path(root, span, clip_id)
        except IndexError_ as exc:
            refused.append(CutResult(clip_id, span.start_frame, span.end_frame, error=str(exc)))
    requests = [
        CutRequest(clip_id, s.start_frame, s.end_frame, os.path.join(staging, f"{clip_id}.mp4"))
        for clip_id, s in job.clips if clip_id in targets
    ]

    def open_source() -> Any:
        return open_container(job.uri, dict(source_options or {}))

    results: Iterable[CutResult] = refused
    if requests and settings.mode == "copy":
        results = itertools.chain(refused, cut_copied(open_source, requests))
    elif requests:
        results = itertools.chain(refused, cut_reencoded(open_source, requests, settings, job.fps))
    rows = []
    try:
        for result in results:
            span = spans[result.clip_id]
            uri = size = None
            if result.error is None:
                temporary = os.path.join(staging, f"{result.clip_id}.mp4")
                target = targets[result.clip_id]
                try:
                    size = os.path.getsize(temporary)
                    if local:
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        _check_local_folder(root, os.path.dirname(target))
                        os.replace(temporary, target)
                    else:
                        fs.put_file(temporary, target)
                        os.unlink(temporary)
                    uri = fs.unstrip_protocol(target)
                except Exception as exc:  # the destination refused this clip: it fails, the rest go on
                    result = CutResult(result.clip_id, result.start_frame, result.end_frame,
                                       error=f"cannot write the clip to {dest}: {type(exc).__name__}: {exc}")
                    size = None
            rows.append(_row(job, span, result.clip_id, result, settings, run_id, uri, size))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def plan_jobs(
    spans: Iterable[ClipSpan], settings: EncodeSettings, destination: str, done: set[str]
) -> tuple[list[VideoJob], int]:
    """The spans not yet cut ``ok``, one job per video; and how many were skipped as done."""
    by_video: dict[str, list[tuple[str, ClipSpan]]] = {}
    skipped = 0
    for span in spans:
        clip_id = clip_id_for(span, settings, destination)
        if clip_id in done:
            skipped += 1
        else:
            by_video.setdefault(span.video_id, []).append((clip_id, span))
    jobs = [VideoJob(video_id, clips[0][1].uri, clips[0][1].fps, tuple(clips)) for video_id, clips in sorted(by_video.items())]
    return jobs, skipped


class CutStage(Stage):
    """Cut one video's clips (a :data:`JOB` row in, one clips-table row per clip out).

    Stateless, so the adapter runs it as tasks, one CPU each: the decoder and x264 each run
    on one thread (:mod:`pipeline.clips.cut`). Whatever stops a video's cutting, a worker
    killed twice on it included (the crash guard), gives failed rows for its clips.
    """

    name = "cut"
    error_type = ClipError

    def __init__(
        self,
        config: Config,
        storage_options: dict[str, Any] | None = None,
        *,
        settings: EncodeSettings,
        dest: str,
        run_id: str,
        dest_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, storage_options)
        self.settings = settings
        self.dest = dest
        self.run_id = run_id
        self.dest_options = dict(dest_options or {})

    def process(self, row: SegmentRecord) -> list[SegmentRecord]:
        job = VideoJob.from_record(row)
        try:
            rows = cut_video(job, self.settings, self.dest, self.run_id, json.loads(row["source_options"]), self.dest_options)  # type: ignore[typeddict-item]
        except Exception as exc:  # any failure of this video's cutting fails its clips, not the run
            detail = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ""
            raise ClipError(job.uri, f"the task cutting this video failed: {type(exc).__name__}: {detail}") from exc
        return cast(list[SegmentRecord], rows)

    def failure_rows(self, row: SegmentRecord, error: VideoError) -> list[SegmentRecord]:
        job = VideoJob.from_record(row)
        return cast(list[SegmentRecord], failed_rows(job, self.settings, self.run_id, error.message))


def failed_rows(job: VideoJob, settings: EncodeSettings, run_id: str, message: str) -> list[dict[str, Any]]:
    """A failed row for every clip of ``job``, saying ``message``."""
    return [
        _row(job, span, clip_id, CutResult(clip_id, span.start_frame, span.end_frame, error=message), settings, run_id, None, None)
        for clip_id, span in job.clips
    ]


class _Tally:
    """Counts and commits the rows coming back from the tasks, a batch at a time."""

    def __init__(self, table: ClipsTable, jobs: list[VideoJob], progress: Any) -> None:
        self.table = table
        self.progress = progress
        self.jobs = {job.video_id: job for job in jobs}
        #: Clip ids not yet returned, by video.
        self.waiting = {job.video_id: {clip_id for clip_id, _ in job.clips} for job in jobs}
        self.pending: list[dict[str, Any]] = []
        self.ok = self.failed = self.bytes_written = 0
        self.failures: list[ClipFailure] = []

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            waiting = self.waiting[row["video_id"]]
            waiting.discard(row["clip_id"])
            job = self.jobs[row["video_id"]]
            if row["status"] == "ok":
                self.ok += 1
                self.bytes_written += row["size_bytes"] or 0
            else:
                self.failed += 1
                self.failures.append(ClipFailure(row["clip_id"], job.uri, row["error_message"] or ""))
            self.pending.append(row)
            if not waiting and self.progress is not None:
                self.progress.advance(frames=sum(s.num_frames for _, s in job.clips), videos=1)
        if len(self.pending) >= COMMIT_EVERY_CLIPS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.table.commit(self.pending)
        self.pending = []


def _cut_on_ray(jobs: list[VideoJob], tally: _Tally, stage_kwargs: dict[str, Any], config: Config, run_id: str,
                source_options: Mapping[str, Mapping[str, Any]]) -> None:
    """Run :class:`CutStage` over ``jobs`` through the stage adapter, one video per block (so
    that every CPU gets a video at once), and tally the rows as they come back."""
    from pipeline.execution.adapter import apply_stage, attempt_ledger
    from pipeline.execution.pools import Resources
    from pipeline.execution.ray_runtime import configure_data, dataset_of, init_ray

    init_ray(config)
    configure_data(config)
    table = pa.Table.from_pylist([job.record(source_options[job.video_id]) for job in jobs], schema=JOB)
    with attempt_ledger(run_id) as ledger:
        dataset = dataset_of([table.slice(i, 1) for i in range(table.num_rows)])
        dataset = apply_stage(
            dataset, CutStage, stage_kwargs, Resources(num_cpus=CUT_TASK_CPUS), ledger=ledger, output_schema=CLIPS
        )
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            tally.add(cast(pa.Table, block).to_pylist())


def run_clips(
    index: Snapshot,
    dest: str,
    selection: Selection,
    settings: EncodeSettings,
    *,
    config: Config | None = None,
    show_progress: bool = True,
) -> ClipsSummary:
    """Cut the clips ``selection`` picks from ``index`` into ``dest`` (a local folder or an
    fsspec URL) and record them in the index's ``clips`` table."""
    from pipeline.execution.progress import Progress

    config = config or Config()
    started = time.monotonic()
    run_id = new_run_id("clips")
    table = ClipsTable(index)
    table.ensure(fsspec_options(index.uri, config.storage))
    dest_options = fsspec_options(dest, config.storage)
    destination = destination_url(dest, dest_options)
    jobs, skipped = plan_jobs(select_clips(index, selection), settings, destination, table.done())
    log.info("clips run %s: %d videos to cut, %d clips already done", run_id, len(jobs), skipped)
    tally = _Tally(table, jobs, Progress(len(jobs)) if show_progress and jobs else None)
    if jobs:
        stage_kwargs = {
            "config": config, "settings": settings, "dest": dest, "run_id": run_id, "dest_options": dest_options,
        }  # fmt: skip
        source_options = {job.video_id: fsspec_options(job.uri, config.storage) for job in jobs}
        _cut_on_ray(jobs, tally, stage_kwargs, config, run_id, source_options)
    tally.flush()
    if tally.progress is not None:
        tally.progress.close()
    return ClipsSummary(
        run_id, tally.ok, tally.failed, skipped, tally.bytes_written, time.monotonic() - started, tuple(tally.failures)
    )


__all__ = [
    "CLIPS_TABLE",
    "ClipFailure",
    "ClipsSummary",
    "ClipsTable",
    "CutStage",
    "JOB",
    "VideoJob",
    "check_span",
    "clip_id_for",
    "clip_path",
    "cut_video",
    "destination_url",
    "failed_rows",
    "plan_jobs",
    "read_clips",
    "run_clips",
]
