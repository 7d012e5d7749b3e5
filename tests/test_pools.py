"""Pool sizing as a pure function of the cluster's resources: laptop, CPU cluster, GPU cluster."""

from __future__ import annotations

import pytest

from pipeline.config import ComputeConfig, config_from_dict
from pipeline.errors import ConfigError
from pipeline.pools import Pool, plan_pools
from pipeline.stages import Resources


def test_without_gpus_one_pool_decodes_and_runs_the_models() -> None:
    laptop = plan_pools(ComputeConfig(), {"CPU": 2.0, "memory": 8e9})
    assert laptop.fused and laptop.decode is None and not laptop.uses_gpu
    # planning 0.25 + one actor of 1.0 + 0.5 = 1.75 of 2 CPUs
    assert laptop.model == Pool(1, 1, Resources(num_cpus=1.5))
    cluster = plan_pools(ComputeConfig(), {"CPU": 64.0})
    assert cluster.model == Pool(1, 42, Resources(num_cpus=1.5))  # 63.75 // 1.5
    assert plan_pools(ComputeConfig(model_actors=3), {"CPU": 64.0}).model.max_size == 3
    # A forced CPU run on a GPU cluster fuses too; GPUs never do.
    assert plan_pools(ComputeConfig(device="cpu"), {"CPU": 8.0, "GPU": 1.0}).fused
    assert not plan_pools(ComputeConfig(), {"CPU": 8.0, "GPU": 1.0}).fused
    with pytest.raises(ConfigError, match=r"decodes and runs the models \(1.5 CPU.*need 1.75 CPUs but the cluster has 1"):
        plan_pools(ComputeConfig(), {"CPU": 1.0})
    assert plan_pools(ComputeConfig(model_cpus=0.5, decode_cpus=0.25), {"CPU": 1.0}).model.max_size == 1


#: Separate decode and model pools on CPUs, as on GPU clusters.
SPLIT = {"fuse_on_cpu": False}


def test_two_cpu_laptop_gets_one_actor_per_pool_that_fits() -> None:
    plan = plan_pools(ComputeConfig(**SPLIT), {"CPU": 2.0, "memory": 8e9})
    assert plan.decode == Pool(1, 1, Resources(num_cpus=0.5))
    assert plan.model == Pool(1, 1, Resources(num_cpus=1.0))
    assert not plan.uses_gpu
    # planning 0.25 + one decode 0.5 + one model 1.0 = 1.75 of 2 CPUs: nothing waits forever


def test_cpu_only_cluster_scales_both_pools_with_its_cpus() -> None:
    plan = plan_pools(ComputeConfig(**SPLIT), {"CPU": 64.0, "node:127.0.0.2": 1.0})
    # models: (64 - 0.25) // (1 + 0.5 / 4) = 56; decode: (64 - 0.25 - 56) // 0.5 = 15
    assert plan.model == Pool(1, 56, Resources(num_cpus=1.0))
    assert plan.decode == Pool(1, 15, Resources(num_cpus=0.5))
    heavier = plan_pools(ComputeConfig(model_cpus=4.0, **SPLIT), {"CPU": 64.0})
    # models: 63.75 // 4.125 = 15; decode: (63.75 - 60) // 0.5 = 7
    assert (heavier.model.max_size, heavier.decode.max_size) == (15, 7)


def test_gpu_cluster_puts_models_on_gpus_and_decoding_on_cpus() -> None:
    plan = plan_pools(ComputeConfig(), {"CPU": 32.0, "GPU": 4.0})
    assert plan.uses_gpu
    assert plan.model == Pool(1, 4, Resources(num_cpus=1.0, num_gpus=1.0))
    # decode: min(4 * 4, (32 - 0.25 - 4) // 0.5 = 55) = 16, CPUs only
    assert plan.decode == Pool(1, 16, Resources(num_cpus=0.5, num_gpus=0.0))


def test_fractional_gpus_share_a_device() -> None:
    plan = plan_pools(ComputeConfig(model_gpus=0.25, model_cpus=0.5), {"CPU": 16.0, "GPU": 2.0})
    assert plan.model == Pool(1, 8, Resources(num_cpus=0.5, num_gpus=0.25))
    assert plan.decode.max_size == 23  # min(32, (16 - 0.25 - 4) // 0.5)


def test_device_cpu_ignores_the_gpus() -> None:
    plan = plan_pools(ComputeConfig(device="cpu", **SPLIT), {"CPU": 8.0, "GPU": 1.0})
    assert plan.model.resources == Resources(num_cpus=1.0)
    assert (plan.model.max_size, plan.decode.max_size) == (6, 3)


def test_device_cuda_asks_for_a_gpu_the_autoscaler_has_not_started_yet() -> None:
    plan = plan_pools(ComputeConfig(device="cuda"), {"CPU": 4.0})
    assert plan.model == Pool(1, 1, Resources(num_cpus=1.0, num_gpus=1.0))


def test_configured_sizes_are_the_upper_bounds_even_beyond_the_cluster() -> None:
    plan = plan_pools(ComputeConfig(decode_actors=12, model_actors=3, **SPLIT), {"CPU": 2.0})
    assert (plan.decode.min_size, plan.decode.max_size) == (1, 12)
    assert (plan.model.min_size, plan.model.max_size) == (1, 3)


def test_a_cluster_too_small_for_one_actor_per_pool_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"need 1.75 CPUs but the cluster has 1"):
        plan_pools(ComputeConfig(**SPLIT), {"CPU": 1.0})
    # the same node fits once the actors ask for fractions
    plan = plan_pools(ComputeConfig(decode_cpus=0.25, model_cpus=0.5, **SPLIT), {"CPU": 1.0})
    assert (plan.decode.max_size, plan.model.max_size) == (1, 1)


def test_zero_gpus_per_actor_is_rejected_by_the_config() -> None:
    with pytest.raises(ConfigError, match="compute.model_gpus"):
        config_from_dict({"compute": {"model_gpus": 0.0}})
