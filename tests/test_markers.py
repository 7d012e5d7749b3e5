"""`pytest -m "not slow"` leaves out every test that starts Ray, a cluster, the S3 server or
Chromium, or runs the shot network on whole clips (tests/conftest.py marks them), and keeps
the rest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def conftest(request: pytest.FixtureRequest) -> ModuleType:
    """The loaded tests/conftest.py (its module name depends on pytest's import mode)."""
    (module,) = [
        plugin
        for plugin in request.config.pluginmanager.get_plugins()
        if isinstance(plugin, ModuleType) and Path(getattr(plugin, "__file__", "") or "") == ROOT / "tests" / "conftest.py"
    ]
    return module


def collected(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_not_slow_leaves_out_the_tests_that_start_services_and_keeps_the_rest() -> None:
    # One module per way a test is found slow: the ray_local fixture (through a module fixture),
    # the S3 server's fixture, the shot network's, the cluster marker, a module in SLOW_TESTS,
    # a test named in SLOW_TESTS beside quick tests of its module.
    modules = ["test_runner.py", "test_s3_faults.py", "test_fades.py", "test_cluster.py", "test_output.py",
               "test_ray_runtime.py"]
    quick = collected("-m", "not slow", *(f"tests/{m}" for m in modules), "tests/test_retry.py")
    assert [t for t in quick if t.startswith(("tests/test_runner.py", "tests/test_s3_faults.py", "tests/test_fades.py"))] == []
    assert [t for t in quick if t.startswith(("tests/test_cluster.py", "tests/test_output.py"))] == []
    assert [t.split("::")[1] for t in quick if t.startswith("tests/test_ray_runtime.py")] == [
        "test_configure_data_bounds_queued_data_and_ships_segments_alone",
        "test_operator_reservations_follow_the_pool_plan",
        "test_at_debug_ray_data_keeps_its_console",
        "test_a_refusal_names_what_to_install_where_ray_is_untested",
    ]
    tests_of_retry = re.findall(r"^def (test_\w+)", (ROOT / "tests" / "test_retry.py").read_text(), re.MULTILINE)
    assert [t.split("::")[1] for t in quick if t.startswith("tests/test_retry.py")] == tests_of_retry


def test_a_slow_test_name_that_no_longer_exists_is_an_error(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = conftest(request)
    items = [item for item in request.session.items if item.path.name == "test_markers.py"]
    monkeypatch.setitem(module.SLOW_TESTS, "test_markers.py", frozenset({"test_renamed_long_ago"}))
    with pytest.raises(pytest.UsageError, match=r"test_markers.py does not hold: \['test_renamed_long_ago'\]"):
        module.pytest_collection_modifyitems(request.config, items)
