"""One indexing run: list, diff against the index, process on Ray, commit.

The driver lists the corpus and decides what to process; Ray Data plans, decodes and runs
the models in a streaming pipeline, whose last actors stitch each video as its last segment
is modelled (:mod:`pipeline.execution.assembler`); the driver receives finished rows and
commits them in batches, so memory stays bounded, a crash loses at most the batch in flight,
and the driver's cost does not grow with the frames decoded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
from deltalake.exceptions import DeltaError

from pipeline.config import DERIVED, OUTPUTS, Config
from pipeline.errors import ConfigError, EmptySourceError, IndexError_, StitchError
from pipeline.index.location import claim_index
from pipeline.index.maintenance import compact_small_files
from pipeline.redaction import redact
from pipeline.index.schemas import LISTING_COLUMNS, SCHEMAS
from pipeline.index.store import DEFAULT_RUN_LEASE_S, Index, dumps
from pipeline.execution.adapter import Finishing, apply_stage, attempt_ledger
from pipeline.execution.pools import PLAN_CPUS, Pool, PoolPlan, Resources
from pipeline.execution.processes import release_free_heap
from pipeline.execution.progress import Progress
from pipeline.execution.assembler import Outcome
from pipeline.execution.records import LISTING_RECORD, SEGMENT, VIDEO_TABLES, FinishedVideo, SegmentRecord
from pipeline.execution.rendezvous import segment_rendezvous
from pipeline.execution.rederive import batches, scenes_from_stored_shots
from pipeline.execution.ray_runtime import configure_data, init_ray, pool_sizes
from pipeline.execution import timeline
from pipeline.sources.listing import ListingScope, Shard, VideoObject, list_source
from pipeline.sources.reading import PROCESS_LOCAL_PROTOCOLS, open_input, protocol_of
from pipeline.execution.stages import DecodeAndModelStage, DecodeStage, ModelStage, PlanStage, Stage
from pipeline.sources.storage import delta_options, fsspec_options
from pipeline.algorithms.stitch import VideoRows, video_row

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.data import Dataset

log = logging.getLogger(__name__)

#: What a run reads of each indexed video to decide what to do with it.
#: Every this many commits a run compacts the tables that have gathered too many files.
COMPACT_CHECK_COMMITS = 16
KNOWN_COLUMNS = [*LISTING_COLUMNS, "status", "config_digest", "derived_digest"]
MAX_LISTING_BLOCKS = 200


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


def new_run_id() -> str:
    """Sortable run id: UTC time plus a random suffix."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


#: Bumped whenever code, not settings, changes what a video's rows hold (stored columns,
#: shot post-processing, keyframe rules), so the next run re-indexes what an older vindex
#: wrote. 2: shots keep their embedding; flash filter; keyframes avoid mixed, black and flash
#: frames and weigh sharpness. 3: shots' curation signals (motion, brightness, sharpness, still):
#: the columns are added to an older index as null, and the next run re-indexes its videos to
#: fill them (the per-frame statistics they come from are not stored). 4: a video's last
#: shot-network window covers only its last frames (``segments.window_middles``), which moves
#: the transition probabilities of those frames slightly; and on CPUs "auto" precision runs
#: the shot network's convolutions in int8 (``pipeline.models.quantized``). 5: black frames next to
#: a transition belong to it (a fade through black is one gradual transition: no shot of black
#: frames alone, no black keyframe; ``pipeline.algorithms.shots.join_black_frames``). 6: shots keep
#: a colour histogram of their frames' colour layouts (``shots.colour_histogram``), which scenes
#: fuse with the embedding: the column is added to an older index as null, and the next run
#: re-indexes its videos to fill it.
OUTPUTS_VERSION = "6"


def versions(config: Config) -> dict[str, str]:
    # From the light weights module, not the networks' own: those import torch (about 1 s of a
    # run's start-up on 2 CPUs), which the driver never needs.
    from pipeline.models.weights import EFFICIENTNET_LITE0_WEIGHTS, TRANSNETV2_WEIGHTS, recorded_digest

    return {
        "vindex": importlib.metadata.version("vindex"),
        "outputs": OUTPUTS_VERSION,
        "transnetv2_weights": recorded_digest(TRANSNETV2_WEIGHTS),
        "efficientnet_lite0_weights": recorded_digest(EFFICIENTNET_LITE0_WEIGHTS),
        "config": config.digest(OUTPUTS),
        "derived": config.digest(DERIVED),
    }


def index_digest(version_info: dict[str, str]) -> str:
    """What decoding and the networks produce depends on: weights, :data:`OUTPUTS_VERSION` and
    the settings that change outputs (``videos.config_digest``). A change re-decodes a video."""
    relevant = {k: v for k, v in version_info.items() if k not in ("vindex", "derived")}
    return hashlib.sha256(dumps(relevant).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Digests:
    """What a run compares with each indexed video's digests to decide what to do with it."""

    #: Weights and the settings that change outputs: a different one re-decodes.
    outputs: str
    #: Settings of what is derived from stored outputs (scenes): a different one re-derives.
    derived: str

    @classmethod
    def of(cls, version_info: dict[str, str]) -> "Digests":
        return cls(index_digest(version_info), version_info["derived"])


@dataclass
class Plan:
    todo: list[VideoObject]
    deleted: list[dict[str, Any]]
    counts: dict[str, int]
    #: Video ids whose outputs are current but whose scenes must be derived again.
    rederive: list[str] = field(default_factory=list)


def diff_against_index(
    listed: list[VideoObject],
    known: list[dict[str, Any]],
    scope: ListingScope,
    digests: Digests,
    full: bool,
    *,
    allow_empty_source: bool = False,
    rederive_scenes: bool = False,
) -> Plan:
    """Decide what to (re)index: new, changed, failed last time or indexed with other settings
    (settings that change only scenes: derive them again, without decoding).

    A video is marked deleted only if this listing's ``scope`` covers its URI and the listing
    did not find it. A listing that found nothing where the index holds videos it covers
    deletes nothing and raises :class:`EmptySourceError`, unless ``allow_empty_source``.
    ``rederive_scenes`` derives the scenes of every current video again, settings changed or not.
    """
    latest = {row["video_id"]: row for row in known}
    counts = dict(listed=len(listed), new=0, changed=0, unchanged=0, deleted=0, ok=0, failed=0, frames=0)
    todo, rederive = [], []
    for video in listed:
        row = latest.get(video.video_id)
        if row is None or row["status"] == "deleted":
            counts["new"] += 1
            todo.append(video)
            continue
        same_object = row["size_bytes"] == video.size_bytes and (
            (video.etag is not None and row["etag"] == video.etag)
            or (video.etag is None and row["mtime"] == video.mtime)
        )
        current = not full and same_object and row["status"] == "ok"
        if current and row["config_digest"] == digests.outputs:
            if row.get("derived_digest") == digests.derived and not rederive_scenes:
                counts["unchanged"] += 1
            else:
                counts["changed"] += 1
                rederive.append(video.video_id)
        else:
            counts["changed"] += 1
            todo.append(video)
    listed_ids = {v.video_id for v in listed}
    deleted = [
        row
        for row in known
        if row["video_id"] not in listed_ids
        and row["status"] != "deleted"
        and scope.owns(row["video_id"])
        and scope.covers(row["uri"])
    ]
    if deleted and not listed and not allow_empty_source:
        raise EmptySourceError(
            f"the listing found no videos, but the index holds {len(deleted)} videos it covers "
            f"(e.g. {deleted[0]['uri']}); nothing was deleted. If the folder is an unmounted mount "
            "point or the filters changed, fix that; if the videos were really removed, run again "
            "with --allow-empty-source to mark them deleted"
        )
    counts["deleted"] = len(deleted)
    return Plan(todo, deleted, counts, rederive)


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
    started = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    run_id = new_run_id()
    version_info = versions(config)
    digests = Digests.of(version_info)

    storage_options = fsspec_options(source, config.storage)
    listing = list_source(source, config.source, storage_options, shard)
    listed = listing.videos
    index = Index(index_uri, delta_options(index_uri, config.storage))
    try:
        # Before any table exists: the location must be vindex's own (pipeline.index.location).
        claim_index(index_uri, SCHEMAS, fsspec_options(index_uri, config.storage), source=source)
        index.ensure()
        known = index.read("videos", columns=KNOWN_COLUMNS).to_pylist()
    except (IndexError_, DeltaError, OSError) as exc:
        raise ConfigError(f"index {index_uri!r} is not usable: {exc}") from exc
    plan = diff_against_index(
        listed, known, listing.scope, digests, full, allow_empty_source=allow_empty_source, rederive_scenes=rederive_scenes
    )
    counts = plan.counts
    timeline.mark(timeline.LISTED)
    run_row = {
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": None,
        # credentials typed into a URL are never stored
        "source": redact(source) + (f" (shard {shard})" if shard else ""),
        "counts": counts,
        "config": dumps(config.to_dict()),
        "versions": dumps(version_info),
        "status": "running",
        "heartbeat_at": started_at,
    }
    lease_s = config.write.run_lease_s
    summary = RunSummary(run_id, redact(index_uri), redact(source), counts)
    with RunRecord(index, run_row, lease_s) as record:
        log.info(
            "run %s: %d listed, %d new, %d changed, %d unchanged, %d deleted",
            run_id, counts["listed"], counts["new"], counts["changed"], counts["unchanged"], counts["deleted"],
        )
        committer = Committer(index, config.write.commit_every_videos, lease_s)
        if plan.deleted:
            committer.pending.extend(
                FinishedVideo.of(VideoRows(video_row(row, status="deleted", run_id=run_id, config_digest=digests.outputs)))
                for row in plan.deleted
            )
            committer.flush()
        todo = plan.todo + _rederive(index, plan.rederive, listed, config, run_id, digests, committer, summary)
        if todo:
            with _worker_readable(todo, storage_options) as rows:
                _process(rows, config, storage_options, run_id, digests, committer, summary, show_progress)
        committer.flush()
        summary.seconds = time.monotonic() - started
        record.finish(summary.status, rederived=summary.rederived)
    # Every run ends by clearing what runs now over left behind (a killed run's rows, rows
    # superseded while their writer was still running), so the tables agree for plain readers.
    index.collect_orphans(lease_s=lease_s)
    index.abandon_stale_runs(lease_s)
    compact_small_files(index)
    timeline.mark(timeline.DONE)
    return summary


def _rederive(
    index: Index,
    video_ids: list[str],
    listed: list[VideoObject],
    config: Config,
    run_id: str,
    digests: Digests,
    committer: Committer,
    summary: RunSummary,
) -> list[VideoObject]:
    """Derive the scenes of ``video_ids`` again from the index, committing as it goes; returns
    the videos that cannot be (indexed before shots kept embeddings), to be indexed in full."""
    undone: list[str] = []
    for batch in batches(video_ids, config.write.commit_every_videos):
        result = scenes_from_stored_shots(index, batch, config, run_id, digests.derived)
        for rows in result.rows:
            finished = FinishedVideo.of(rows)
            summary.add(finished)
            summary.rederived += 1
            committer.add(finished)
        undone.extend(result.not_derivable)
    if video_ids:
        log.info("scenes derived again without decoding for %d videos", len(video_ids) - len(undone))
    by_id = {v.video_id: v for v in listed}
    return [by_id[video_id] for video_id in undone]


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


@contextlib.contextmanager
def _worker_readable(todo: list[VideoObject], storage_options: dict[str, Any] | None) -> Iterator[list[dict[str, Any]]]:
    """Listing rows whose ``location`` Ray workers can read.

    Objects of a process-local filesystem (memory://) exist only in the driver, so they are
    copied to a local temporary folder for the run; everything else is read where it is.
    """
    rows = [v.to_row() for v in todo]
    if not rows or protocol_of(rows[0]["uri"]) not in PROCESS_LOCAL_PROTOCOLS:
        yield rows
        return
    with tempfile.TemporaryDirectory(prefix="vindex-staged-") as folder:
        for row in rows:
            target = os.path.join(folder, row["video_id"] + os.path.splitext(row["uri"])[1])
            with open_input(row["uri"], storage_options) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            row["location"] = target
        yield rows


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
    configure_data(config)
    timeline.mark(timeline.RAY_STARTED)
    pools = _pools(config)
    progress = Progress(len(rows)) if show_progress else None
    received: set[str] = set()
    with attempt_ledger(run_id) as ledger, segment_rendezvous(run_id) as rendezvous, committer.in_background():
        finishing = Finishing(run_id, digests.outputs, digests.derived, rendezvous)
        dataset = _pipeline(rows, config, storage_options, pools, ledger, finishing)
        for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            videos = [v for v in FinishedVideo.from_records(cast(pa.Table, block)) if v.video_id not in received]
            longer = [v.video_id for v in videos if v.segment_count > 1]
            if longer:
                rendezvous.close.remote(longer)  # their segments are no longer needed
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
    pools = pool_sizes(config)
    log.info("pools: decode %s, model %s", pools.decode or "in the model actors", pools.model)
    if pools.fused and config.compute.decode_actors:
        log.warning("compute.decode_actors is unused: without GPUs the model actors decode (compute.fuse_on_cpu)")
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
    import ray.data

    kwargs = {"config": config, "storage_options": storage_options}
    listing = pa.Table.from_pylist(rows, schema=pa.schema([SEGMENT.field(c) for c in LISTING_RECORD]))
    # Several small blocks, so that planning starts on many videos at once. (Not repartition():
    # its tasks ask for a whole CPU, which the actor pools may already hold.)
    per_block = max(1, -(-len(rows) // MAX_LISTING_BLOCKS))
    dataset: Dataset = ray.data.from_arrow([listing.slice(i, per_block) for i in range(0, len(rows), per_block)])
    dataset = apply_stage(dataset, PlanStage, kwargs, Resources(num_cpus=PLAN_CPUS), ledger=ledger)
    steps: list[tuple[type[Stage], Pool]] = [(DecodeAndModelStage, pools.model)] if pools.decode is None else [
        (DecodeStage, pools.decode), (ModelStage, pools.model)
    ]
    for i, (stage_cls, pool) in enumerate(steps):
        last = i == len(steps) - 1
        dataset = apply_stage(
            dataset, stage_cls, kwargs, pool.resources, pool.max_size, pool.min_size, ledger, pool.initial_size,
            finishing if last else None,
        )  # fmt: skip
    return dataset


__all__ = [
    "KNOWN_COLUMNS",
    "OUTPUTS_VERSION",
    "Committer",
    "Digests",
    "FailedVideo",
    "Plan",
    "RunRecord",
    "RunSummary",
    "diff_against_index",
    "index_digest",
    "new_run_id",
    "run_index",
    "versions",
]
