"""Two whole runs with different settings against one index at the same time: both land, nothing
is duplicated, a reader polling the index meanwhile only ever sees committed, consistent tables,
and afterwards every row belongs to the run its video's row names, for plain Delta readers too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.index.store import Index
from testkit import synthetic
from testkit.processes import run_together


def _consistent_snapshot(index_path: Path) -> int:
    """Rows a reader sees now; asserts no video and no shot appears twice."""
    index = Index(str(index_path))
    if not index.exists("videos"):
        return 0
    videos = index.read("videos", columns=["video_id"]).column("video_id").to_pylist()
    assert len(videos) == len(set(videos)), "a reader saw a video twice"
    if index.exists("shots"):
        shots = index.read("shots", columns=["video_id", "shot_index"]).to_pylist()
        keys = {(s["video_id"], s["shot_index"]) for s in shots}
        assert len(keys) == len(shots), "a reader saw a shot twice"
    return len(videos)


@pytest.mark.slow
def test_two_concurrent_runs_on_one_index(tmp_path: Path) -> None:
    source, index_path = tmp_path / "src", tmp_path / "idx"
    source.mkdir()
    for i in range(4):
        spec = synthetic.simple_spec([30, 35, 30], "cut", contents=[3 * i, 3 * i + 1, 3 * i + 2],
                                     width=160, height=96, seed=20 + i)
        synthetic.write_clip(source / f"clip{i}.mp4", spec)
    command = [sys.executable, "-m", "pipeline.cli", "run", str(source), "--index", str(index_path), "--quiet",
               "--set", "write.commit_every_videos=1"]
    settings = [[], ["--set", "keyframes.max_per_shot=1", "--set", "scenes.threshold=0.9"]]
    snapshots: list[int] = []
    results = run_together([command + extra for extra in settings], timeout_s=400,
                           poll=lambda: snapshots.append(_consistent_snapshot(index_path)))
    assert [code for code, _ in results] == [0, 0], [output for _, output in results]
    assert snapshots

    assert _consistent_snapshot(index_path) == 4
    index = Index(str(index_path))
    videos = index.read("videos", columns=["uri", "status", "num_shots"]).to_pylist()
    assert sorted((Path(v["uri"]).name, v["status"], v["num_shots"]) for v in videos) == [
        (f"clip{i}.mp4", "ok", 3) for i in range(4)
    ]
    assert index.read("shots", columns=["video_id"]).num_rows == 12
    from deltalake import DeltaTable

    owners = {v["video_id"]: v for v in index.read("videos").to_pylist()}
    for name, count in (("shots", "num_shots"), ("scenes", "num_scenes"), ("keyframes", "num_keyframes")):
        rows = DeltaTable(str(index_path / name)).to_pyarrow_table(columns=["video_id", "run_id"]).to_pylist()
        assert all(owners[r["video_id"]]["run_id"] == r["run_id"] for r in rows), f"{name}: a row of another run"
        assert len(rows) == sum(v[count] for v in owners.values()), f"{name}: rows missing or left over"
    finished = [r for r in index.read("runs").to_pylist() if r["finished_at"] is not None]
    assert sorted(r["status"] for r in finished) == ["ok", "ok"]
