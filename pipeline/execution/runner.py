"""One indexing run: list, diff against the index, process on Ray, commit.

The driver lists the corpus and decides what to process; Ray Data plans, decodes and runs
the models in a streaming pipeline, whose last actors stitch each video as its last segment
is modelled (:mod:`pipeline.execution.assembler`); the driver receives finished rows and
commits them in batches, so memory stays bounded, a crash loses at most the batch in flight,
and the driver's cost does not grow with the frames decoded.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from deltalake.exceptions import DeltaError

from pipeline.config import Config
from pipeline.errors import ConfigError, IndexError_, StitchError
from pipeline.index.location import claim_index
from pipeline.index.maintenance import compact_small_files
from pipeline.redaction import redact
from pipeline.index.schemas import SCHEMAS
from pipeline.index.store import Index, dumps
from pipeline.index.writer import new_run_id
from pipeline.digests import Digests, versions
from pipeline.execution.adapter import Finishing, apply_stage, run_bookkeeper
from pipeline.execution.committer import Committer, RunRecord
from pipeline.execution.pools import PLAN_CPUS, Pool, PoolPlan, Resources, calls_per_actor, torch_threads
from pipeline.execution.progress import Progress
from pipeline.execution.assembler import Outcome
from pipeline.execution.records import FinishedVideo, SegmentRecord, listing_table
from pipeline.execution.rederive import scenes_from_stored_shots
from pipeline.execution.ray_runtime import configure_data, dataset_of, init_ray, pool_sizes
from pipeline.execution import timeline
from pipeline.index.diff import RunPlan, plan_run
from pipeline.sources.listing import Shard, VideoObject, stream_source
from pipeline.sources.spill import Spill, work_folder
from pipeline.media.opening import worker_readable
from pipeline.execution.stages import DecodeAndModelStage, DecodeStage, LastVideo, ModelStage, PlanStage, Stage
from pipeline.sources.storage import delta_options, fsspec_options
from pipeline.algorithms.stitch import VideoRows, video_row

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.data import Dataset

log = logging.getLogger(__name__)

#: Planning (probing each video's container) runs as at most this many tasks, and each task
#: plans at least PLAN_BLOCK_MIN_VIDEOS videos: every task in flight is a worker process to
#: start (about 1.5 CPU-s, and seconds on a laptop's few cores while the run's actors start),
#: against tens of milliseconds to probe a video.
MAX_LISTING_BLOCKS = 200
PLAN_BLOCK_MIN_VIDEOS = 8
#: Videos handed to Ray Data at once: the plan is read back in batches this size, so that the
#: driver's memory does not grow with the videos to index (each batch is one streaming
#: pipeline, with a progress line of its own; between batches its actors start again, seconds
#: against the hours of a batch).
TODO_BATCH_VIDEOS = 50_000


@dataclass
class FailedVideo:
    uri: str
    stage: str
    message: str


@dataclass
class RunSummary:
    run_id: str
    index: str
    source: str
    counts: dict[str, int]
    shots: int = 0
    scenes: int = 0
    keyframes: int = 0
    #: Videos whose scenes were derived again from stored outputs, without decoding.
    rederived: int = 0
    seconds: float = 0.0
    failures: list[FailedVideo] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.counts["frames"] / self.seconds if self.seconds > 0 else 0.0

    @property
    def status(self) -> str:
        return "partial" if self.counts["failed"] else "ok"

    def add(self, finished: FinishedVideo) -> None:
        """Count one finished video: ok with its rows, or failed with its reason."""
        video = finished.video
        self.counts["frames"] += finished.frames
        if video["status"] == "ok":
            self.counts["ok"] += 1
            self.shots += finished.rows("shots")
            self.scenes += finished.rows("scenes")
            self.keyframes += finished.rows("keyframes")
        else:
            self.counts["failed"] += 1
            self.failures.append(FailedVideo(video["uri"], video["error_stage"], video["error_message"]))


@dataclass(frozen=True)
class _Run:
    """What one run is, fixed as it starts: what it reads, with which settings, under which
    id, since when, and the digests its rows will carry."""

    source: str
    shard: Shard | None
    config: Config
    #: fsspec options of ``source``, for the listing and for reading the videos.
    storage_options: dict[str, Any] | None
    run_id: str
    #: ``time.monotonic()`` at the start, for the run's duration.
    started: float
    started_at: dt.datetime
    #: What the run's rows depend on (:func:`pipeline.digests.versions`), recorded in ``runs``.
    version_info: dict[str, str]
    digests: Digests

    @classmethod
    def start(cls, source: str, config: Config, shard: Shard | None) -> _Run:
        started, started_at = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        run_id = new_run_id()
        version_info = versions(config)
        return cls(
            source, shard, config, fsspec_options(source, config.storage), run_id, started, started_at,
            version_info, Digests.of(version_info),
        )  # fmt: skip

    def row(self, counts: dict[str, int]) -> dict[str, Any]:
        """The run's ``runs`` row as it begins; :class:`RunRecord` keeps it from there. ``counts``
        is the plan's, which the run adds finished videos to, so each heartbeat records them."""
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "finished_at": None,
            # credentials typed into a URL are never stored
            "source": redact(self.source) + (f" (shard {self.shard})" if self.shard else ""),
            "counts": counts,
            "config": dumps(self.config.to_dict()),
            "versions": dumps(self.version_info),
            "status": "running",
            "heartbeat_at": self.started_at,
        }


def run_index(
    source: str,
    index_uri: str,
    config: Config,
    *,
    full: bool = False,
    show_progress: bool = True,
    allow_empty_source: bool = False,
    rederive_scenes: bool = False,
    shard: Shard | None = None,
) -> RunSummary:
    """Index ``source`` (its ``shard`` only, when given) into ``index_uri``; returns what
    happened. Bad videos never raise."""
    timeline.mark(timeline.IMPORTED)
    run = _Run.start(source, config, shard)
    lease_s = config.write.run_lease_s
    # The listing and the plan, in memory while small, past that in files here
    # (pipeline.sources.spill); removed on every way out of the run, an error's too.
    with work_folder("vindex-run-") as workdir:
        index, plan = _plan(run, index_uri, workdir, full, allow_empty_source, rederive_scenes)
        timeline.mark(timeline.LISTED)
        summary = RunSummary(run.run_id, redact(index_uri), redact(source), plan.counts)
        with RunRecord(index, run.row(plan.counts), lease_s) as record:
            _log_plan(run.run_id, plan.counts)
            committer = Committer(index, config.write.commit_every_videos, lease_s)
            _commit_deletions(plan.deleted, run, committer)
            undone = _rederive(index, plan.rederive, run, committer, summary)
            _index_videos(plan.todo, undone, run, committer, summary, show_progress)
            committer.flush()  # what is left of the last batch
            summary.seconds = time.monotonic() - run.started
            record.finish(summary.status, rederived=summary.rederived)
    _end_of_run_cleanup(index, lease_s)
    timeline.mark(timeline.DONE)
    return summary


def _plan(
    run: _Run, index_uri: str, workdir: str, full: bool, allow_empty_source: bool, rederive_scenes: bool
) -> tuple[Index, RunPlan]:
    """List the source (spilled to ``workdir``), claim and open the index, and diff the two:
    what the run must do (:func:`pipeline.index.diff.plan_run`). An index that cannot be
    claimed, opened or read is the run's configuration's fault: :class:`ConfigError`. A
    ``workdir`` that cannot take the listing or the plan (disk full, ...) is not the index's:
    the spill raises its own :class:`~pipeline.errors.SpillWriteError` (a ConfigError, not an
    OSError), which goes up as it is."""
    listing = stream_source(run.source, run.config.source, run.storage_options, run.shard)
    listed = listing.spill(workdir)
    index = Index(index_uri, delta_options(index_uri, run.config.storage))
    try:
        # Before any table exists: the location must be vindex's own (pipeline.index.location).
        claim_index(index_uri, SCHEMAS, fsspec_options(index_uri, run.config.storage), source=run.source)
        index.ensure()
        # One version of the table, read once, a batch at a time.
        known = index.dataset("videos")
        plan = plan_run(
            listed, known, listing.scope, run.digests, full, workdir,
            allow_empty_source=allow_empty_source, rederive_scenes=rederive_scenes,
        )  # fmt: skip
    except (IndexError_, DeltaError, OSError) as exc:
        raise ConfigError(f"index {index_uri!r} is not usable: {exc}") from exc
    return index, plan


def _log_plan(run_id: str, counts: dict[str, int]) -> None:
    """One log line of what the listing and the diff found."""
    log.info(
        "run %s: %d listed, %d new, %d changed, %d unchanged, %d deleted",
        run_id, counts["listed"], counts["new"], counts["changed"], counts["unchanged"], counts["deleted"],
    )  # fmt: skip


def _commit_deletions(deleted: Spill, run: _Run, committer: Committer) -> None:
    """Mark deleted the indexed videos the listing no longer finds (``deleted`` holds their
    :data:`pipeline.index.diff.KNOWN` rows): one commit per ``write.commit_every_videos``,
    before anything else the run commits."""
    for batch in deleted.batches(run.config.write.commit_every_videos):
        committer.pending.extend(
            FinishedVideo.of(VideoRows(video_row(row, status="deleted", run_id=run.run_id, config_digest=run.digests.outputs)))
            for row in batch.to_pylist()
        )
        committer.flush()


def _index_videos(
    todo: Spill, undone: list[VideoObject], run: _Run, committer: Committer, summary: RunSummary, show_progress: bool
) -> None:
    """Decode, model and stitch the plan's videos to index, then those whose scenes could not
    be derived again (``undone``), on Ray, :data:`TODO_BATCH_VIDEOS` at a time."""
    for batch in _todo_batches(todo, undone):
        with worker_readable(batch, run.storage_options) as rows:
            _process(rows, run.config, run.storage_options, run.run_id, run.digests, committer, summary, show_progress)


def _end_of_run_cleanup(index: Index, lease_s: float) -> None:
    """Clear what runs now over left behind (a killed run's rows, rows superseded while their
    writer was still running), so the tables agree for plain readers; then mark killed runs
    abandoned and compact the tables that gathered too many files. Every run ends so."""
    index.collect_orphans(lease_s=lease_s)
    index.abandon_stale_runs(lease_s)
    compact_small_files(index)


def _todo_batches(todo: Spill, undone: list[VideoObject]) -> Iterator[list[VideoObject]]:
    """The videos to index, :data:`TODO_BATCH_VIDEOS` at a time: the plan's, then those whose
    scenes could not be derived again."""
    for batch in todo.batches(TODO_BATCH_VIDEOS):
        yield [VideoObject.from_row(row) for row in batch.to_pylist()]
    for start in range(0, len(undone), TODO_BATCH_VIDEOS):
        yield undone[start : start + TODO_BATCH_VIDEOS]


def _rederive(index: Index, rederive: Spill, run: _Run, committer: Committer, summary: RunSummary) -> list[VideoObject]:
    """Derive the scenes of the ``rederive`` videos (listing rows) again from the index,
    committing as it goes; returns the videos that cannot be (indexed before shots kept
    embeddings), to be indexed in full."""
    undone: list[VideoObject] = []
    for batch in rederive.batches(run.config.write.commit_every_videos):
        videos = {row["video_id"]: VideoObject.from_row(row) for row in batch.to_pylist()}
        result = scenes_from_stored_shots(index, list(videos), run.config, run.run_id, run.digests.derived)
        for rows in result.rows:
            finished = FinishedVideo.of(rows)
            summary.add(finished)
            summary.rederived += 1
            committer.add(finished)
        undone.extend(videos[video_id] for video_id in result.not_derivable)
    if rederive.num_rows:
        log.info("scenes derived again without decoding for %d videos", rederive.num_rows - len(undone))
    return undone


def _process(
    rows: list[dict[str, Any]],
    config: Config,
    storage_options: dict[str, Any] | None,
    run_id: str,
    digests: Digests,
    committer: Committer,
    summary: RunSummary,
    show_progress: bool,
) -> None:
    """Decode, model and stitch ``rows`` on Ray; commit the finished videos in batches."""
    init_ray(config)  # an embedded Ray, or the cluster of a job
    pools = _pools(config)
    configure_data(config, reserve_per_operator=pools.reserve_per_operator)
    timeline.mark(timeline.RAY_STARTED)
    progress = Progress(len(rows)) if show_progress else None
    received: set[str] = set()
    # One actor keeps the run's crash-guard ledger and its segment rendezvous.
    with run_bookkeeper(run_id) as bookkeeper, committer.in_background():
        finishing = Finishing(run_id, digests.outputs, digests.derived, bookkeeper)
        dataset = _pipeline(rows, config, storage_options, pools, bookkeeper, finishing)
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            videos = [v for v in FinishedVideo.from_records(cast(pa.Table, block)) if v.video_id not in received]
            longer = [v.video_id for v in videos if v.segment_count > 1]
            if longer:
                bookkeeper.close.remote(longer)  # their segments are no longer needed
            for video in videos:
                received.add(video.video_id)
                summary.add(video)
                committer.add(video)
                if progress:
                    progress.advance(frames=video.frames, videos=1)
        if progress:
            progress.close()
    outcome = Outcome(config, run_id, digests.outputs)
    lost_message = "the run lost this video's segments (a worker or node died); the next run indexes it"
    for row in rows:
        if row["video_id"] not in received:  # never finished: its segments were lost for good
            log.warning("%s: %s", redact(row["uri"]), lost_message)
            lost = outcome.failed(cast(SegmentRecord, row), StitchError.stage, lost_message)
            finished = FinishedVideo.of(lost)
            summary.add(finished)
            committer.add(finished)


def _pools(config: Config) -> PoolPlan:
    """The run's actor pools (their notes are logged as they are planned), named in the log."""
    pools = pool_sizes(config)
    log.info("pools: decode %s, model %s", pools.decode or "in the model actors", pools.model)
    return pools


def _pipeline(
    rows: list[dict[str, Any]],
    config: Config,
    storage_options: dict[str, Any] | None,
    pools: PoolPlan,
    ledger: ActorHandle,
    finishing: Finishing,
) -> Dataset:
    """The run's dataset: listing rows, planned into segments, decoded, modelled and stitched
    into finished videos by the last stage's actors."""
    kwargs = {"config": config, "storage_options": storage_options}
    # Largest files first, file size standing in for length: the run then ends on its small
    # videos, not with one actor running a long one alone (a longest-first schedule; ties stay
    # in listing order).
    rows = sorted(rows, key=lambda row: -(row.get("size_bytes") or 0))
    listing = listing_table(rows)
    # Several small blocks, so that planning starts on many videos at once. (Not repartition():
    # its tasks ask for a whole CPU, which the actor pools may already hold.)
    per_block = max(PLAN_BLOCK_MIN_VIDEOS, -(-len(rows) // MAX_LISTING_BLOCKS))
    dataset = dataset_of([listing.slice(i, per_block) for i in range(0, len(rows), per_block)])
    steps: list[tuple[type[Stage], Pool]] = [(DecodeAndModelStage, pools.model)] if pools.decode is None else [
        (DecodeStage, pools.decode), (ModelStage, pools.model)
    ]
    calls = []  # each step's calls per actor
    for stage_cls, pool in steps:
        threads = torch_threads(config.compute.model_threads, pool.resources.num_cpus, os.cpu_count() or 1)
        calls.append(calls_per_actor(stage_cls.concurrent_calls, threads))
    # The last video, planned last, has its last segments cut finer where the model actors take
    # several at once, so that they end the run together (PlanStage).
    at_once = pools.model.max_size * calls[-1]
    last_video = LastVideo(rows[-1]["video_id"], at_once) if rows and at_once > 1 else None
    dataset = apply_stage(
        dataset, PlanStage, {**kwargs, "last": last_video}, Resources(num_cpus=PLAN_CPUS), ledger=ledger,
        tasks=pools.plan_tasks,
    )  # fmt: skip
    for i, ((stage_cls, pool), stage_calls) in enumerate(zip(steps, calls)):
        last = i == len(steps) - 1
        dataset = apply_stage(
            dataset, stage_cls, kwargs, pool.resources, pool.max_size, pool.min_size, ledger, pool.initial_size,
            finishing if last else None, calls=stage_calls,
        )  # fmt: skip
    return dataset


__all__ = ["FailedVideo", "RunSummary", "new_run_id", "run_index"]
