"""Shared fixtures: generated clips with known structure, a local Ray, model outputs, a local S3.

Everything is generated in temporary folders; nothing is downloaded. The machinery behind
the fixtures lives in ``testkit`` (importable from the repository root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import synthetic
from testkit.s3 import FaultyS3Proxy, moto_server, use_test_credentials

# Keep Ray from writing a token file under the home directory and from joining a stale cluster.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("RAY_ADDRESS", None)
# Credentials for the local S3 server, set before Ray starts so its workers inherit them.
use_test_credentials()

#: A clip with every kind of transition: cut, dissolve, fade, cut.
MIXED_SPEC = synthetic.simple_spec([60, 70, 65, 80, 60], ["cut", "dissolve:12", "fade:16", "cut"], seed=3)


#: A test that uses one of these fixtures, directly or through another fixture, is marked
#: ``slow``: an embedded Ray and the S3 server outlive one test, and the shot network run on
#: whole generated clips took 567 of the 928 s the other tests took (one run, on a loaded
#: 2-CPU machine).
SLOW_FIXTURES = frozenset({"ray_local", "s3_endpoint", "shot_model"})
#: Tests that start Ray without those fixtures (a `vindex run` or an embedded Ray in a child
#: process), by module: every test of the module ("*"), or the tests named.
SLOW_TESTS: dict[str, str | frozenset[str]] = {
    "test_network.py": "*",
    "test_output.py": "*",
    "test_ray_runtime.py": frozenset({"test_the_embedded_ray_starts_no_monitor_api_server_or_log_monitor_it_does_not_use"}),
}


def is_slow(item: pytest.Item) -> bool:
    """Whether ``item`` starts Ray, a ``ray start`` cluster, Chromium or the S3 server, or runs the
    shot network on whole clips."""
    if item.get_closest_marker("cluster") or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    named = SLOW_TESTS.get(item.path.name, frozenset())
    return named == "*" or getattr(item, "originalname", item.name) in named


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that starts a service or runs the shot network on whole clips, so
    that ``pytest -m "not slow"`` is the quick inner loop; a name in SLOW_TESTS that its module
    no longer holds is an error."""
    collected: dict[str, set[str]] = {}
    for item in items:
        collected.setdefault(item.path.name, set()).add(getattr(item, "originalname", item.name))
        if is_slow(item):
            item.add_marker(pytest.mark.slow)
    for module, named in SLOW_TESTS.items():
        if module in collected and named != "*" and not named <= collected[module]:
            raise pytest.UsageError(f"tests/conftest.py SLOW_TESTS names tests {module} does not hold: "
                                    f"{sorted(named - collected[module])}")


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def mixed_clip(clips_dir: Path) -> tuple[Path, synthetic.ClipTruth]:
    """A generated 320x180 clip with a cut, a dissolve, a fade and another cut."""
    path = clips_dir / "mixed.mp4"
    truth = synthetic.write_clip(path, MIXED_SPEC)
    return path, truth


@pytest.fixture(scope="session")
def shot_model():  # type: ignore[no-untyped-def]
    from pipeline.models.transnetv2 import load_transnetv2

    return load_transnetv2()


@pytest.fixture(scope="session")
def ray_local():  # type: ignore[no-untyped-def]
    """An embedded local Ray for the tests that go through Ray Data."""
    import ray

    from pipeline.execution.ray_runtime import init_local_ray

    init_local_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API server (moto's server mode) on 127.0.0.1, stopped by PID at the end."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """An s3fs filesystem on the local server; buckets made by a test are removed after it."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    before = set(fs.ls("/"))
    yield fs
    for bucket in set(fs.ls("/", refresh=True)) - before:
        fs.rm(bucket, recursive=True)


@pytest.fixture
def faulty_s3(s3_endpoint: str) -> Iterator[FaultyS3Proxy]:
    """A fault-injecting proxy in front of the local S3 server (see testkit.s3.FaultyS3Proxy)."""
    proxy = FaultyS3Proxy(s3_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def huge_clip(clips_dir: Path) -> Path:
    """A 16-frame 7680x4320 clip with one cut after frame 8 (see testkit.synthetic.write_huge_clip)."""
    return synthetic.write_huge_clip(clips_dir / "huge_8k.mp4")
