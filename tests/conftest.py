"""Shared fixtures: generated clips with known structure, a local Ray, model outputs.

Everything is generated in temporary folders; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import synthetic

# Keep Ray from writing a token file under the home directory and from joining a stale cluster.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

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
