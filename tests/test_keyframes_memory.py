"""Keyframe selection in bounded memory, whatever the length of the shot.

The attention matrix of a shot is N x N; for a static shot of hours (N = 100,000 sampled
frames) it would be 80 GB of float64. Exactness of the block-wise computation that replaces
it is tested in ``test_keyframes_scenes.py``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from pipeline.config import KeyframesConfig
from pipeline.algorithms.keyframes import select_keyframes

REPO = Path(__file__).resolve().parents[1]
#: The long shot: 100,000 sampled frames (7 h at 25 fps, stride 6) of 1280-dim embeddings,
#: as the embedding network gives them: 512 MB of float32 input.
LONG_SHOT_FRAMES = 100_000
EMBEDDING_DIM = 1280
#: Extra memory selection may allocate on the long shot: the dense matrix would be 80 GB.
#: Measured 125 MiB (4,096 candidates widened to float64, one 64 MiB block of logits).
PEAK_BOUND_BYTES = 300 << 20
#: Address space the measuring process may add beyond its input, so that an attempt at the
#: dense matrix fails at once with MemoryError instead of pressing on the machine's memory.
ADDRESS_SPACE_HEADROOM_BYTES = 2 << 30


def measure_long_shot(frames: int, dim: int) -> dict[str, object]:
    """Peak extra allocation and time of selecting keyframes on one long shot, memory capped."""
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((frames, dim), dtype=np.float32)
    embeddings /= np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings))[:, None]
    frame_numbers = np.arange(frames, dtype=np.int64) * 6
    with open("/proc/self/statm") as statm:
        address_space = int(statm.read().split()[0]) * resource.getpagesize()
    limit = address_space + ADDRESS_SPACE_HEADROOM_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        picks = select_keyframes(frame_numbers, embeddings, frames * 6 / 25, KeyframesConfig())
    except MemoryError as exc:
        return {"error": f"MemoryError: {exc}", "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    return {"peak_bytes": peak, "seconds": seconds, "frames": [p.frame for p in picks]}


def test_keyframes_of_a_seven_hour_shot_fit_in_bounded_memory() -> None:
    # In a child process whose address space is capped: the dense matrix fails fast there.
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    child = subprocess.run(
        [sys.executable, __file__, str(LONG_SHOT_FRAMES), str(EMBEDDING_DIM)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["peak_bytes"] < PEAK_BOUND_BYTES, result
    frames = result["frames"]
    assert 1 <= len(frames) <= KeyframesConfig().max_per_shot and frames == sorted(frames)
    assert all(0 <= f <= (LONG_SHOT_FRAMES - 1) * 6 for f in frames)


if __name__ == "__main__":
    print(json.dumps(measure_long_shot(int(sys.argv[1]), int(sys.argv[2]))))
