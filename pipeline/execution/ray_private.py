"""Every use of Ray's private names, in one place, behind the Ray versions vindex is tested with.

Ray (2.60) has no public switch for four things vindex does, so each reaches a name of
``ray._private``, which any Ray release may rename or drop:

- :func:`loopback_only`, the embedded node on loopback: ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``,
  read by ``ray._private.services.get_node_ip_address``. On Linux Ray replaces a node address
  of 127.0.0.1 with the host's network address (and its servers then listen on every
  interface) unless this is False. Without it vindex cannot keep the node on loopback, so the
  start is refused (:class:`~pipeline.errors.NetworkExposureError`): it never fails open.
- :func:`lean_processes`, the embedded node without the head's helper processes a run on one
  machine never uses: the ``no_monitor`` and ``include_log_monitor`` parameters of
  ``ray._private.parameter.RayParams``, and ``ray._private.node.Node.start_api_server``. Where
  they are missing Ray starts its usual processes, with a warning: that costs start-up time only.
- :func:`emit_blocks_ahead`, how many blocks a Ray Data task may emit before the executor
  takes them: ``DataContext._max_num_blocks_in_streaming_gen_buffer`` (2 by default; the
  per-operator way, ``_generator_backpressure_num_objects`` among ``map_batches``' remote
  arguments, is deprecated and warns on the console). Where it is missing, a planning task
  pauses after two segments and the rest reach the actors late, with a warning.
- :func:`autoscaler_node_types`, the node types a cluster's autoscaler may start:
  ``ray._private.state.state.get_cluster_config`` (Ray Data reads them the same way). Where it
  is missing, pools are planned for the alive nodes only, with a warning.

:data:`TESTED_RAY` is pyproject's range for Ray (a test holds the two equal). A Ray outside it
is used with a warning; each switch still checks the names it needs, and the embedded start
then checks that every socket of Ray's processes listens on loopback
(``pipeline.execution.ray_runtime``).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from typing import Any

from pipeline.errors import NetworkExposureError

log = logging.getLogger(__name__)

#: The Ray versions vindex is tested with, as pyproject's dependency states them.
TESTED_RAY = ">=2.60,<2.61"
#: What to install where Ray is outside :data:`TESTED_RAY`.
TESTED_RAY_INSTALL = f"pip install 'ray[data,default]{TESTED_RAY}'"

_version_checked = False


def ray_version_is_tested(version: str) -> bool:
    """Whether ``version`` lies in :data:`TESTED_RAY` (pre-releases of a tested version included)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(TESTED_RAY).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def check_ray_version() -> None:
    """Warn, once a process, where the installed Ray lies outside :data:`TESTED_RAY`."""
    global _version_checked
    if _version_checked:
        return
    import ray

    _version_checked = True
    if not ray_version_is_tested(ray.__version__):
        log.warning(
            "Ray %s is outside the versions vindex is tested with (ray%s): its private switches are "
            "checked as they are used; to be safe, %s",
            ray.__version__,
            TESTED_RAY,
            TESTED_RAY_INSTALL,
        )


def _missing(name: str, purpose: str) -> str:
    import ray

    return (
        f"Ray {ray.__version__} has no {name}, which vindex uses to {purpose}; vindex is tested with "
        f"ray{TESTED_RAY}: {TESTED_RAY_INSTALL}"
    )


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Have ``ray.init`` keep a node address of 127.0.0.1 instead of the host's network address.

    Ray's cluster mode is off on macOS and Windows (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``,
    read once when ray is imported): the module value is set here, for the start-up only, so a
    later ``ray.init`` of a cluster is unaffected. Raises :class:`NetworkExposureError`, before
    anything starts, where this Ray no longer has the switch or no longer reads it where the node
    address is decided.
    """
    check_ray_version()
    purpose = "keep an embedded Ray's servers on loopback"
    try:
        from ray._private import ray_constants, services
    except ImportError as exc:
        raise NetworkExposureError(_missing("ray._private.ray_constants or ray._private.services", purpose)) from exc
    if not isinstance(getattr(ray_constants, "ENABLE_RAY_CLUSTER", None), bool):
        raise NetworkExposureError(_missing("ray._private.ray_constants.ENABLE_RAY_CLUSTER", purpose))
    # Setting a name nothing reads would fail open: the function that picks the node address
    # must still read this one.
    reader = getattr(services, "get_node_ip_address", None)
    code = getattr(reader, "__code__", None)
    if code is None or "ENABLE_RAY_CLUSTER" not in code.co_names:
        raise NetworkExposureError(
            _missing("ray._private.services.get_node_ip_address reading ENABLE_RAY_CLUSTER", purpose)
        )
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextlib.contextmanager
def lean_processes(forward_worker_output: bool) -> Iterator[None]:
    """Have ``ray.init`` start an embedded node without the head's helper processes a run on
    one machine never uses:

    - the autoscaler's monitor: an embedded node has no node types to scale (and at shutdown
      it ignores SIGTERM, so Ray waits its whole second of grace before killing it);
    - the API server (the dashboard's head process, started even with ``include_dashboard=False``,
      and ``ray.init`` waits until it has published its address): it serves the dashboard, job
      submission and the state API, none of which an embedded run offers;
    - the log monitor, unless workers' output is forwarded to the driver (Ray's lines shown).

    Each is a Python process that imports Ray on a 2-core laptop while the run's own workers
    start (``benchmarks/startup.py``). The node's parameters get ``no_monitor`` and
    ``include_log_monitor`` (``ray start --no-monitor`` sets the same), and the API server's
    start is skipped for the duration. What this Ray lacks starts as usual, with a warning.
    """
    check_ray_version()
    purpose = "start an embedded Ray without the helper processes a run does not use (a slower start follows)"
    try:
        from ray._private import node, parameter
    except ImportError:
        log.warning(_missing("ray._private.node or ray._private.parameter", purpose))
        yield
        return
    params_init = parameter.RayParams.__init__
    start_api_server = getattr(node.Node, "start_api_server", None)
    accepted = inspect.signature(params_init).parameters
    wanted = {"no_monitor": True} if forward_worker_output else {"no_monitor": True, "include_log_monitor": False}
    lean = {name: value for name, value in wanted.items() if name in accepted}
    for name in (name for name in wanted if name not in lean):
        log.warning(_missing(f"ray._private.parameter.RayParams parameter {name!r}", purpose))
    if start_api_server is None:
        log.warning(_missing("ray._private.node.Node.start_api_server", purpose))

    def lean_params(self: Any, *args: Any, **kwargs: Any) -> None:
        params_init(self, *args, **{**lean, **kwargs})

    def no_api_server(self: Any, *args: Any, **kwargs: Any) -> None:
        log.debug("embedded Ray: no API server (dashboard head)")

    parameter.RayParams.__init__ = lean_params  # type: ignore[method-assign]
    if start_api_server is not None:
        node.Node.start_api_server = no_api_server  # type: ignore[method-assign]
    try:
        yield
    finally:
        parameter.RayParams.__init__ = params_init  # type: ignore[method-assign]
        if start_api_server is not None:
            node.Node.start_api_server = start_api_server  # type: ignore[method-assign]


#: Blocks a Ray Data task may emit before the executor has taken them (Ray's default: 2).
TASK_BLOCKS_AHEAD = 1024


def emit_blocks_ahead(context: Any, blocks: int = TASK_BLOCKS_AHEAD) -> None:
    """Let a task of ``context`` (a Ray Data ``DataContext``) emit ``blocks`` blocks before Ray
    pauses it for the executor to take them.

    A planning task emits a long video's segments all at once, a few hundred bytes each; paused
    after two, the rest waited until the actors that took those had finished them, and on two
    1-CPU nodes the second node's actor sat idle (``benchmarks/scaling.py``). Every other task
    and actor call of a run emits one block per input, which this does not change: Ray Data
    estimates a task's pending output from the blocks its tasks emit, at most this many.
    """
    name = "_max_num_blocks_in_streaming_gen_buffer"
    if not hasattr(context, name):
        log.warning(_missing(f"ray.data.DataContext.{name}", "hand a long video's planned segments out at once"))
        return
    setattr(context, name, blocks)


def autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of each node type the cluster's autoscaler may start; none without an autoscaler.

    The autoscaler publishes its node groups in the GCS. Where this Ray cannot read them, pools
    are planned for the alive nodes only, with a warning.
    """
    check_ray_version()
    try:
        from ray._private.state import state

        get_cluster_config = state.get_cluster_config
    except (ImportError, AttributeError):
        log.warning(
            _missing(
                "ray._private.state.state.get_cluster_config",
                "read the node types an autoscaler may start (pools are sized for the alive nodes)",
            )
        )
        return []
    cluster_config = get_cluster_config()
    if cluster_config is None:
        return []
    return [
        {name: float(amount) for name, amount in group.resources.items()}
        for group in cluster_config.node_group_configs
        if group.max_count != 0 and group.resources
    ]
