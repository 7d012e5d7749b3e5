"""The driver's loop over finished videos, with Ray's part replaced by a fixed stream of blocks.

The workers stitch; the driver takes each finished video once, tells the rendezvous which
longer videos it has, and gives a video that never finished one failed row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from pipeline.algorithms.stitch import VideoRows, video_row
from pipeline.config import Config, config_from_dict
from pipeline.digests import Digests
from pipeline.execution import runner
from pipeline.execution.committer import Committer
from pipeline.execution.pools import Pool, PoolPlan, Resources
from pipeline.execution.records import FinishedVideo, finished_table
from pipeline.execution.stages import LastVideo
from pipeline.index.store import Index


def listing(video_id: str) -> dict[str, Any]:
    return {"video_id": video_id, "uri": f"file:///corpus/{video_id}.mp4", "location": f"/corpus/{video_id}.mp4",
            "size_bytes": 100, "etag": None, "mtime": None}  # fmt: skip


def finished(video_id: str, segments: int, frames: int) -> FinishedVideo:
    row = video_row({**listing(video_id), "num_frames": frames}, status="ok", run_id="r", config_digest="out")
    shot = {"video_id": video_id, "shot_index": 0, "start_frame": 0, "end_frame": frames - 1, "run_id": "r"}
    return FinishedVideo.of(VideoRows(row, shots=[shot]), frames, segments)


class Rendezvous:
    """Stands for the rendezvous actor: records what the driver closes."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    @property
    def close(self) -> Rendezvous:
        return self

    def remote(self, video_ids: list[str]) -> None:
        self.closed.extend(video_ids)


class Blocks:
    def __init__(self, blocks: list[pa.Table]) -> None:
        self.blocks = blocks

    def iter_batches(self, **_: Any) -> Iterator[pa.Table]:
        yield from self.blocks


def test_each_video_is_taken_once_and_one_that_never_finished_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rendezvous = Rendezvous()
    a, b = finished("a", 3, 300), finished("b", 1, 120)
    # "a" arrives twice (a retried segment racing its first finish); "c" never arrives.
    blocks = Blocks([finished_table([a]), finished_table([b, a]), finished_table([])])

    @contextlib.contextmanager
    def actor(run_id: str) -> Iterator[Any]:
        yield rendezvous

    monkeypatch.setattr(runner, "init_ray", lambda config: None)
    monkeypatch.setattr(runner, "configure_data", lambda config, **settings: None)
    monkeypatch.setattr(runner, "_pools", lambda config: SimpleNamespace(reserve_per_operator=True))
    monkeypatch.setattr(runner, "run_bookkeeper", actor)
    monkeypatch.setattr(runner, "_pipeline", lambda *args: blocks)

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    committer = Committer(index, every=100)
    summary = runner.RunSummary("r", "idx", "src", dict(ok=0, failed=0, frames=0))
    digests = Digests("out", "der")
    rows = [listing(v) for v in ("a", "b", "c")]
    runner._process(rows, Config(), None, "r", digests, committer, summary, show_progress=False)

    assert (summary.counts["ok"], summary.counts["failed"], summary.counts["frames"], summary.shots) == (2, 1, 420, 2)
    assert rendezvous.closed == ["a"]  # the longer video, once: its segments may go
    (lost,) = summary.failures
    assert lost.uri == "file:///corpus/c.mp4" and lost.stage == "stitch" and "lost this video's segments" in lost.message
    committer.flush()
    videos = {r["video_id"]: r["status"] for r in index.read("videos").to_pylist()}
    assert videos == {"a": "ok", "b": "ok", "c": "failed"}
    assert sorted(r["video_id"] for r in index.read("shots").to_pylist()) == ["a", "b"]


def test_a_run_starts_one_bookkeeping_actor_for_its_ledger_and_rendezvous(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every actor is a worker process to start: the run's ledger and rendezvous share one."""
    from pipeline.execution import ray_runtime
    from pipeline.execution.adapter import BOOKKEEPER_NAME_PREFIX, RunBookkeeper

    started: list[tuple[type, str]] = []
    handed: list[Any] = []

    @contextlib.contextmanager
    def recording_actor(cls: type, name: str) -> Iterator[Any]:
        started.append((cls, name))
        handed.append(Rendezvous())
        yield handed[-1]

    monkeypatch.setattr(ray_runtime, "run_actor", recording_actor)
    monkeypatch.setattr(runner, "init_ray", lambda config: None)
    monkeypatch.setattr(runner, "configure_data", lambda config, **settings: None)
    monkeypatch.setattr(runner, "_pools", lambda config: SimpleNamespace(reserve_per_operator=True))
    given: list[Any] = []
    monkeypatch.setattr(runner, "_pipeline", lambda *args: given.extend(args) or Blocks([finished_table([])]))

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    summary = runner.RunSummary("r", "idx", "src", dict(ok=0, failed=0, frames=0))
    runner._process([listing("a")], Config(), None, "r", Digests("o", "d"), Committer(index, 100), summary, False)

    assert started == [(RunBookkeeper, BOOKKEEPER_NAME_PREFIX + "r")]
    ledger, finishing = given[4], given[5]
    assert ledger is handed[0] and finishing.rendezvous is handed[0]


def test_the_bookkeeper_is_a_ledger_and_a_rendezvous_apart() -> None:
    from pipeline.execution.adapter import RunBookkeeper
    from pipeline.execution.rendezvous import Part

    book = RunBookkeeper()
    assert (book.begin("decode/v/0"), book.begin("decode/v/0"), book.unfinished("decode/v/0")) == (0, 1, 2)
    book.end("decode/v/0")
    assert book.unfinished("decode/v/0") == 0
    parts = book.offer("v", 1, Part(0, 0, 10, "held"))
    assert parts == [Part(0, 0, 10, "held")]
    book.close(["v"])
    assert book.offer("v", 1, Part(0, 0, 10, "held")) is None and book.waiting() == 0


@pytest.mark.parametrize(("videos", "blocks"), [(1, 1), (3, 1), (20, 3), (2000, 200), (5000, 200)])
def test_planning_gets_a_few_videos_a_task_and_at_most_200_tasks(
    monkeypatch: pytest.MonkeyPatch, videos: int, blocks: int
) -> None:
    """Each planning task in flight is a worker process to start: a small run plans in one."""
    given: list[list[pa.Table]] = []
    monkeypatch.setattr(runner, "dataset_of", lambda tables: given.append(tables) or "dataset")
    monkeypatch.setattr(runner, "apply_stage", lambda dataset, *args, **kwargs: dataset)
    pools = runner.PoolPlan(decode=None, model=runner.Pool(1, 1, runner.Resources(num_cpus=1)))
    rows = [listing(f"v{i}") for i in range(videos)]
    assert runner._pipeline(rows, Config(), None, pools, None, None) == "dataset"  # type: ignore[arg-type]
    (tables,) = given
    assert len(tables) == blocks
    assert [r["video_id"] for t in tables for r in t.to_pylist()] == [r["video_id"] for r in rows]


@pytest.mark.parametrize(
    ("model_threads", "cpus", "calls"),
    [(0, 1.5, 2), (0, 0.75, 1), (1, 1.5, 1), (2, 0.75, 2), (0, 4.0, 2)],
)
def test_a_model_actor_on_one_thread_takes_one_call_at_a_time(
    monkeypatch: pytest.MonkeyPatch, model_threads: int, cpus: float, calls: int
) -> None:
    """Two calls on one network thread take turns on one core with two segments in memory: the
    fused actor takes two at once only where it runs its networks on two threads or more."""
    from pipeline.config import ComputeConfig
    from pipeline.execution.stages import DecodeAndModelStage, PlanStage

    asked: dict[type, object] = {}
    monkeypatch.setattr(runner, "dataset_of", lambda tables: "dataset")
    monkeypatch.setattr(
        runner, "apply_stage", lambda dataset, stage_cls, *args, **kwargs: asked.update({stage_cls: kwargs.get("calls")}) or dataset
    )
    pools = runner.PoolPlan(decode=None, model=runner.Pool(2, 2, runner.Resources(num_cpus=cpus)), nodes=2)
    config = Config(compute=ComputeConfig(model_threads=model_threads))
    runner._pipeline([listing("v0")], config, None, pools, None, None)  # type: ignore[arg-type]
    assert asked[DecodeAndModelStage] == calls
    assert asked[PlanStage] is None  # planning runs as tasks


@pytest.mark.parametrize(
    ("model_pool", "model_threads", "expected"),
    [
        (2, 1, LastVideo("c", 2)),  # two 1-thread actors: a segment each at once
        (1, 2, LastVideo("c", 2)),  # one actor of two threads: two calls at once
        (3, 2, LastVideo("c", 6)),
        (1, 1, None),  # one segment at a time: nothing to end together
    ],
)
def test_videos_go_largest_first_and_the_last_is_planned_to_end_the_run_together(
    monkeypatch: pytest.MonkeyPatch, model_pool: int, model_threads: int, expected: LastVideo | None
) -> None:
    given: dict[str, dict[str, object]] = {}

    def capture(dataset: object, stage_cls: type, kwargs: dict[str, object], *args: object, **options: object) -> object:
        given[stage_cls.__name__] = kwargs
        return dataset

    blocks: list[pa.Table] = []
    monkeypatch.setattr(runner, "apply_stage", capture)
    monkeypatch.setattr(runner, "dataset_of", lambda tables: blocks.extend(tables) or "dataset")
    # Listed in URI order; the largest files go first, ties in listing order, the smallest last.
    sizes = {"a": 10, "b": 30, "c": 5, "d": 30, "e": 20}
    rows = [{"video_id": v, "uri": f"file:///{v}.mp4", "location": f"file:///{v}.mp4", "size_bytes": n} for v, n in sizes.items()]
    pools = PoolPlan(decode=None, model=Pool(1, model_pool, Resources(num_cpus=1.0)))
    config = config_from_dict({"compute": {"model_threads": model_threads}})
    runner._pipeline(rows, config, None, pools, ledger=None, finishing=None)  # type: ignore[arg-type]
    assert [v for block in blocks for v in block.column("video_id").to_pylist()] == ["b", "d", "e", "a", "c"]
    assert given["PlanStage"]["last"] == expected
    assert "last" not in given["DecodeAndModelStage"]
