"""Pool sizing as a pure function of the cluster's nodes: laptop, CPU cluster, GPU cluster, small nodes."""

from __future__ import annotations

import pytest

from pipeline.config import ComputeConfig, config_from_dict
from pipeline.errors import ConfigError
from pipeline.execution.pools import PLAN_TASKS_PER_NODE, Pool, Resources, calls_per_actor, plan_pools, torch_threads


def test_without_gpus_one_pool_decodes_and_runs_the_models() -> None:
    laptop = plan_pools(ComputeConfig(), [{"CPU": 2.0, "memory": 8e9}])
    assert laptop.fused and laptop.decode is None and not laptop.uses_gpu and laptop.notes == ()
    # planning 0.25 + one actor of 1.0 + 0.5 = 1.75 of 2 CPUs
    assert laptop.model == Pool(1, 1, Resources(num_cpus=1.5))
    cluster = plan_pools(ComputeConfig(), [{"CPU": 64.0}])
    assert cluster.model == Pool(42, 42, Resources(num_cpus=1.5), initial_size=42)  # 64 // 1.5, 1 CPU left for planning
    assert plan_pools(ComputeConfig(model_actors=3), [{"CPU": 64.0}]).model.max_size == 3
    # A forced CPU run on a GPU cluster fuses too; GPUs never do.
    assert plan_pools(ComputeConfig(), [{"CPU": 8.0, "GPU": 1.0}], device="cpu").fused
    assert not plan_pools(ComputeConfig(), [{"CPU": 8.0, "GPU": 1.0}]).fused
    assert plan_pools(ComputeConfig(model_cpus=0.5, decode_cpus=0.25), [{"CPU": 1.0}]).model.max_size == 1


def test_two_one_cpu_nodes_shrink_the_fused_actor_to_fit_each_node_beside_planning() -> None:
    plan = plan_pools(ComputeConfig(), [{"CPU": 1.0}, {"CPU": 1.0}])
    # 1.5 CPUs fit no node; 1 - 0.25 = 0.75 leaves each node room for a planning task
    assert plan.model == Pool(2, 2, Resources(num_cpus=0.75), initial_size=2)
    assert plan.notes == (
        (
            "each actor that decodes and runs the models asks for 0.75 CPU instead of 1.5 (compute.model_cpus + "
            "compute.decode_cpus): no node has room for 1.5 CPU beside planning (0.25 CPU); the cluster has "
            "2 nodes: 1 CPU, 1 CPU"
        ),
    )
    # the same on a single 1-CPU node, where the cluster's total used to be the only check
    assert plan_pools(ComputeConfig(), [{"CPU": 1.0}]).model == Pool(1, 1, Resources(num_cpus=0.75))


def test_a_node_too_small_for_the_smallest_actor_is_a_config_error_naming_the_cpus() -> None:
    with pytest.raises(ConfigError, match=r"need 0.75 CPUs on one node but the cluster has 1 node: 0.5 CPU: add CPUs"):
        plan_pools(ComputeConfig(), [{"CPU": 0.5}])
    with pytest.raises(ConfigError, match=r"has 3 nodes: 0.5 CPU, 0.5 CPU, 0.5 CPU"):  # 1.5 CPUs, on three nodes
        plan_pools(ComputeConfig(), [{"CPU": 0.5}] * 3)
    with pytest.raises(ConfigError, match=r"has 0 nodes"):
        plan_pools(ComputeConfig(), [])


def test_actor_counts_pack_node_by_node() -> None:
    # 10 CPUs in all would hold 6 actors of 1.5, but each 2.5-CPU node holds one
    plan = plan_pools(ComputeConfig(), [{"CPU": 2.5}] * 4)
    assert plan.model == Pool(4, 4, Resources(num_cpus=1.5), initial_size=4)
    # three nodes filled exactly: one actor fewer, so that planning has a CPU share
    assert plan_pools(ComputeConfig(), [{"CPU": 1.5}] * 3).model.max_size == 2


def test_a_head_without_cpus_and_an_autoscaler_that_adds_them() -> None:
    head = {"CPU": 0.0, "memory": 8e9}
    plan = plan_pools(ComputeConfig(), [head], node_types=[{"CPU": 4.0}])
    # the request fits the node type the autoscaler starts: no shrinking, one actor to start with
    assert plan.model == Pool(1, 1, Resources(num_cpus=1.5)) and plan.notes == ()
    with pytest.raises(ConfigError, match=r"node types it can add: 0.5 CPU"):
        plan_pools(ComputeConfig(), [head], node_types=[{"CPU": 0.5}])


#: Separate decode and model pools on CPUs, as on GPU clusters.
SPLIT = {"fuse_on_cpu": False}


def test_two_cpu_laptop_gets_one_actor_per_pool_that_fits() -> None:
    plan = plan_pools(ComputeConfig(**SPLIT), [{"CPU": 2.0, "memory": 8e9}])
    assert plan.decode == Pool(1, 1, Resources(num_cpus=0.5))
    assert plan.model == Pool(1, 1, Resources(num_cpus=1.0))
    assert not plan.uses_gpu
    # planning 0.25 + one decode 0.5 + one model 1.0 = 1.75 of 2 CPUs: nothing waits forever


def test_cpu_only_cluster_scales_both_pools_with_its_cpus() -> None:
    plan = plan_pools(ComputeConfig(**SPLIT), [{"CPU": 64.0, "node:127.0.0.2": 1.0}])
    # models: (64 - 0.25) // (1 + 0.5 / 4) = 56; decode: (64 - 0.25 - 56) // 0.5 = 15
    assert plan.model == Pool(56, 56, Resources(num_cpus=1.0), initial_size=56)
    assert plan.decode == Pool(15, 15, Resources(num_cpus=0.5), initial_size=15)
    heavier = plan_pools(ComputeConfig(model_cpus=4.0, **SPLIT), [{"CPU": 64.0}])
    # models: 63.75 // 4.125 = 15; decode: (63.75 - 60) // 0.5 = 7
    assert (heavier.model.max_size, heavier.decode.max_size) == (15, 7)
    # 16 nodes of 4: the same total, and each node still holds its model actors whole
    spread = plan_pools(ComputeConfig(model_cpus=3.0, **SPLIT), [{"CPU": 4.0}] * 16)
    # models: min(63.75 // 3.125 = 20, one per node = 16); decode: (63.75 - 48) // 0.5 = 31, at most 4 per model
    assert (spread.model.max_size, spread.decode.max_size) == (16, 31)


def test_split_pools_on_one_cpu_nodes_use_both_nodes() -> None:
    # decode 0.5 and planning 0.25 on one node, the 1-CPU model actor on the other
    plan = plan_pools(ComputeConfig(**SPLIT), [{"CPU": 1.0}, {"CPU": 1.0}])
    assert (plan.decode, plan.model) == (Pool(1, 1, Resources(num_cpus=0.5)), Pool(1, 1, Resources(num_cpus=1.0)))
    with pytest.raises(ConfigError, match=r"a model actor asks for 2 CPU \(compute.model_cpus\) but the largest node has 1 CPU"):
        plan_pools(ComputeConfig(model_cpus=2.0, **SPLIT), [{"CPU": 1.0}] * 8)
    with pytest.raises(ConfigError, match=r"a decode actor asks for 1.5 CPU \(compute.decode_cpus\)"):
        plan_pools(ComputeConfig(decode_cpus=1.5, model_cpus=0.5, **SPLIT), [{"CPU": 1.0}] * 8)


def test_gpu_cluster_puts_models_on_gpus_and_decoding_on_cpus() -> None:
    plan = plan_pools(ComputeConfig(), [{"CPU": 32.0, "GPU": 4.0}])
    assert plan.uses_gpu
    assert plan.model == Pool(4, 4, Resources(num_cpus=1.0, num_gpus=1.0), initial_size=4)
    # decode: min(4 * 4, (32 - 0.25 - 4) // 0.5 = 55) = 16, CPUs only
    assert plan.decode == Pool(16, 16, Resources(num_cpus=0.5, num_gpus=0.0), initial_size=16)


def test_gpu_nodes_hold_the_model_actors_their_cpus_allow() -> None:
    nodes = [{"CPU": 8.0}, {"CPU": 1.0, "GPU": 2.0}, {"CPU": 4.0, "GPU": 2.0}]
    plan = plan_pools(ComputeConfig(), nodes)
    # 4 GPUs, but the first GPU node has one CPU for its two GPUs' actors: 1 + 2 model actors
    assert plan.model == Pool(3, 3, Resources(num_cpus=1.0, num_gpus=1.0), initial_size=3)
    assert plan.decode == Pool(12, 12, Resources(num_cpus=0.5), initial_size=12)  # min(4 * 3, (13 - 0.25 - 3) // 0.5 = 19)
    with pytest.raises(ConfigError, match=r"a model actor asks for 4 GPU \(compute.model_gpus\) but the largest node has 2 GPU"):
        plan_pools(ComputeConfig(model_gpus=4.0), nodes)
    with pytest.raises(ConfigError, match=r"asks for 1 CPU \(compute.model_cpus\) but the largest GPU node has 0.5 CPU"):
        plan_pools(ComputeConfig(), [{"CPU": 8.0}, {"CPU": 0.5, "GPU": 1.0}])


def test_fractional_gpus_share_a_device() -> None:
    plan = plan_pools(ComputeConfig(model_gpus=0.25, model_cpus=0.5), [{"CPU": 16.0, "GPU": 2.0}])
    assert plan.model == Pool(8, 8, Resources(num_cpus=0.5, num_gpus=0.25), initial_size=8)
    assert plan.decode.max_size == 23  # min(32, (16 - 0.25 - 4) // 0.5)


def test_device_cpu_ignores_the_gpus() -> None:
    plan = plan_pools(ComputeConfig(**SPLIT), [{"CPU": 8.0, "GPU": 1.0}], device="cpu")
    assert plan.model.resources == Resources(num_cpus=1.0)
    assert (plan.model.max_size, plan.decode.max_size) == (6, 3)


def test_device_cuda_asks_for_a_gpu_the_autoscaler_has_not_started_yet() -> None:
    plan = plan_pools(ComputeConfig(), [{"CPU": 4.0}], node_types=[{"CPU": 8.0, "GPU": 1.0}], device="cuda")
    assert plan.model == Pool(1, 1, Resources(num_cpus=1.0, num_gpus=1.0))
    # with no GPU anywhere, the GPU actor would wait forever
    with pytest.raises(ConfigError, match=r"inference.device is cuda but no node has a GPU \(1 node: 4 CPU\)"):
        plan_pools(ComputeConfig(), [{"CPU": 4.0}], device="cuda")


def test_configured_sizes_are_the_upper_bounds_even_beyond_the_cluster() -> None:
    plan = plan_pools(ComputeConfig(decode_actors=12, model_actors=3, **SPLIT), [{"CPU": 2.0}])
    assert (plan.decode.min_size, plan.decode.max_size) == (1, 12)
    assert (plan.model.min_size, plan.model.max_size) == (1, 3)


def test_a_cluster_too_small_for_one_actor_per_pool_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"need 1.75 CPUs at once but the cluster has 1 node: 1 CPU"):
        plan_pools(ComputeConfig(**SPLIT), [{"CPU": 1.0}])
    # the same node fits once the actors ask for fractions
    plan = plan_pools(ComputeConfig(decode_cpus=0.25, model_cpus=0.5, **SPLIT), [{"CPU": 1.0}])
    assert (plan.decode.max_size, plan.model.max_size) == (1, 1)


def test_zero_gpus_per_actor_is_rejected_by_the_config() -> None:
    with pytest.raises(ConfigError, match="compute.model_gpus"):
        config_from_dict({"compute": {"model_gpus": 0.0}})


def test_pool_sizing_imports_no_stage_decoder_or_torch() -> None:
    import subprocess
    import sys

    heavy = ("torch", "ray", "decord", "pipeline.execution.stages", "pipeline.media.decode")
    code = f"import sys, pipeline.execution.pools; print([m for m in {heavy!r} if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_pools_start_with_every_actor_that_fits_the_nodes_now() -> None:
    # Two 1-CPU nodes: both actors start at once (grown from one, the second node idled).
    assert plan_pools(ComputeConfig(), [{"CPU": 1.0}, {"CPU": 1.0}]).model.initial_size == 2
    # A pool size set beyond today's nodes (an autoscaling cluster) starts with what fits now.
    plan = plan_pools(ComputeConfig(model_actors=10), [{"CPU": 4.0}])
    assert (plan.model.min_size, plan.model.initial_size, plan.model.max_size) == (2, 2, 10)
    gpu = plan_pools(ComputeConfig(decode_actors=30), [{"CPU": 4.0, "GPU": 1.0}])
    assert (gpu.decode.min_size, gpu.decode.initial_size, gpu.decode.max_size) == (4, 4, 30)


def test_pools_keep_the_actors_they_start_with() -> None:
    """Ray Data's autoscaler removes actors it finds idle down to a pool's min_size: with one
    actor as the floor, it removed the second node's actor while the first still had most of
    a video to run (scaling.py: actor CPU-s 82.3 and 3.2). The actors that fit at the start stay."""
    for compute, nodes in [
        (ComputeConfig(), [{"CPU": 1.0}, {"CPU": 1.0}]),
        (ComputeConfig(), [{"CPU": 64.0}]),
        (ComputeConfig(model_actors=10), [{"CPU": 4.0}]),
        (ComputeConfig(**SPLIT), [{"CPU": 16.0}]),
        (ComputeConfig(), [{"CPU": 8.0, "GPU": 2.0}]),
    ]:
        plan = plan_pools(compute, nodes)
        for pool in (plan.decode, plan.model):
            if pool is not None:
                assert pool.min_size == pool.initial_size, (compute, nodes, pool)


def test_a_model_actor_uses_the_cpus_it_was_given() -> None:
    assert torch_threads(0, 1.5, 2) == 2  # the one fused actor of a 2-core machine: both cores
    assert torch_threads(0, 1.5, 8) == 2  # one of five on an 8-core node, not 8 each
    assert torch_threads(0, 0.75, 2) == 1  # shrunk to fit a 1-CPU node
    assert torch_threads(0, None, 6) == 6  # outside Ray: the machine's cores
    assert torch_threads(3, 1.5, 8) == 3  # compute.model_threads wins


def test_an_actor_takes_its_stages_calls_at_once_only_with_threads_for_them() -> None:
    assert calls_per_actor(2, 2) == 2  # one segment decoding while the other is in the networks
    assert calls_per_actor(2, 8) == 2
    assert calls_per_actor(2, 1) == 1  # one network thread: one call at a time
    assert calls_per_actor(1, 4) == 1  # a stage of one call stays at one


def test_a_fused_plan_notes_that_it_leaves_decode_actors_unused() -> None:
    unused = "compute.decode_actors is unused: without GPUs the model actors decode (compute.fuse_on_cpu)"
    assert plan_pools(ComputeConfig(decode_actors=4), [{"CPU": 8.0}]).notes == (unused,)
    assert plan_pools(ComputeConfig(decode_actors=4), [{"CPU": 1.0}]).notes[0] == unused  # beside the shrunk actor's
    assert plan_pools(ComputeConfig(decode_actors=4, **SPLIT), [{"CPU": 8.0}]).notes == ()  # split pools use it
    assert plan_pools(ComputeConfig(), [{"CPU": 8.0}]).notes == ()


def test_fused_actors_on_several_nodes_turn_ray_datas_reservations_off_and_cap_planning() -> None:
    """At a run's start Ray Data's reservation let a planning task's segments out one every
    ~10 s, so a second node's actor waited for its first ones; without it, planning tasks are
    capped per node, or a run of short clips started a worker process for every few clips."""
    one_machine = plan_pools(ComputeConfig(), [{"CPU": 2.0}])
    assert one_machine.fused and one_machine.reserve_per_operator and one_machine.plan_tasks is None
    two_nodes = plan_pools(ComputeConfig(), [{"CPU": 1.0}, {"CPU": 1.0}])
    assert two_nodes.fused and not two_nodes.reserve_per_operator
    assert two_nodes.plan_tasks == 2 * PLAN_TASKS_PER_NODE == 4
    gpu_nodes = plan_pools(ComputeConfig(), [{"CPU": 8.0, "GPU": 1.0}] * 3)  # a decode pool: its queue stays bounded
    assert not gpu_nodes.fused and gpu_nodes.reserve_per_operator and gpu_nodes.plan_tasks is None
