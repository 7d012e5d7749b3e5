"""Starting and joining Ray: an embedded local Ray for `vindex run`, or the cluster of a job."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from pipeline.config import Config
from pipeline.execution.pools import PoolPlan, plan_pools

log = logging.getLogger(__name__)

#: The embedded Ray's node address. Ray's servers listen on loopback only when their node's
#: address is exactly this one; any other address, other loopback addresses included, makes
#: them listen on every interface (measured on Ray 2.60: with 127.0.0.2 the GCS, the raylet's
#: node and object managers, every worker, the agents' gRPC servers and the metrics ports
#: listened on 0.0.0.0 or ::).
LOCAL_NODE_IP = "127.0.0.1"


def init_local_ray(**kwargs: Any) -> None:
    """Start an embedded Ray whose every server listens on loopback only (no dashboard)."""
    import ray

    kwargs.setdefault("_node_ip_address", LOCAL_NODE_IP)
    with _ray_local_only():
        ray.init(
            address="local",
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            **kwargs,
        )


@contextlib.contextmanager
def _ray_local_only() -> Iterator[None]:
    """Have ``ray.init`` start a node on 127.0.0.1 instead of the host's network address.

    On Linux Ray replaces 127.0.0.1 (``_node_ip_address`` included) with the address of the
    host's default route, unless its cluster mode is off, as it is on macOS and Windows
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once when ray is imported, so the module
    value is set here, for the start-up only: a later ``ray.init`` of a cluster is unaffected).
    With the node on 127.0.0.1, the GCS, the raylet, the workers and the agents all listen on
    loopback.
    """
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def init_ray(config: Config) -> None:
    """Join RAY_ADDRESS when set (a cluster job); otherwise start an embedded Ray."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        init_local_ray(object_store_memory=config.compute.embedded_object_store_mb * 2**20)


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
    # The autoscaler publishes its node groups in the GCS; Ray Data reads them the same way.
    from ray._private.state import state

    cluster_config = state.get_cluster_config()
    if cluster_config is None:
        return []
    return [
        {name: float(amount) for name, amount in group.resources.items()}
        for group in cluster_config.node_group_configs
        if group.max_count != 0 and group.resources
    ]
