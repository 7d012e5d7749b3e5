"""Ray Data's settings for a run, set in one place (pipeline.execution.ray_runtime)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from pipeline.config import config_from_dict
from pipeline.execution.ray_private import TASK_BLOCKS_AHEAD
from pipeline.execution.ray_runtime import (
    RAY_DATA_CONSOLE_LEVEL,
    RAY_QUIET_LEVEL,
    SEGMENT_BLOCK_BYTES,
    configure_data,
    ray_data_console_handlers,
    ray_is_quiet,
)


@pytest.fixture
def vindex_level() -> Iterator[logging.Logger]:
    """The "pipeline" logger, its level restored afterwards."""
    logger = logging.getLogger("pipeline")
    before = logger.level
    yield logger
    logger.setLevel(before)


def console_levels() -> set[int]:
    handlers = ray_data_console_handlers()
    assert handlers, "Ray Data has no console handler to hold back"
    return {h.level for h in handlers}


def other_levels() -> set[int]:
    """Levels of Ray Data's other handlers (its session log file)."""
    console = ray_data_console_handlers()
    others = {h.level for h in logging.getLogger("ray.data").handlers if h not in console}
    assert others, "Ray Data has no session log handler"
    return others


def test_configure_data_bounds_queued_data_and_ships_segments_alone(vindex_level: logging.Logger) -> None:
    import ray.data

    vindex_level.setLevel(logging.WARNING)
    configure_data(config_from_dict({"compute": {"max_inflight_mb": 300}}))
    context = ray.data.DataContext.get_current()
    assert context.execution_options.resource_limits.object_store_memory == 300 * 2**20
    assert context.target_max_block_size == SEGMENT_BLOCK_BYTES == 1  # below any row: one row per block
    assert (context.enable_progress_bars, context.print_on_execution_start) == (False, False)
    # Ray Data's console lines are held back; its session log file keeps them all.
    assert ray_is_quiet() and console_levels() == {RAY_QUIET_LEVEL}
    assert RAY_QUIET_LEVEL not in other_levels()  # the session log keeps every line


def test_operator_reservations_follow_the_pool_plan(vindex_level: logging.Logger) -> None:
    import ray.data

    vindex_level.setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    configure_data(config_from_dict({}), reserve_per_operator=False)  # fused actors on several nodes
    assert context.op_resource_reservation_enabled is False
    # A planning task hands a long video's segments out at once, not two at a time.
    assert context._max_num_blocks_in_streaming_gen_buffer == TASK_BLOCKS_AHEAD >= 256
    configure_data(config_from_dict({}))  # the clips command, a later run: the one context, set again
    assert context.op_resource_reservation_enabled is True


def test_at_debug_ray_data_keeps_its_console(vindex_level: logging.Logger) -> None:
    vindex_level.setLevel(logging.DEBUG)
    configure_data(config_from_dict({}))
    assert not ray_is_quiet() and console_levels() == {RAY_DATA_CONSOLE_LEVEL}


def test_a_command_stops_the_embedded_ray_it_started_and_leaves_any_other_alone(ray_local) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from pipeline.execution.ray_runtime import init_ray, stop_embedded_ray

    init_ray(config_from_dict({}))  # Ray is already up (the tests' own): joined, not started
    stop_embedded_ray()
    assert ray_local.is_initialized()
    # In a process of its own: init_ray starts an embedded Ray, stop_embedded_ray ends it.
    code = (
        "import ray\n"
        "from pipeline.config import config_from_dict\n"
        "from pipeline.execution.ray_runtime import init_ray, stop_embedded_ray\n"
        "init_ray(config_from_dict({'compute': {'embedded_object_store_mb': 128}}))\n"
        "assert ray.is_initialized()\n"
        "stop_embedded_ray()\n"
        "assert not ray.is_initialized()\n"
        "stop_embedded_ray()\n"  # twice is harmless
        "print('stopped')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "stopped"


#: Starts the embedded Ray as a command does, runs a task on it, and prints the command lines of
#: the processes it started. argv[1]: the "pipeline" logger's level.
_EMBEDDED_PROCESSES = """
import logging, os, sys
import ray
from pipeline.config import config_from_dict
from pipeline.execution.processes import descendants
from pipeline.execution.ray_runtime import init_ray, stop_embedded_ray
logging.getLogger("pipeline").setLevel(sys.argv[1])
init_ray(config_from_dict({"compute": {"embedded_object_store_mb": 128}}))
assert ray.get(ray.remote(lambda: 41).remote()) == 41
for pid in descendants(os.getpid()):
    try:
        print(open(f"/proc/{pid}/cmdline").read().replace("\\0", " "))
    except OSError:
        pass
stop_embedded_ray()
"""


def _embedded_processes(level: str) -> str:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _EMBEDDED_PROCESSES, level], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "gcs_server" in result.stdout and "raylet" in result.stdout  # the listing saw Ray's own processes
    return result.stdout


def test_the_embedded_ray_starts_no_monitor_api_server_or_log_monitor_it_does_not_use() -> None:
    processes = _embedded_processes("INFO")
    assert "autoscaler/_private/monitor.py" not in processes
    assert "dashboard/dashboard.py" not in processes
    assert "log_monitor.py" not in processes
    # Workers' output is forwarded to the driver when Ray's lines are shown: the log monitor does that.
    assert "log_monitor.py" in _embedded_processes("DEBUG")


def test_the_start_check_counts_what_ray_opened_not_what_was_here_before(ray_local) -> None:  # type: ignore[no-untyped-def]
    import os
    import socket

    from pipeline.errors import NetworkExposureError
    from pipeline.execution.ray_runtime import check_loopback_only, held_before_start

    with socket.socket() as earlier, socket.socket() as later:
        earlier.bind(("0.0.0.0", 0))
        earlier.listen()
        before = held_before_start()
        check_loopback_only(before)  # the tests' Ray on 127.0.0.1, and a socket that is not Ray's
        later.bind(("0.0.0.0", 0))
        later.listen()
        port = later.getsockname()[1]
        with pytest.raises(NetworkExposureError) as refused:
            check_loopback_only(before)
    assert str(refused.value) == (
        f"the embedded Ray listened beyond loopback, so Ray was stopped: this process (pid {os.getpid()}): "
        f"tcp 0.0.0.0:{port}"
    )


def test_a_refusal_names_what_to_install_where_ray_is_untested(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from pipeline.execution.ray_runtime import _tested_ray_hint

    assert _tested_ray_hint() == ""  # the tested Ray: nothing to install
    monkeypatch.setattr(ray, "__version__", "2.61.0")
    assert _tested_ray_hint() == (
        " (Ray 2.61.0; vindex is tested with ray>=2.60,<2.61: pip install 'ray[data,default]>=2.60,<2.61')"
    )
