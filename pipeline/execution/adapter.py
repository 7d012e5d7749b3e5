"""The one adapter between stages and Ray Data: every stage becomes a ``map_batches`` operator.

The rule, in one place: a stateful stage (a model or decoder to keep warm) runs on an actor
pool that autoscales between its pool bounds; a stateless one runs as tasks. One row per
batch, because a row is a whole segment (hundreds of frames) and is the unit of failure.
Each stage's attempts are counted by a :class:`CrashGuard`, so a video whose processing
kills its worker process fails alone instead of being retried forever.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from pipeline.execution import timeline
from pipeline.execution.pools import Resources
from pipeline.execution.processes import background_cpu_group, release_free_heap
from pipeline.execution.assembler import Outcome, VideoFinisher
from pipeline.execution.records import SEGMENT, SegmentRecord, finished_table
from pipeline.execution.rendezvous import RayGathering, RaySegmentRendezvous
from pipeline.execution.stages import Stage, in_ray_actor, on_own_thread

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.data import Dataset

    from pipeline.config import Config

#: Name prefix of a run's attempt ledger actor (``ray list actors`` shows it by run id).
LEDGER_NAME_PREFIX = "vindex-crash-guard-"
#: Name prefix of an index run's bookkeeping actor: its ledger and its rendezvous in one.
BOOKKEEPER_NAME_PREFIX = "vindex-run-"

log = logging.getLogger(__name__)


class AttemptLedger:
    """Attempts begun and not yet ended, by key: the state behind :class:`CrashGuard`.

    A plain class, run as one actor per run (:func:`attempt_ledger`); its methods run one at
    a time there, so ``begin`` counts and records in one step.
    """

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def begin(self, key: str) -> int:
        """Record an attempt at ``key``; how many earlier attempts never ended."""
        earlier = self._open.get(key, 0)
        self._open[key] = earlier + 1
        return earlier

    def end(self, key: str) -> None:
        """The attempt at ``key`` finished: forget its count."""
        self._open.pop(key, None)

    def unfinished(self, key: str) -> int:
        """How many attempts at ``key`` never ended, recording nothing."""
        return self._open.get(key, 0)


class CrashGuard:
    """Counts, across worker processes, the attempts at a unit of work that never finished.

    ``begin`` records an attempt in the run's :class:`AttemptLedger` actor and returns how
    many earlier attempts are still recorded: each one is a worker that died mid-way (its
    ``end`` never ran). Ray retries the work of a dead worker; the guard lets a stage stop
    retrying a video that kills its workers. Keys are prefixed with the stage's name.
    """

    def __init__(self, ledger: ActorHandle, prefix: str) -> None:
        self.ledger = ledger
        self.prefix = prefix

    def begin(self, key: str) -> int:
        import ray

        return cast(int, ray.get(self.ledger.begin.remote(f"{self.prefix}/{key}")))

    def end(self, key: str) -> None:
        import ray

        # Waited for, so that a retry of this key elsewhere never overtakes it.
        ray.get(self.ledger.end.remote(f"{self.prefix}/{key}"))

    def unfinished(self, key: str) -> int:
        import ray

        return cast(int, ray.get(self.ledger.unfinished.remote(f"{self.prefix}/{key}")))


@contextlib.contextmanager
def attempt_ledger(run_id: str) -> Iterator[ActorHandle]:
    """The run's :class:`AttemptLedger` actor, on the driver's node, ended with the run
    (:func:`~pipeline.execution.ray_runtime.run_actor`)."""
    from pipeline.execution.ray_runtime import run_actor

    with run_actor(AttemptLedger, LEDGER_NAME_PREFIX + run_id) as ledger:
        yield ledger


class RunBookkeeper(AttemptLedger, RaySegmentRendezvous):
    """An index run's attempt ledger and segment rendezvous, run as one actor.

    Each actor is a worker process of its own (about 1.5 CPU-s to start and import Ray, a
    slot among the few worker starts a node makes at once), which on a laptop's few cores
    delays the pipeline's own actors at the start of every run. The two share nothing: their
    methods and their state are apart, and each method still runs one at a time.
    """

    def __init__(self) -> None:
        AttemptLedger.__init__(self)
        RaySegmentRendezvous.__init__(self)


@contextlib.contextmanager
def run_bookkeeper(run_id: str) -> Iterator[ActorHandle]:
    """The index run's :class:`RunBookkeeper` actor, on the driver's node, ended with the run
    (:func:`~pipeline.execution.ray_runtime.run_actor`): the ledger of its crash guards and the
    rendezvous of its segments."""
    from pipeline.execution.ray_runtime import run_actor

    with run_actor(RunBookkeeper, BOOKKEEPER_NAME_PREFIX + run_id) as bookkeeper:
        yield bookkeeper


def run_rows(stage: Stage, batch: pa.Table, schema: pa.Schema = SEGMENT) -> pa.Table:
    """``stage`` called on every row of ``batch``, failures included, as a table of ``schema``
    (segments, or the rows of a stage that makes other rows: clips)."""
    rows: list[SegmentRecord] = []
    for row in batch.to_pylist():
        rows.extend(stage(row))
    return pa.Table.from_pylist(rows, schema=schema)  # type: ignore[arg-type]  # records are dicts


@dataclass(frozen=True)
class Finishing:
    """What the actors of a run's last stage need to stitch videos themselves
    (:class:`~pipeline.execution.assembler.VideoFinisher`): the rows' run and digests, and the
    run's :class:`~pipeline.execution.rendezvous.SegmentRendezvous` actor."""

    run_id: str
    config_digest: str
    derived_digest: str | None
    rendezvous: ActorHandle


@dataclass(frozen=True)
class DriverPlace:
    """Where a run's driver runs: its Ray node and its session. An actor on that node in
    another session (a submitted job's driver has a session of its own) shares the node's
    cores with the driver on equal terms where Linux shares CPU time by session, whatever
    Ray's niceness says (:func:`~pipeline.execution.processes.background_cpu_group`)."""

    node_id: str
    session: int

    @classmethod
    def here(cls) -> DriverPlace:
        """This process's place (call on the driver, with Ray started)."""
        import ray

        return cls(ray.get_runtime_context().get_node_id(), os.getsid(0))

    def beside_in_another_session(self) -> bool:
        """Whether this process (an actor) runs on the driver's node outside its session."""
        import ray

        return ray.get_runtime_context().get_node_id() == self.node_id and os.getsid(0) != self.session


def _driver_to_stay_behind(config: Config | None, pool_size: int) -> DriverPlace | None:
    """The driver's place, for a pool's actors to yield the CPU to it: with
    ``compute.background_actors`` on and more than one actor. A lone actor has nothing to gain:
    no other actor waits for the driver's dispatch while it works."""
    import ray

    if config is None or not config.compute.background_actors or pool_size < 2 or not ray.is_initialized():
        return None
    return DriverPlace.here()


class StageActor:
    """Actor-side wrapper: builds the stage and calls setup() once per actor. With
    ``finishing`` (the last stage), the actor also stitches the videos its segments complete
    and returns :data:`~pipeline.execution.records.FINISHED` records instead of segments.

    The stage is built on a thread of its own, started by the constructor, and each call
    waits for it: Ray Data counts an actor as starting, and hands it no work, until its
    constructor returns, and a model stage's setup (weights, the precision calibration) takes
    seconds to tens of seconds on a small CPU node. Built in the constructor, every segment
    ready before the slower nodes' actors went to the first actor up (a node's worth of
    segments queued on it) while the other nodes waited; returning at once, each actor is
    handed its share as soon as it exists and loads while its segments wait on it. A setup
    that fails raises from every call, as it raised from the constructor before.
    """

    def __init__(
        self,
        stage_cls: type[Stage],
        kwargs: dict[str, Any],
        ledger: ActorHandle | None = None,
        finishing: Finishing | None = None,
        driver: DriverPlace | None = None,
    ) -> None:
        timeline.mark(timeline.ACTOR_UP)
        if driver is not None and in_ray_actor() and driver.beside_in_another_session():
            log.info("beside the run's driver: %s", background_cpu_group())
        self._built = on_own_thread("stage-setup", _build, stage_cls, kwargs, ledger)
        self.finisher: VideoFinisher | None = None
        if finishing is not None:
            outcome = Outcome(kwargs["config"], finishing.run_id, finishing.config_digest, finishing.derived_digest)
            self.finisher = VideoFinisher(outcome, RayGathering(finishing.rendezvous), self._remake)

    @property
    def stage(self) -> Stage:
        """The stage, once set up (waits for it; raises what its setup raised)."""
        return self._built.result()

    def _remake(self, plan: SegmentRecord) -> list[SegmentRecord]:
        return self.stage.remake(plan)

    def __call__(self, batch: pa.Table) -> pa.Table:
        stage = self.stage
        if self.finisher is None:
            out = run_rows(stage, batch)
        else:
            finished = [self.finisher.add(record) for row in batch.to_pylist() for record in stage(row)]
            out = finished_table([video for video in finished if video is not None])
        # A segment's buffers are freed by now; give the pages back so an actor's memory stays
        # at one segment's working set however many segments it has processed.
        release_free_heap()
        return out


def _build(stage_cls: type[Stage], kwargs: dict[str, Any], ledger: ActorHandle | None) -> Stage:
    stage = stage_cls(**kwargs)
    if ledger is not None:
        stage.guard_with(functools.partial(CrashGuard, ledger))
    stage.setup()
    return stage


def apply_stage(
    dataset: Dataset,
    stage_cls: type[Stage],
    kwargs: dict[str, Any],
    resources: Resources,
    pool_size: int = 1,
    min_pool_size: int = 1,
    ledger: ActorHandle | None = None,
    initial_pool_size: int = 1,
    finishing: Finishing | None = None,
    output_schema: pa.Schema = SEGMENT,
    tasks: int | None = None,
    calls: int | None = None,
) -> Dataset:
    """Add ``stage_cls`` to ``dataset`` as a Ray Data ``map_batches`` operator.

    The rule: stateful stages (a model or decoder to keep warm) get an actor pool that
    autoscales between ``min_pool_size`` and ``pool_size`` actors, each running the stage's
    ``concurrent_calls`` calls at once in threads; stateless ones run as tasks. One row per
    batch, because a row is a whole segment (hundreds of frames) and is the unit of failure. A node that dies takes its actors and tasks with it: Ray Data
    restarts pool actors and retries their calls without limit (its defaults for actor
    pools, ``max_restarts=-1``, ``max_task_retries=-1``), and Ray retries tasks three times;
    with a ``ledger`` (:func:`attempt_ledger`), a video that kills its worker
    ``MAX_WORKER_DEATHS`` times fails alone. With ``finishing`` (a stateful last stage only),
    its actors stitch the videos and the operator yields finished videos, not segments. A
    stateless stage whose rows are not segments names their ``output_schema``; ``tasks`` caps
    how many of its tasks run at once (default: as many as the CPUs allow); ``calls`` lowers how
    many calls each actor runs at once below the stage's ``concurrent_calls``
    (:func:`~pipeline.execution.pools.calls_per_actor`).
    """
    import ray.data

    common: dict[str, Any] = {
        "batch_size": 1,
        "batch_format": "pyarrow",
        "num_cpus": resources.num_cpus,
        "zero_copy_batch": True,
    }
    if resources.num_gpus:
        common["num_gpus"] = resources.num_gpus
    if stage_cls.stateful:
        if output_schema is not SEGMENT:
            raise ValueError(f"a stateful stage's actors return segments or finished videos, not {stage_cls.name}'s rows")
        max_size = max(1, min_pool_size, pool_size)
        at_once = stage_cls.concurrent_calls if calls is None else max(1, min(calls, stage_cls.concurrent_calls))
        concurrency: dict[str, Any] = {}
        if at_once > 1:
            # Calls run in threads of the actor, all at once, and no more wait queued on it:
            # Ray Data sends blocks to the actor on the node that holds them while it has room,
            # so a deeper queue let the actor beside the planner take a whole video's segments
            # while another node's actor idled (benchmarks/scaling.py, nodes pinned to cores).
            concurrency = {
                "max_concurrent_calls_per_actor": at_once,
                "enable_true_multi_threading": True,
                "max_tasks_in_flight_per_actor": at_once,
            }
        return dataset.map_batches(
            StageActor,
            fn_constructor_args=(stage_cls, kwargs, ledger, finishing, _driver_to_stay_behind(kwargs.get("config"), max_size)),
            compute=ray.data.ActorPoolStrategy(
                min_size=max(1, min_pool_size),
                max_size=max_size,
                initial_size=min(max(1, min_pool_size, initial_pool_size), max_size),
                **concurrency,
            ),
            **common,
        )
    if finishing is not None:
        raise ValueError(f"only a stateful stage can finish videos, not {stage_cls.name}")
    stage = _build(stage_cls, kwargs, ledger)
    if tasks is not None:
        common["compute"] = ray.data.TaskPoolStrategy(size=tasks)
    return dataset.map_batches(lambda batch: run_rows(stage, batch, output_schema), **common)


__all__ = [
    "BOOKKEEPER_NAME_PREFIX",
    "LEDGER_NAME_PREFIX",
    "AttemptLedger",
    "CrashGuard",
    "DriverPlace",
    "Finishing",
    "RunBookkeeper",
    "StageActor",
    "apply_stage",
    "attempt_ledger",
    "run_bookkeeper",
    "run_rows",
]
