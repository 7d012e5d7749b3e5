"""The tables agree: every shots/scenes/keyframes row belongs to the run its video's ``videos``
row names, after a kill at any point between commits and after concurrent runs.

Checked twice: through vindex's readers (which must be exact at every moment) and through a
plain Delta reader (which must be exact once the next run has finished).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipeline.index.schemas import CHILD_TABLES, to_table
from pipeline.index.store import EXIT_AFTER_COMMIT_ENV, TEST_EXIT_STATUS, Index
from testkit import synthetic

NOW = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
VIDEOS = ("a", "b")


def run_row(run_id: str, status: str = "running", heartbeat: dt.datetime | None = None) -> dict[str, object]:
    started = heartbeat or dt.datetime.now(dt.timezone.utc)
    return {"run_id": run_id, "started_at": started, "status": status, "heartbeat_at": started}


def batch(run_id: str, shots_per_video: int, videos: tuple[str, ...] = VIDEOS) -> dict[str, pa.Table]:
    """What run ``run_id`` commits for ``videos``: its settings give ``shots_per_video`` shots each."""
    rows: dict[str, list[dict[str, object]]] = {name: [] for name in ("videos", *CHILD_TABLES)}
    for video in videos:
        rows["videos"].append({"video_id": video, "uri": f"file:///{video}.mp4", "status": "ok", "run_id": run_id,
                               "num_shots": shots_per_video, "indexed_at": NOW})
        for i in range(shots_per_video):
            rows["shots"].append({"video_id": video, "shot_index": i, "start_frame": i, "end_frame": i, "run_id": run_id})
            rows["scenes"].append({"video_id": video, "scene_index": i, "first_shot": i, "last_shot": i, "run_id": run_id})
            rows["keyframes"].append({"video_id": video, "shot_index": i, "scene_index": i, "frame": i, "score": 1.0,
                                      "embedding": np.zeros(1280, np.float32), "thumbnail": b"", "run_id": run_id})
    return {name: to_table(name, table_rows) for name, table_rows in rows.items()}


def plain_rows(index_path: Path, name: str) -> list[dict[str, object]]:
    """A table's rows as any Delta reader sees them, without vindex."""
    columns = ["video_id", "run_id"] + (["num_shots"] if name == "videos" else [])
    return DeltaTable(str(index_path / name)).to_pyarrow_table(columns=columns).to_pylist()


def assert_agree(rows_of: Callable[[str], list[dict[str, object]]]) -> dict[str, str]:
    """Every child row belongs to the run its video's row names, and that run's rows are all
    there (each run gives each video ``num_shots`` rows per child table). Returns video -> run."""
    marker = {str(v["video_id"]): v for v in rows_of("videos")}
    for name in CHILD_TABLES:
        seen: dict[str, int] = {}
        for row in rows_of(name):
            video = str(row["video_id"])
            assert video in marker, f"{name}: orphan row of {video} (no videos row) from run {row['run_id']}"
            assert row["run_id"] == marker[video]["run_id"], (
                f"{name}: row of {video} from run {row['run_id']}, its videos row names {marker[video]['run_id']}"
            )
            seen[video] = seen.get(video, 0) + 1
        assert seen == {v: m["num_shots"] for v, m in marker.items() if m["num_shots"]}, f"{name}: rows missing"
    return {video: str(m["run_id"]) for video, m in marker.items()}


def through_vindex(index_path: Path) -> Callable[[str], list[dict[str, object]]]:
    index = Index(str(index_path))
    return lambda name: index.read(name, columns=["video_id", "run_id"] + (["num_shots"] if name == "videos" else [])).to_pylist()


def through_delta(index_path: Path) -> Callable[[str], list[dict[str, object]]]:
    return lambda name: plain_rows(index_path, name)


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    """An index where a finished run r0 indexed both videos (3 rows per video and table)."""
    path = tmp_path / "idx"
    index = Index(str(path))
    index.ensure()
    index.append_run(run_row("r0", status="ok"))
    index.commit_videos(batch("r0", 3))
    assert assert_agree(through_delta(path)) == {"a": "r0", "b": "r0"}
    return path


# Two runs with different settings (r1: 2 shots per video, r2: 4) commit the same videos,
# their steps interleaved in every possible order.
STEPS = ("children", "marker", "collect")


@pytest.mark.parametrize(
    "order",
    [o for o in itertools.product((1, 2), repeat=6) if o.count(1) == 3],
    ids=lambda o: "".join(map(str, o)),
)
def test_two_runs_interleaved_at_every_step_agree(indexed: Path, order: tuple[int, ...]) -> None:
    index = Index(str(indexed))
    runs = {1: ("r1", 2), 2: ("r2", 4)}
    for run_id, _ in runs.values():
        index.append_run(run_row(run_id))
    position = {1: 0, 2: 0}
    for who in order:
        run_id, shots = runs[who]
        step = STEPS[position[who]]
        position[who] += 1
        tables = batch(run_id, shots)
        if step == "children":
            index.append_children(tables)
        elif step == "marker":
            index.mark_videos(tables["videos"])
        else:
            index.collect_orphans(list(VIDEOS))
        # vindex's readers are exact after every single step.
        assert_agree(through_vindex(indexed))
    # Both runs end: each records its end, then clears what runs now over left behind.
    for run_id, _ in runs.values():
        index.append_run(run_row(run_id, status="ok"))
        index.collect_orphans()
    winners = assert_agree(through_delta(indexed))
    # The run that wrote its markers last owns both videos.
    marker_steps = [w for i, w in enumerate(order) if STEPS[sum(1 for x in order[:i] if x == w)] == "marker"]
    assert set(winners.values()) == {runs[marker_steps[-1]][0]}


def test_a_live_runs_rows_are_never_collected_but_a_dead_ones_are(indexed: Path) -> None:
    index = Index(str(indexed))
    stale = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
    index.append_run(run_row("live"))
    index.append_run(run_row("dead", heartbeat=stale))
    index.append_children(batch("live", 2))
    index.append_children(batch("dead", 5))
    assert index.collect_orphans(lease_s=10) == 2 * len(CHILD_TABLES)  # the dead run's, per table
    assert {r["run_id"] for r in plain_rows(indexed, "shots")} == {"r0", "live"}
    assert index.abandon_stale_runs(lease_s=10) == ["dead"]
    statuses = {r["run_id"]: r["status"] for r in index.read("runs").to_pylist()}
    assert statuses == {"r0": "ok", "live": "running", "dead": "abandoned"}
    # The live run can still commit (its rows were kept): its markers, then the rows they replace.
    index.mark_videos(batch("live", 2)["videos"])
    index.collect_orphans(list(VIDEOS), lease_s=10)
    index.append_run(run_row("live", status="ok"))
    index.collect_orphans(lease_s=10)
    assert assert_agree(through_delta(indexed)) == {"a": "live", "b": "live"}


def test_a_marker_landing_between_another_runs_read_and_its_commit_is_still_replaced_and_cleared(
    indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r2 is about to replace the markers of a and b when r1 writes its own markers, ends and
    clears its leftovers, all in that instant. r2's commit must learn that it replaced r1's
    markers, not r0's, and clear r1's rows: r1 is over and will never look again."""
    import deltalake

    first, second = Index(str(indexed)), Index(str(indexed))
    first.append_run(run_row("r1"))
    second.append_run(run_row("r2"))
    original = deltalake.write_deltalake
    interleaved: list[str] = []

    def write(target: object, data: pa.Table, *args: object, **kwargs: object) -> None:
        runs = set(data.column("run_id").to_pylist()) if "run_id" in data.column_names else set()
        if not interleaved and kwargs.get("mode") == "overwrite" and runs == {"r2"} and "num_shots" in data.column_names:
            interleaved.append("r1")
            first.commit_videos(batch("r1", 2))
            first.append_run(run_row("r1", status="ok"))
            first.collect_orphans()
        original(target, data, *args, **kwargs)

    monkeypatch.setattr(deltalake, "write_deltalake", write)
    second.commit_videos(batch("r2", 4))
    assert interleaved == ["r1"]
    second.append_run(run_row("r2", status="ok"))
    second.collect_orphans()
    assert assert_agree(through_delta(indexed)) == {"a": "r2", "b": "r2"}


_COMMIT_SCRIPT = """
import sys
from pipeline.index.store import Index
sys.path.insert(0, {tests!r})
from test_consistency import batch, run_row
index = Index({index!r})
index.append_run(run_row("r1"))
index.commit_videos(batch("r1", 2), lease_s=1)
"""

KILL_POINTS = ["shots", "scenes", "keyframes", "videos", "orphans:shots", "orphans:scenes", "orphans:keyframes"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_at_each_point_between_commits(indexed: Path, point: str) -> None:
    script = _COMMIT_SCRIPT.format(tests=str(Path(__file__).parent), index=str(indexed))
    env = {**os.environ, EXIT_AFTER_COMMIT_ENV: point}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == TEST_EXIT_STATUS, killed.stderr
    # At once, vindex's readers see one whole run per video: r0 before the marker, r1 after.
    expected = "r0" if point in CHILD_TABLES else "r1"
    assert assert_agree(through_vindex(indexed)) == {"a": expected, "b": expected}
    # The next run (once the killed run's lease has passed) leaves plain Delta readers exact too.
    time.sleep(1.2)
    index = Index(str(indexed))
    index.collect_orphans(lease_s=1)
    assert index.abandon_stale_runs(lease_s=1) == ["r1"]
    assert assert_agree(through_delta(indexed)) == {"a": expected, "b": expected}


def _videos_and_runs(index_path: Path) -> tuple[dict[str, str], set[str]]:
    marker = assert_agree(through_delta(index_path))
    return marker, {r["run_id"] for r in Index(str(index_path)).read("runs").to_pylist()}


@pytest.mark.slow
@pytest.mark.parametrize("point", ["scenes"])  # every point is covered above, without Ray
def test_a_killed_vindex_run_then_a_run_with_other_settings(tmp_path: Path, point: str) -> None:
    source, index_path = tmp_path / "src", tmp_path / "idx"
    source.mkdir()
    for i in range(2):
        spec = synthetic.simple_spec([30, 30], "cut", contents=[2 * i, 2 * i + 1], width=96, height=64, seed=40 + i)
        synthetic.write_clip(source / f"clip{i}.mp4", spec)
    base = [sys.executable, "-m", "pipeline.cli", "run", str(source), "--index", str(index_path), "--quiet",
            "--set", "write.run_lease_s=1"]
    first = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    # Other settings re-index both videos; the run is killed right after its first commit to `point`.
    other = [*base, "--set", "keyframes.max_per_shot=1"]
    killed = subprocess.run(other, env={**os.environ, EXIT_AFTER_COMMIT_ENV: point},
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == TEST_EXIT_STATUS, killed.stdout + killed.stderr
    time.sleep(1.2)
    last = subprocess.run(other, capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stdout + last.stderr
    index = Index(str(index_path))
    videos = index.read("videos").to_pylist()
    owners = {str(v["video_id"]): str(v["run_id"]) for v in videos}
    for name, count in (("shots", "num_shots"), ("scenes", "num_scenes"), ("keyframes", "num_keyframes")):
        rows = DeltaTable(str(index_path / name)).to_pyarrow_table(columns=["video_id", "run_id"]).to_pylist()
        assert all(owners.get(str(r["video_id"])) == r["run_id"] for r in rows), f"{name}: rows of another run"
        per_video = {v["video_id"]: sum(1 for r in rows if r["video_id"] == v["video_id"]) for v in videos}
        assert per_video == {v["video_id"]: v[count] for v in videos}, name
    statuses = sorted(r["status"] for r in index.read("runs").to_pylist())
    assert statuses == ["abandoned", "ok", "ok"]
