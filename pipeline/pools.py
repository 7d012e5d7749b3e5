"""Actor pool sizes and per-actor resources, from the settings and the cluster's resources.

A pure function of ``ray.cluster_resources()``-shaped data, so every cluster shape can be
checked without one. The rules:

* without GPUs (and ``compute.fuse_on_cpu``, the default) there is one pool: actors that
  decode and run the networks, each asking for ``compute.model_cpus + compute.decode_cpus``,
  as many as fit (or ``compute.model_actors``);
* decode actors ask for CPUs only (``compute.decode_cpus`` each);
* model actors ask for ``compute.model_gpus`` of a GPU (fractions share one) when the
  cluster has GPUs or ``compute.device`` is ``cuda``, else ``compute.model_cpus`` CPUs;
* each pool autoscales between ``min_size`` (one actor) and ``max_size`` actors. A pool size
  set in the config is its ``max_size``; 0 derives it from the cluster: one model actor per
  GPU share, or on CPUs as many model actors as fit with one decode actor for every four
  of them; then up to four decode actors per model actor in the CPUs that remain. Ray Data
  adds actors only while the cluster has room for them, so a ``max_size`` beyond today's
  cluster is safe on an autoscaling cluster;
* planning tasks and the smallest pools (one decode actor, one model actor) must fit at
  once, or Ray Data waits forever for a CPU (two whole-CPU actor stages deadlock a 2-CPU
  machine).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.config import ComputeConfig
from pipeline.errors import ConfigError
from pipeline.stages import Resources

#: CPUs each planning (probe) task asks for: small, it mostly waits on I/O.
PLAN_CPUS = 0.25
#: Decode actors per model actor at most: a GPU model actor can take several decoders' output.
DECODE_ACTORS_PER_MODEL_ACTOR = 4
#: On CPUs the networks, not decoding, set the pace: one decode actor keeps this many busy.
MODEL_ACTORS_PER_DECODE_ACTOR_ON_CPU = 4
#: Slack for float sums of fractional CPUs.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Pool:
    """An actor pool's autoscaling bounds and what each of its actors asks for."""

    min_size: int
    max_size: int
    resources: Resources


@dataclass(frozen=True)
class PoolPlan:
    #: None when the model actors decode too (``compute.fuse_on_cpu`` on a cluster without GPUs).
    decode: Pool | None
    model: Pool

    @property
    def fused(self) -> bool:
        return self.decode is None

    @property
    def uses_gpu(self) -> bool:
        return self.model.resources.num_gpus > 0


def plan_pools(compute: ComputeConfig, cluster: Mapping[str, float]) -> PoolPlan:
    """Pool bounds and resources for a cluster with ``cluster`` resources (``{"CPU": 8, "GPU": 1}``)."""
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    use_gpu = compute.device == "cuda" or (compute.device == "auto" and gpus > 0)
    if not use_gpu and compute.fuse_on_cpu:
        return _fused_plan(compute, cpus)
    if use_gpu:
        # On a GPU the model actor only feeds the device: at most one CPU for it.
        model = Resources(num_cpus=min(1.0, compute.model_cpus), num_gpus=compute.model_gpus)
        derived = math.floor(gpus / compute.model_gpus + _EPSILON)
    else:
        model = Resources(num_cpus=compute.model_cpus)
        per_model_actor = compute.model_cpus + compute.decode_cpus / MODEL_ACTORS_PER_DECODE_ACTOR_ON_CPU
        derived = math.floor((cpus - PLAN_CPUS) / per_model_actor + _EPSILON)
    model_max = compute.model_actors or max(1, derived)
    left = cpus - PLAN_CPUS - model_max * model.num_cpus
    decode_max = compute.decode_actors or max(
        1, min(DECODE_ACTORS_PER_MODEL_ACTOR * model_max, math.floor(left / compute.decode_cpus + _EPSILON))
    )
    smallest = PLAN_CPUS + compute.decode_cpus + model.num_cpus
    if smallest > cpus + _EPSILON:  # the pools' first actors would wait forever
        raise ConfigError(
            f"one decode actor ({compute.decode_cpus:g} CPU), one model actor ({model.num_cpus:g} CPU) and "
            f"planning ({PLAN_CPUS:g} CPU) need {smallest:g} CPUs but the cluster has {cpus:g}: lower "
            "compute.decode_cpus or compute.model_cpus, or add CPUs"
        )
    return PoolPlan(
        decode=Pool(1, decode_max, Resources(num_cpus=compute.decode_cpus)),
        model=Pool(1, model_max, model),
    )


def _fused_plan(compute: ComputeConfig, cpus: float) -> PoolPlan:
    worker = Resources(num_cpus=compute.model_cpus + compute.decode_cpus)
    if PLAN_CPUS + worker.num_cpus > cpus + _EPSILON:
        raise ConfigError(
            f"an actor that decodes and runs the models ({worker.num_cpus:g} CPU: compute.model_cpus + "
            f"compute.decode_cpus) and planning ({PLAN_CPUS:g} CPU) need {PLAN_CPUS + worker.num_cpus:g} CPUs "
            f"but the cluster has {cpus:g}: lower compute.model_cpus or compute.decode_cpus, or add CPUs"
        )
    derived = math.floor((cpus - PLAN_CPUS) / worker.num_cpus + _EPSILON)
    return PoolPlan(decode=None, model=Pool(1, compute.model_actors or max(1, derived), worker))


__all__ = [
    "DECODE_ACTORS_PER_MODEL_ACTOR",
    "MODEL_ACTORS_PER_DECODE_ACTOR_ON_CPU",
    "PLAN_CPUS",
    "Pool",
    "PoolPlan",
    "plan_pools",
]
