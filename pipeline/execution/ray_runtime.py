"""Starting, joining and configuring Ray: an embedded local Ray for `vindex run`, or the cluster of a job.

The one module that calls ``ray.init`` and sets Ray Data's ``DataContext``. An embedded Ray
is started with Ray's private switches (``pipeline.execution.ray_private``, the only module
that reaches Ray's private names) and then checked to listen on loopback only. It also decides
how much of Ray's own logging reaches the run's output: at vindex's default log levels only
vindex's progress and summary do (Ray's lines go to its session log files); at DEBUG,
Ray's warnings and its core's error lines come back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from pipeline.config import Config
from pipeline.errors import NetworkExposureError
from pipeline.execution import listening, ray_private
from pipeline.execution.pools import PoolPlan, plan_pools
from pipeline.execution.processes import descendants

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import Dataset

log = logging.getLogger(__name__)

#: The embedded Ray's node address. Ray's servers listen on loopback only when their node's
#: address is exactly this one; any other address, other loopback addresses included, makes
#: them listen on every interface (measured on Ray 2.60: with 127.0.0.2 the GCS, the raylet's
#: node and object managers, every worker, the agents' gRPC servers and the metrics ports
#: listened on 0.0.0.0 or ::).
LOCAL_NODE_IP = "127.0.0.1"

#: Ray Data's target block size for a run: one byte, below any row, so every block holds one row.
#: A decoded segment (about 6 MB of 48x27 shot frames plus the sampled frames) is one row, and
#: so is a planned segment (a few hundred bytes): at the old 1 MiB, an hour-long video's
#: segments left planning in one block, and Ray Data hands a whole block to one actor, so a
#: second node's actor sat idle (``benchmarks/scaling.py``).
SEGMENT_BLOCK_BYTES = 1

#: The "ray" Python logger's level when Ray's lines are shown (vindex at DEBUG): its warnings.
RAY_VERBOSE_LEVEL = logging.WARNING
#: ... and otherwise: errors only. Its warnings are notes to Ray users (token authentication
#: off or on by default, progress bars disabled), not about the run.
RAY_QUIET_LEVEL = logging.ERROR
#: Ray Data's own level for its console lines (a dataset's execution finished), kept when
#: Ray's lines are shown.
RAY_DATA_CONSOLE_LEVEL = logging.INFO
#: The C++ core's log level when Ray is quiet. The driver's core writes its ERROR lines to the
#: driver's stderr, and Ray Data's actor pools cause one for every actor they start
#: (``core_worker.cc``: "has constructor arguments in the object store and max_restarts > 0",
#: Ray 2.60, ray-project/ray#53727: Ray Data always passes its map function by reference, and
#: restarts pool actors) though nothing is wrong. Only fatal errors are kept.
RAY_QUIET_BACKEND_LEVEL = "fatal"
#: The environment variable each of Ray's processes reads its C++ log level from as it starts.
BACKEND_LOG_LEVEL_ENV = "RAY_BACKEND_LOG_LEVEL"
#: What the C++ core prints on stderr, whatever the level, when it reads that variable.
BACKEND_LEVEL_ANNOUNCEMENT = "Set ray log level from environment variable " + BACKEND_LOG_LEVEL_ENV


def ray_is_quiet() -> bool:
    """Whether Ray's own lines stay out of the run's output: unless vindex logs at DEBUG."""
    return not logging.getLogger("pipeline").isEnabledFor(logging.DEBUG)


def _init(**kwargs: Any) -> None:
    """``ray.init`` with the run's share of Ray's logging.

    Quiet (vindex above DEBUG): Ray's Python loggers at errors, its C++ core at fatal, and
    workers' output left in the session's log files instead of copied to the driver
    (``log_to_driver``): there it would carry each worker's announcement of its C++ level.
    Vindex's own failures reach the run's summary either way. At DEBUG, Ray's defaults.
    """
    import ray

    if not ray_is_quiet():
        ray.init(logging_level=RAY_VERBOSE_LEVEL, **kwargs)
        return
    with _backend_level(RAY_QUIET_BACKEND_LEVEL), _announcement_dropped():
        ray.init(logging_level=RAY_QUIET_LEVEL, log_to_driver=False, **kwargs)


@contextlib.contextmanager
def _backend_level(level: str) -> Iterator[None]:
    """Ray's C++ core at ``level`` in the processes started meanwhile: the driver's core
    worker and, for an embedded Ray, the GCS, the raylet and (through the raylet) the
    workers. A level set in the environment is left alone."""
    if BACKEND_LOG_LEVEL_ENV in os.environ:
        yield
        return
    os.environ[BACKEND_LOG_LEVEL_ENV] = level
    try:
        yield
    finally:
        os.environ.pop(BACKEND_LOG_LEVEL_ENV, None)


@contextlib.contextmanager
def _announcement_dropped() -> Iterator[None]:
    """The process's stderr (file descriptor 2) held while Ray starts, then written back
    without the C++ core's announcement of its log level (:data:`BACKEND_LEVEL_ANNOUNCEMENT`).

    The core writes to the descriptor itself, below Python's ``sys.stderr``; only the start
    is held, so a run's progress still reaches the terminal as it happens.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if BACKEND_LEVEL_ANNOUNCEMENT not in line:
                    sys.stderr.write(line)
            sys.stderr.flush()


def init_local_ray(**kwargs: Any) -> None:
    """Start an embedded Ray whose every server listens on loopback only, with only the
    processes a run on one machine needs (see :func:`pipeline.execution.ray_private.lean_processes`).

    Raises :class:`NetworkExposureError`, with Ray stopped, where the node would reach beyond
    loopback (see :func:`check_loopback_only`).
    """
    kwargs.setdefault("_node_ip_address", LOCAL_NODE_IP)
    before = held_before_start()
    with ray_private.loopback_only(), ray_private.lean_processes(forward_worker_output=not ray_is_quiet()):
        _init(address="local", include_dashboard=False, configure_logging=True, **kwargs)
    try:
        check_loopback_only(before)
    except NetworkExposureError:
        import ray

        ray.shutdown()
        raise


@dataclass(frozen=True)
class HeldBeforeStart:
    """What this process and its children held before Ray started: not Ray's, so not checked."""

    children: frozenset[int]
    sockets: frozenset[int]


def held_before_start() -> HeldBeforeStart | None:
    """This process's children and listening sockets now; None where /proc shows no sockets."""
    if not listening.can_list():
        return None
    me = os.getpid()
    return HeldBeforeStart(frozenset(descendants(me)), frozenset(s.inode for s in listening.listeners([me])))


def check_loopback_only(before: HeldBeforeStart | None) -> None:
    """Raise :class:`NetworkExposureError` unless the embedded node's address is 127.0.0.1 and
    every listening socket of Ray's processes is on loopback.

    Ray's processes: this one (the driver's core worker serves gRPC) and those below it that
    were not there before the start (the GCS, the raylet and, below the raylet, the workers and
    agents), less the sockets this process already held. Both checks catch a loopback switch
    that failed: the node's address decides where every later worker listens, the sockets show
    what listens now. Reading them from /proc costs milliseconds (measured on a shared 2-core
    machine: 2-4 ms before the start, 7-12 ms after it, for 5 processes). Where /proc shows no
    sockets (not Linux), only the address is checked: Ray's cluster mode is off there anyway.
    """
    from ray.util import get_node_ip_address

    node_ip = get_node_ip_address()
    if node_ip != LOCAL_NODE_IP:
        raise NetworkExposureError(
            f"the embedded Ray's node address is {node_ip}, not {LOCAL_NODE_IP}: its servers would listen "
            f"on every network interface, so Ray was stopped{_tested_ray_hint()}"
        )
    if before is None:
        log.debug("embedded Ray: this system shows no sockets in /proc; only the node address was checked")
        return
    me = os.getpid()
    ray_pids = [me, *(pid for pid in descendants(me) if pid not in before.children)]
    try:
        exposed = listening.beyond_loopback(ray_pids, known=before.sockets)
    except PermissionError as exc:
        raise NetworkExposureError(
            f"cannot read the sockets of the embedded Ray's processes ({exc}), so Ray was stopped"
        ) from exc
    if exposed:
        raise NetworkExposureError(
            "the embedded Ray listened beyond loopback, so Ray was stopped: "
            + "; ".join(s.describe() for s in exposed)
            + _tested_ray_hint()
        )
    log.debug("embedded Ray: every listening socket of its %d processes is on loopback", len(ray_pids))


def _tested_ray_hint() -> str:
    """What to install, where this Ray is not one vindex is tested with."""
    import ray

    if ray_private.ray_version_is_tested(ray.__version__):
        return ""
    tested = f"vindex is tested with ray{ray_private.TESTED_RAY}: {ray_private.TESTED_RAY_INSTALL}"
    return f" (Ray {ray.__version__}; {tested})"


def init_ray(config: Config) -> None:
    """Join RAY_ADDRESS when set (a cluster job); otherwise start an embedded Ray."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        _init(address=address)
    else:
        init_local_ray(object_store_memory=config.compute.embedded_object_store_mb * 2**20)
        global _embedded_started
        _embedded_started = True


#: Whether :func:`init_ray` started the embedded Ray this process runs (not a cluster's).
_embedded_started = False


def stop_embedded_ray() -> None:
    """Stop the embedded Ray :func:`init_ray` started, if any; a cluster is left alone.

    A command calls this once its run is over, after its summary (flushed first, so the user
    reads it while Ray stops). Left to the interpreter's exit, Ray's own shutdown first sleeps
    half a second for worker lines still on their way to the driver's console, which a run
    keeps in Ray's log files anyway.
    """
    global _embedded_started
    if not _embedded_started:
        return
    import ray

    sys.stdout.flush()
    _embedded_started = False
    if ray.is_initialized():
        ray.shutdown()


def end_process(code: int) -> NoReturn:
    """End this process with exit status ``code`` once its command has returned: Ray
    disconnected where this process joined one (its shutdown waits for worker lines still on
    their way), logs and output flushed, then the process ends without the interpreter's own
    teardown.

    That teardown does nothing a finished command needs (every command writes and cleans up
    inside its own ``with`` blocks, and stops an embedded Ray itself), yet it unloads Ray,
    Arrow and the rest module by module: 0.9 s for a job's driver on a 1-CPU head node, which
    ``vindex submit --wait`` and the cluster's next job waited out, and 0.45 s after
    ``vindex run``. A command that raises never gets here, and ends as Python ends it,
    traceback included.
    """
    if "ray" in sys.modules:  # never imported just to be stopped
        import ray

        if ray.is_initialized():
            ray.shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing to keep
            stream.flush()
    os._exit(code)


def configure_data(config: Config, *, reserve_per_operator: bool = True) -> None:
    """Ray Data's settings for a run, on the driver's current ``DataContext``;
    ``reserve_per_operator`` as the run's pools ask
    (:attr:`~pipeline.execution.pools.PoolPlan.reserve_per_operator`)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    # Decoding runs ahead of the slower model stage; bound how much decoded data may queue in
    # the object store, so that it does not grow with the length of the corpus.
    context.execution_options.resource_limits = ray.data.ExecutionResources(
        object_store_memory=config.compute.max_inflight_mb * 2**20
    )
    # Ship each segment as its own block. A map task or actor call takes a whole input block
    # (planning turns an hour-long video into dozens of segment rows) and buffers its output up
    # to this size before handing it on: at the 128 MB default, a decode task decoded segment
    # after segment into its own heap and the object store, out of reach of the backpressure
    # above, which can pause a task only between blocks; and one actor got all of a video.
    context.target_max_block_size = SEGMENT_BLOCK_BYTES
    context.op_resource_reservation_enabled = reserve_per_operator  # the one context: set each run
    ray_private.emit_blocks_ahead(context)
    _quiet_data_console()


def dataset_of(tables: list[pa.Table]) -> Dataset:
    """A dataset of ``tables``, one block each, described on the driver.

    ``ray.data.from_arrow`` sends each table to a remote task for its row count and schema;
    on a node just started every such task waits for a worker process to start (about 1.5
    CPU-s each, taken from the run's own actors while they start). Here the driver describes
    the blocks itself.
    """
    import ray.data

    return ray.data.from_blocks(tables)


def _quiet_data_console() -> None:
    """Ray Data's console lines (dataset finished, progress bars disabled) only at DEBUG.

    Ray Data logs to its own handlers on the "ray.data" logger, set up when it is imported:
    one writes the session's ``ray-data.log`` (kept whole), one the console, at INFO.
    """
    level = RAY_QUIET_LEVEL if ray_is_quiet() else RAY_DATA_CONSOLE_LEVEL
    for handler in ray_data_console_handlers():
        handler.setLevel(level)


def ray_data_console_handlers() -> list[logging.Handler]:
    """Ray Data's console handlers: its stream handlers that are not files (the session log
    must keep every line). A process that starts Ray again may hold several."""
    return [
        handler
        for handler in logging.getLogger("ray.data").handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]


def pool_sizes(config: Config) -> PoolPlan:
    """Actor pool bounds and resources for the nodes this run is on (rules in pipeline.execution.pools)."""
    import ray

    # Each node's own resources, not the cluster's total: an actor runs on one node, and one
    # that asks for more than any node has never starts (measured: two 1-CPU nodes, a 1.5-CPU
    # actor, and the autoscaler repeating "No available node types can fulfill resource request").
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    plan = plan_pools(config.compute, nodes, autoscaler_node_types(), device=config.inference.device)
    for note in plan.notes:
        log.warning(note)
    return plan


def autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of each node type the cluster's autoscaler may start; none without an autoscaler."""
    return ray_private.autoscaler_node_types()


@contextlib.contextmanager
def run_actor(cls: type, name: str) -> Iterator[Any]:
    """An actor of ``cls`` (a plain class) named ``name``, for the length of a run: on the
    driver's node, since a run cannot outlive that node anyway, and with no CPU, so that it
    takes nothing from the pools sized to fill the nodes; killed on the way out."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor_cls: Any = ray.remote(cls)
    actor = actor_cls.options(name=name, num_cpus=0, scheduling_strategy=here).remote()
    try:
        yield actor
    finally:
        ray.kill(actor)
