"""Ray's private names: reached from one module only, behind the tested Ray versions, failing closed."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import NetworkExposureError
from pipeline.execution import ray_private

ROOT = Path(__file__).parent.parent

#: An import or attribute path through a private name of Ray: ``ray._private``, ``ray._raylet``,
#: ``ray.data._internal``, ``from ray import _private`` ... (not ``ray.__version__``).
PRIVATE_RAY = re.compile(r"\bray(\.[A-Za-z]\w*)*\._[A-Za-z]\w*|\bfrom ray(\.\w+)* import _[A-Za-z]\w*")


@pytest.fixture
def version_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The once-a-process version check made anew."""
    monkeypatch.setattr(ray_private, "_version_checked", False)


def test_only_the_ray_private_module_reaches_rays_private_names() -> None:
    sources = [p for folder in ("pipeline", "jobs", "benchmarks", "testkit") for p in (ROOT / folder).rglob("*.py")]
    assert ROOT / "pipeline/execution/ray_runtime.py" in sources  # the walk reached the code
    users = {str(p.relative_to(ROOT)) for p in sources if PRIVATE_RAY.search(p.read_text())}
    assert users == {"pipeline/execution/ray_private.py"}
    assert PRIVATE_RAY.search("from ray._private import node")
    assert PRIVATE_RAY.search("import ray.data._internal.util")
    assert PRIVATE_RAY.search("from ray import _raylet")
    assert not PRIVATE_RAY.search("from pipeline.execution import ray_private")
    assert not PRIVATE_RAY.search("ray.__version__")


def test_pyproject_allows_exactly_the_tested_ray_versions() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    rays = [d for d in project["dependencies"] if re.match(r"ray\b", d)]
    assert rays == [f"ray[data,default]{ray_private.TESTED_RAY}"]
    import ray

    assert ray_private.ray_version_is_tested(ray.__version__)  # the Ray the tests run on


@pytest.mark.parametrize(
    ("version", "tested"),
    [("2.60.0", True), ("2.60.3", True), ("2.60.1rc1", True), ("2.61.0", False), ("2.61.0rc0", False),
     ("2.59.2", False), ("3.0.0.dev0", False), ("not a version", False)],
)  # fmt: skip
def test_the_tested_range_is_ray_2_60(version: str, tested: bool) -> None:
    assert ray_private.ray_version_is_tested(version) is tested


def test_an_untested_ray_is_named_once_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, version_unchecked: None
) -> None:
    import ray

    monkeypatch.setattr(ray, "__version__", "2.61.0")
    with caplog.at_level(logging.WARNING, logger=ray_private.__name__):
        ray_private.check_ray_version()
        ray_private.check_ray_version()
    assert [r.getMessage() for r in caplog.records] == [
        "Ray 2.61.0 is outside the versions vindex is tested with (ray>=2.60,<2.61): its private switches are "
        "checked as they are used; to be safe, pip install 'ray[data,default]>=2.60,<2.61'"
    ]


def test_a_tested_ray_is_not_warned_about(caplog: pytest.LogCaptureFixture, version_unchecked: None) -> None:
    with caplog.at_level(logging.WARNING, logger=ray_private.__name__):
        ray_private.check_ray_version()
    assert caplog.records == []


def test_the_loopback_switch_turns_rays_cluster_mode_off_for_the_start_only() -> None:
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    with ray_private.loopback_only():
        assert ray_constants.ENABLE_RAY_CLUSTER is False
    assert ray_constants.ENABLE_RAY_CLUSTER is before


def test_the_loopback_switch_refuses_a_ray_without_its_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import ray_constants

    monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
    with pytest.raises(NetworkExposureError, match=r"has no ray\._private\.ray_constants\.ENABLE_RAY_CLUSTER, which "
                       r"vindex uses to keep an embedded Ray's servers on loopback; vindex is tested with "
                       r"ray>=2\.60,<2\.61: pip install 'ray\[data,default\]>=2\.60,<2\.61'"):  # fmt: skip
        with ray_private.loopback_only():
            pytest.fail("the start went on without the switch")
    assert not hasattr(ray_constants, "ENABLE_RAY_CLUSTER")  # nothing was set in its place


def test_the_loopback_switch_refuses_a_ray_that_no_longer_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The constant is there but the function choosing the node address reads something else:
    setting it would change nothing."""
    from ray._private import ray_constants, services

    def renamed(address: str | None = None) -> str:
        return "127.0.0.1" if not ray_constants.ENABLE_RAY_CLUSTERS else "192.0.2.2"  # type: ignore[attr-defined]

    monkeypatch.setattr(services, "get_node_ip_address", renamed)
    with pytest.raises(NetworkExposureError, match=r"get_node_ip_address reading ENABLE_RAY_CLUSTER"):
        with ray_private.loopback_only():
            pytest.fail("the start went on without the switch")


def test_the_loopback_switch_refuses_a_ray_without_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray._private

    monkeypatch.delattr(ray._private, "ray_constants")
    monkeypatch.setitem(sys.modules, "ray._private.ray_constants", None)  # import fails
    with pytest.raises(NetworkExposureError, match=r"has no ray\._private\.ray_constants or ray\._private\.services"):
        with ray_private.loopback_only():
            pytest.fail("the start went on without the switch")


@pytest.fixture
def lean_names() -> Iterator[tuple[object, object]]:
    """Ray's node parameters' constructor and API server start, checked restored after the test."""
    from ray._private import node, parameter

    before = (parameter.RayParams.__init__, node.Node.start_api_server)
    yield before
    assert (parameter.RayParams.__init__, node.Node.start_api_server) == before


def test_the_lean_start_skips_the_monitor_api_server_and_log_monitor(lean_names: tuple[object, object]) -> None:
    from ray._private import node, parameter

    with ray_private.lean_processes(forward_worker_output=False):
        params = parameter.RayParams()
        assert (params.no_monitor, params.include_log_monitor) == (True, False)
        assert parameter.RayParams(no_monitor=False).no_monitor is False  # an explicit value wins
        assert node.Node.start_api_server is not lean_names[1]
    with ray_private.lean_processes(forward_worker_output=True):
        params = parameter.RayParams()
        assert (params.no_monitor, params.include_log_monitor) == (True, None)  # None: Ray's default, started


def test_the_lean_start_falls_back_to_rays_usual_processes_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ray
    from ray._private import node, parameter

    real_init: Any = parameter.RayParams.__init__

    def without_monitor_switches(
        self: object, *args: object, include_log_monitor: object = None, **kwargs: object
    ) -> None:
        real_init(self, *args, include_log_monitor=include_log_monitor, **kwargs)

    # A Ray whose node parameters take no ``no_monitor`` and whose node has no API server start.
    monkeypatch.setattr(parameter.RayParams, "__init__", without_monitor_switches)
    monkeypatch.delattr(node.Node, "start_api_server")
    with caplog.at_level(logging.WARNING, logger=ray_private.__name__):
        with ray_private.lean_processes(forward_worker_output=False):
            assert parameter.RayParams().no_monitor is False  # Ray's default: the monitor starts
            assert parameter.RayParams().include_log_monitor is False  # what this Ray still takes
    purpose = "which vindex uses to start an embedded Ray without the helper processes a run does not use"
    assert [r.getMessage() for r in caplog.records] == [
        f"Ray {ray.__version__} has no ray._private.parameter.RayParams parameter 'no_monitor', {purpose} "
        "(a slower start follows); vindex is tested with ray>=2.60,<2.61: pip install 'ray[data,default]>=2.60,<2.61'",
        f"Ray {ray.__version__} has no ray._private.node.Node.start_api_server, {purpose} "
        "(a slower start follows); vindex is tested with ray>=2.60,<2.61: pip install 'ray[data,default]>=2.60,<2.61'",
    ]
    assert parameter.RayParams.__init__ is without_monitor_switches


def test_without_the_autoscalers_state_pools_see_the_alive_nodes_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ray._private.state import state

    monkeypatch.delattr(type(state), "get_cluster_config")
    with caplog.at_level(logging.WARNING, logger=ray_private.__name__):
        assert ray_private.autoscaler_node_types() == []
    assert len(caplog.records) == 1
    assert "has no ray._private.state.state.get_cluster_config" in caplog.records[0].getMessage()


def test_a_ray_data_without_the_emit_buffer_setting_is_named_and_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    class Context:  # a DataContext of a Ray that renamed the setting
        pass

    context = Context()
    with caplog.at_level(logging.WARNING, logger=ray_private.__name__):
        ray_private.emit_blocks_ahead(context)
    assert not vars(context)
    assert "_max_num_blocks_in_streaming_gen_buffer" in caplog.text and "segments out at once" in caplog.text


def test_a_tasks_emit_buffer_is_set_on_the_context_it_is_given() -> None:
    class Context:
        _max_num_blocks_in_streaming_gen_buffer = 2

    context = Context()
    ray_private.emit_blocks_ahead(context, 64)
    assert context._max_num_blocks_in_streaming_gen_buffer == 64
