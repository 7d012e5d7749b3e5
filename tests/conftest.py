"""Shared fixtures: generated clips with known structure, a local Ray, model outputs.

Everything is generated in temporary folders; nothing is downloaded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import synthetic

# Keep Ray from writing a token file under the home directory and from joining a stale cluster.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("RAY_ADDRESS", None)
# Credentials for the local S3 server, set before Ray starts so its workers inherit them.
# The secret is distinctive so tests can assert it never reaches tables or logs.
S3_SECRET = "vindex-test-secret-never-logged"
os.environ.update(
    AWS_ACCESS_KEY_ID="vindex-test-key",
    AWS_SECRET_ACCESS_KEY=S3_SECRET,
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)
for _var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(_var, None)

#: A clip with every kind of transition: cut, dissolve, fade, cut.
MIXED_SPEC = synthetic.simple_spec([60, 70, 65, 80, 60], ["cut", "dissolve:12", "fade:16", "cut"], seed=3)


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

    from pipeline.runner import init_local_ray

    init_local_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 API server (moto's server mode) on 127.0.0.1, stopped by PID at the end."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """An s3fs filesystem on the local server; buckets made by a test are removed after it."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    before = set(fs.ls("/"))
    yield fs
    for bucket in set(fs.ls("/", refresh=True)) - before:
        fs.rm(bucket, recursive=True)
