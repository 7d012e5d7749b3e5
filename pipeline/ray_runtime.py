"""Starting and joining Ray: an embedded local Ray for `vindex run`, or the cluster of a job."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from pipeline.config import Config
from pipeline.pools import PoolPlan, plan_pools

#: Embedded Ray binds to this loopback address on Linux: Ray turns 127.0.0.1 into the host's
#: network address, but keeps other loopback addresses, so nothing listens beyond the host.
LOCAL_NODE_IP = "127.0.0.2"


def init_local_ray(**kwargs: Any) -> None:
    """Start an embedded Ray bound to loopback only (no dashboard)."""
    import ray

    if sys.platform.startswith("linux"):
        kwargs.setdefault("_node_ip_address", os.environ.get("VINDEX_RAY_NODE_IP", LOCAL_NODE_IP))
    ray.init(
        address="local",
        include_dashboard=False,
        logging_level=logging.WARNING,
        configure_logging=True,
        **kwargs,
    )


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
    """Actor pool bounds and resources for the cluster this run is on (rules in pipeline.pools)."""
    import ray

    return plan_pools(config.compute, ray.cluster_resources())
