"""Actor pool sizes and per-actor resources, from the settings and the cluster's nodes.

A pure function of each node's resources (``ray.nodes()``-shaped: ``{"CPU": 8, "GPU": 1}``
per alive node, plus the node types an autoscaler can start), so every cluster shape can be
checked without one. Ray places an actor on one node: a request larger than every node never
starts, and Ray Data waits for it forever. The rules:

* without GPUs (and ``compute.fuse_on_cpu``, the default) there is one pool: actors that
  decode and run the networks, each asking for ``compute.model_cpus + compute.decode_cpus``.
  Where no node can hold one of them beside a planning task, the request shrinks to the
  largest node's CPUs less a planning task's share (with a note), but never below
  ``MIN_NETWORK_ACTOR_CPUS``;
* decode actors ask for CPUs only (``compute.decode_cpus`` each);
* model actors ask for ``compute.model_gpus`` of a GPU (fractions share one) when the
  cluster has GPUs or ``inference.device`` is ``cuda``, else ``compute.model_cpus`` CPUs;
* each pool starts with as many actors as fit the alive nodes now (``initial_size``), keeps
  them to the end (``min_size``, the same) and may grow to ``max_size``. Started from one actor,
  the pool never grew on two 1-CPU nodes (one actor did all 6,000 frames of a run, 0.90x of
  one node; ``benchmarks/scaling.py``). A pool size
  set in the config is its ``max_size``; 0 derives it from the nodes: as many actors as pack
  onto the alive nodes, one node at a time, with room left for planning; on CPUs one decode
  actor for every four model actors; then up to four decode actors per model actor in the
  CPUs that remain. Ray Data adds actors only while the cluster has room for them, so a
  ``max_size`` beyond today's cluster is safe on an autoscaling cluster;
* planning tasks and the smallest pools (one decode actor, one model actor) must fit on the
  nodes at once, or Ray Data waits forever for a CPU (two whole-CPU actor stages deadlock a
  2-CPU machine). What can never fit is a ``ConfigError`` that names the resource.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.config import ComputeConfig
from pipeline.errors import ConfigError

#: One node's resources, as ``ray.nodes()[i]["Resources"]`` gives them.
NodeResources = Mapping[str, float]

#: CPUs each planning (probe) task asks for: small, it mostly waits on I/O.
PLAN_CPUS = 0.25
#: Planning tasks at once, per alive node, where Ray Data's per-operator reservations are off
#: (:attr:`PoolPlan.reserve_per_operator`). Each needs a worker process of its own, and while
#: the actors start, Ray Data sees their CPUs as free: uncapped, a run of 60 short clips on
#: one 2-core machine started a planning task for every 8 of them at once (6 CPU-s more of
#: worker processes starting, and the actor up 1.3 s later).
PLAN_TASKS_PER_NODE = 2
#: Decode actors per model actor at most: a GPU model actor can take several decoders' output.
DECODE_ACTORS_PER_MODEL_ACTOR = 4
#: On CPUs the networks, not decoding, set the pace: one decode actor keeps this many busy.
MODEL_ACTORS_PER_DECODE_ACTOR_ON_CPU = 4
#: A request shrunk to fit the nodes never goes below this: the share the two-node cluster
#: test runs the networks with (1-CPU nodes); less would start more actors, each holding both
#: networks in memory, than twice a node's cores.
MIN_NETWORK_ACTOR_CPUS = 0.5
#: Slack for float sums of fractional CPUs.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage asks Ray for."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True)
class Pool:
    """An actor pool's autoscaling bounds and what each of its actors asks for."""

    min_size: int
    max_size: int
    resources: Resources
    #: Actors started at once: those that fit the alive nodes now (at most ``max_size``).
    initial_size: int = 1


@dataclass(frozen=True)
class PoolPlan:
    #: None when the model actors decode too (``compute.fuse_on_cpu`` on a cluster without GPUs).
    decode: Pool | None
    model: Pool
    #: What the plan changed from the settings to fit the nodes, and the settings it leaves unused: for the run's log.
    notes: tuple[str, ...] = ()
    #: Nodes alive when the run planned its pools.
    nodes: int = 1

    @property
    def fused(self) -> bool:
        return self.decode is None

    @property
    def reserve_per_operator(self) -> bool:
        """Whether Ray Data reserves each operator a share of the object store and CPUs
        (its default): not for fused actors on several nodes.

        An operator's outputs get out only within its share, and at a run's start, before Ray
        Data has counted the cluster, a planning task's share is a byte: one planned segment
        got out, the next only when Ray Data found the planner idle (about 10 s on). On two
        1-CPU nodes the second node's actor waited 20-30 s for its first segments and the
        nodes ran one after the other (``benchmarks/scaling.py``: 1.09x of one node; 1.69x
        without). Fused actors leave no queue of decoded frames for the reservation to
        bound: the planned segments (a few hundred bytes each) wait for the actors, and Ray
        Data holds a planner back once its queue is twice what the actors have in hand. On
        one node the reservation stays: there its pacing gave 60 short clips 0.40 s a clip
        against 0.45 without. With a decode pool (GPUs) it bounds the decoded frames to
        ``compute.max_inflight_mb``.
        """
        return not (self.fused and self.nodes > 1)

    @property
    def plan_tasks(self) -> int | None:
        """Planning tasks at once; None leaves them to Ray Data's reservation."""
        return None if self.reserve_per_operator else PLAN_TASKS_PER_NODE * self.nodes

    @property
    def uses_gpu(self) -> bool:
        return self.model.resources.num_gpus > 0


def torch_threads(setting: int, assigned_cpus: float | None, machine_cpus: int) -> int:
    """Torch threads of a model actor: ``compute.model_threads``, or else the CPUs Ray gave the
    actor rounded up (the 1.5-CPU actor of a 2-core machine uses both cores), or else, outside
    Ray, the machine's cores. Every actor taking every core of its node oversubscribed it: five
    actors of 1.5 CPU on an 8-core node would have run 40 threads, two 1-CPU nodes on one
    2-core machine 4."""
    if setting:
        return setting
    if assigned_cpus:
        return max(1, math.ceil(assigned_cpus - _EPSILON))
    return max(1, machine_cpus)


def calls_per_actor(stage_calls: int, network_threads: int) -> int:
    """Calls a model actor runs at once: the stage's ``stage_calls`` (the fused stage's two, one
    segment decoding while the other is in the networks), but one where the actor runs its
    networks on a single thread (:func:`torch_threads`: a 1-CPU actor, or
    ``compute.model_threads: 1``).

    With one thread the two calls take turns on one core, and hold two segments' working sets
    at once for nothing: a 10-minute 480p clip on a 1-CPU node (``benchmarks/scaling.py``, node
    pinned to a core) took 121.3, 121.4 and 122.6 s with one call at a time against 148.6,
    143.6, 136.5 and 120.1 s with two (actor 93-95 CPU-s against 94-112).
    """
    return stage_calls if network_threads > 1 else 1


def plan_pools(
    compute: ComputeConfig,
    nodes: Sequence[NodeResources],
    node_types: Sequence[NodeResources] = (),
    *,
    device: str = "auto",
) -> PoolPlan:
    """Pool bounds and resources for a cluster of ``nodes`` (alive) that can add ``node_types``,
    for models on ``device`` (the ``inference.device`` setting).

    ``node_types`` are the shapes of the nodes the cluster's autoscaler can start (none
    without one): a request that fits only those waits for the autoscaler instead of failing.
    """
    shapes = [*nodes, *node_types]
    gpus = sum(_gpus(node) for node in nodes)
    use_gpu = device == "cuda" or (device == "auto" and gpus > 0)
    if not use_gpu and compute.fuse_on_cpu:
        return _fused_plan(compute, nodes, node_types)
    if use_gpu:
        if not any(_gpus(shape) > 0 for shape in shapes):
            raise ConfigError(
                f"inference.device is cuda but no node has a GPU ({_describe(nodes, node_types)}): "
                "set inference.device to auto or cpu, or add GPU nodes"
            )
        # On a GPU the model actor only feeds the device: at most one CPU for it.
        model = Resources(num_cpus=min(1.0, compute.model_cpus), num_gpus=compute.model_gpus)
        _check_fits(model, "a model actor", "compute.model_cpus", nodes, node_types)
        derived = _packed(model, nodes)
    else:
        model = Resources(num_cpus=compute.model_cpus)
        _check_fits(model, "a model actor", "compute.model_cpus", nodes, node_types)
        cpus = sum(_cpus(node) for node in nodes)
        per_model_actor = compute.model_cpus + compute.decode_cpus / MODEL_ACTORS_PER_DECODE_ACTOR_ON_CPU
        derived = min(math.floor((cpus - PLAN_CPUS) / per_model_actor + _EPSILON), _packed(model, nodes))
    decode = Resources(num_cpus=compute.decode_cpus)
    _check_fits(decode, "a decode actor", "compute.decode_cpus", nodes, node_types)
    plan = Resources(num_cpus=PLAN_CPUS)
    if not _fit_at_once([model, decode, plan], nodes, node_types):  # the pools' first actors would wait forever
        raise ConfigError(
            f"one decode actor ({compute.decode_cpus:g} CPU), one model actor ({_format(model)}) and planning "
            f"({PLAN_CPUS:g} CPU) need {PLAN_CPUS + decode.num_cpus + model.num_cpus:g} CPUs at once but the "
            f"cluster has {_describe(nodes, node_types)}: lower compute.decode_cpus or compute.model_cpus, or add CPUs"
        )
    model_max = compute.model_actors or max(1, derived)
    left = sum(_cpus(node) for node in nodes) - PLAN_CPUS - model_max * model.num_cpus
    fitting_decoders = max(
        1,
        min(
            DECODE_ACTORS_PER_MODEL_ACTOR * model_max,
            math.floor(left / compute.decode_cpus + _EPSILON),
            _packed(decode, nodes),
        ),
    )
    decode_max = compute.decode_actors or fitting_decoders
    return PoolPlan(
        decode=_kept(decode_max, decode, fitting_decoders),
        model=_kept(model_max, model, derived),
        nodes=max(1, len(nodes)),
    )


def _kept(max_size: int, resources: Resources, fitting: int) -> Pool:
    """A pool that starts with the actors that fit the alive nodes now and keeps them to the
    end: Ray Data's autoscaler removes actors it finds idle, and on two 1-CPU nodes it removed
    the second node's actor while the first still had most of a video's segments to run
    (``benchmarks/scaling.py``: 82.3 and 3.2 actor CPU-s)."""
    initial = max(1, min(max_size, fitting))
    return Pool(initial, max_size, resources, initial_size=initial)


def _fused_plan(
    compute: ComputeConfig, nodes: Sequence[NodeResources], node_types: Sequence[NodeResources]
) -> PoolPlan:
    asked = compute.model_cpus + compute.decode_cpus
    worker, notes = Resources(num_cpus=asked), list[str]()
    if compute.decode_actors:
        notes.append("compute.decode_actors is unused: without GPUs the model actors decode (compute.fuse_on_cpu)")
    if not _fit_at_once([worker, Resources(num_cpus=PLAN_CPUS)], nodes, node_types):
        largest = max((_cpus(shape) for shape in [*nodes, *node_types]), default=0.0)
        shrunk = largest - PLAN_CPUS
        if shrunk < MIN_NETWORK_ACTOR_CPUS - _EPSILON:
            raise ConfigError(
                f"an actor that decodes and runs the models ({asked:g} CPU: compute.model_cpus + compute.decode_cpus, "
                f"at least {MIN_NETWORK_ACTOR_CPUS:g}) and planning ({PLAN_CPUS:g} CPU) need "
                f"{MIN_NETWORK_ACTOR_CPUS + PLAN_CPUS:g} CPUs on one node but the cluster has "
                f"{_describe(nodes, node_types)}: add CPUs"
            )
        worker = Resources(num_cpus=shrunk)
        notes.append(
            f"each actor that decodes and runs the models asks for {shrunk:g} CPU instead of {asked:g} "
            f"(compute.model_cpus + compute.decode_cpus): no node has room for {asked:g} CPU beside planning "
            f"({PLAN_CPUS:g} CPU); the cluster has {_describe(nodes, node_types)}"
        )
    derived = _packed(worker, nodes, leave_for_planning=True)
    model_max = compute.model_actors or max(1, derived)
    return PoolPlan(decode=None, model=_kept(model_max, worker, derived), notes=tuple(notes), nodes=max(1, len(nodes)))


def _cpus(node: NodeResources) -> float:
    return float(node.get("CPU", 0))


def _gpus(node: NodeResources) -> float:
    return float(node.get("GPU", 0))


def _holds(node: tuple[float, float], request: Resources) -> bool:
    return request.num_cpus <= node[0] + _EPSILON and request.num_gpus <= node[1] + _EPSILON


def _packed(request: Resources, nodes: Sequence[NodeResources], leave_for_planning: bool = False) -> int:
    """How many actors of ``request`` fit on ``nodes``, each node on its own.

    With ``leave_for_planning``, one actor fewer where no node would keep a planning task's
    CPUs free (an actor's CPUs are at least that, so one fewer always makes the room).
    """
    counts, spare = 0, 0.0
    for node in nodes:
        fits = _cpus(node) / request.num_cpus  # the settings keep every CPU request positive
        if request.num_gpus > 0:
            fits = min(fits, _gpus(node) / request.num_gpus)
        count = math.floor(fits + _EPSILON)
        counts += count
        spare = max(spare, _cpus(node) - count * request.num_cpus)
    if leave_for_planning and counts and spare < PLAN_CPUS - _EPSILON:
        counts -= 1
    return counts


def _fit_at_once(requests: list[Resources], nodes: Sequence[NodeResources], node_types: Sequence[NodeResources]) -> bool:
    """Whether one of each request can run at the same time, on the nodes or on new nodes of ``node_types``."""
    free = [(_cpus(node), _gpus(node)) for node in nodes]
    fresh = [(_cpus(shape), _gpus(shape)) for shape in node_types]
    ordered = sorted(requests, key=lambda r: (r.num_gpus, r.num_cpus), reverse=True)

    def place(index: int, free: list[tuple[float, float]]) -> bool:
        if index == len(ordered):
            return True
        request, tried = ordered[index], set()
        # A node of each type not started yet is one more place to try.
        for slot, node in enumerate([*free, *fresh]):
            if node in tried or not _holds(node, request):
                continue  # the same free resources were already tried at this step
            tried.add(node)
            left = (node[0] - request.num_cpus, node[1] - request.num_gpus)
            rest = [*free[:slot], left, *free[slot + 1 :]] if slot < len(free) else [*free, left]
            if place(index + 1, rest):
                return True
        return False

    return place(0, free)


def _check_fits(
    request: Resources,
    what: str,
    cpu_setting: str,
    nodes: Sequence[NodeResources],
    node_types: Sequence[NodeResources],
) -> None:
    """A ConfigError naming the resource when no node, started or startable, can hold ``request``."""
    shapes = [*nodes, *node_types]
    if any(_holds((_cpus(shape), _gpus(shape)), request) for shape in shapes):
        return
    if request.num_gpus > 0 and not any(_gpus(shape) + _EPSILON >= request.num_gpus for shape in shapes):
        # only model actors ask for GPUs
        largest, resource, setting = max(_gpus(shape) for shape in shapes), "GPU", "compute.model_gpus"
        asked = request.num_gpus
    else:
        largest = max((_cpus(shape) for shape in shapes if _gpus(shape) + _EPSILON >= request.num_gpus), default=0.0)
        resource, asked, setting = "CPU", request.num_cpus, cpu_setting
    node = "GPU node" if resource == "CPU" and request.num_gpus > 0 else "node"
    raise ConfigError(
        f"{what} asks for {asked:g} {resource} ({setting}) but the largest {node} has {largest:g} {resource} "
        f"({_describe(nodes, node_types)}): lower {setting}, or add nodes with more {resource}"
    )


def _format(request: Resources) -> str:
    return f"{request.num_cpus:g} CPU" + (f" and {request.num_gpus:g} GPU" if request.num_gpus else "")


def _describe(nodes: Sequence[NodeResources], node_types: Sequence[NodeResources]) -> str:
    """``2 nodes: 1 CPU, 1 CPU`` (and what the autoscaler can add), for error messages."""

    def shape(node: NodeResources) -> str:
        return f"{_cpus(node):g} CPU" + (f" {_gpus(node):g} GPU" if _gpus(node) else "")

    text = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}" + (
        ": " + ", ".join(shape(node) for node in nodes) if nodes else ""
    )
    if node_types:
        text += "; node types it can add: " + ", ".join(shape(node) for node in node_types)
    return text


__all__ = [
    "DECODE_ACTORS_PER_MODEL_ACTOR",
    "MIN_NETWORK_ACTOR_CPUS",
    "MODEL_ACTORS_PER_DECODE_ACTOR_ON_CPU",
    "PLAN_CPUS",
    "PLAN_TASKS_PER_NODE",
    "NodeResources",
    "Pool",
    "PoolPlan",
    "Resources",
    "calls_per_actor",
    "plan_pools",
]
