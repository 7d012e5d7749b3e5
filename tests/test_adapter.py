"""The adapter's crash guard: attempts counted in a run-scoped actor, on public Ray APIs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.config import Config, config_from_dict
from pipeline.execution.adapter import (
    LEDGER_NAME_PREFIX,
    AttemptLedger,
    CrashGuard,
    apply_stage,
    attempt_ledger,
)
from pipeline.execution.pools import PLAN_CPUS, Resources
from pipeline.execution.processes import AUTOGROUP_SELF, autogroups_on
from pipeline.execution.ray_runtime import configure_data
from pipeline.execution.stages import MAX_WORKER_DEATHS, PlanStage, Stage


def test_the_ledger_counts_attempts_that_never_ended() -> None:
    ledger = AttemptLedger()
    assert [ledger.begin("v/0"), ledger.begin("v/0"), ledger.begin("v/1")] == [0, 1, 0]
    ledger.end("v/0")
    assert ledger.begin("v/0") == 0


def test_a_stage_fails_a_video_that_killed_its_worker_too_often(tmp_path: Path) -> None:
    ledger = AttemptLedger()
    stage = PlanStage(Config())
    stage.guard_with(lambda name: ledger)
    clip = tmp_path / "any.mp4"
    clip.write_bytes(b"\0" * 100)
    row = {"video_id": "v", "uri": clip.as_uri(), "location": str(clip), "size_bytes": 100}
    for _ in range(MAX_WORKER_DEATHS):  # workers that began the segment and died
        ledger.begin("v/0")
    (out,) = stage(row)  # type: ignore[arg-type]
    assert (out["error_stage"], out["error_message"]) == (
        "probe",
        (
            f"the plan worker process died {MAX_WORKER_DEATHS} times on this video (a crash in native code, "
            "or killed for memory); skipped"
        ),
    )
    # the guard's own attempt ended: the next run of the key starts from no death
    assert ledger.begin("v/0") == 0


def test_crash_guard_counts_across_processes_in_a_run_scoped_actor(ray_local) -> None:  # type: ignore[no-untyped-def]
    ray = ray_local

    @ray.remote(num_cpus=0)
    def begin_elsewhere(guard: CrashGuard, key: str) -> int:
        return guard.begin(key)

    with attempt_ledger("test-run") as ledger:
        guard = CrashGuard(ledger, "decode")
        assert guard.begin("v/0") == 0
        assert ray.get(begin_elsewhere.remote(guard, "v/0")) == 1  # another worker retried it
        assert CrashGuard(ledger, "models").begin("v/0") == 0  # each stage counts on its own
        guard.end("v/0")
        assert ray.get(begin_elsewhere.remote(guard, "v/0")) == 0
        assert ray.get_actor(LEDGER_NAME_PREFIX + "test-run") is not None
    # ended with the run (ray.kill returns before the GCS has forgotten the name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get_actor(LEDGER_NAME_PREFIX + "test-run")
        except ValueError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the run's ledger actor outlived the run")


def test_a_videos_planned_segments_leave_planning_one_block_each(ray_local, mixed_clip) -> None:  # type: ignore[no-untyped-def]
    """Ray Data gives an actor whole blocks: segments planned into one block would all go to one
    actor, and a second node's actor would sit idle while the first works through the video."""
    import ray.data

    from pipeline.execution.records import listing_table

    path, truth = mixed_clip
    config = config_from_dict({"decode": {"segment_frames": 150}})
    configure_data(config)
    row = {"video_id": "v", "uri": path.as_uri(), "location": str(path), "size_bytes": path.stat().st_size}
    listing = listing_table([row])
    planned = apply_stage(
        ray.data.from_arrow(listing), PlanStage, {"config": config}, Resources(num_cpus=PLAN_CPUS)
    ).materialize()
    segments = -(-truth.num_frames // 150)
    assert segments >= 2
    assert planned.count() == segments
    blocks = [ray.get(ref) for ref in planned.get_internal_block_refs()]
    assert [block.num_rows for block in blocks] == [1] * segments


class _Rendezvous(Stage):
    """A stage whose calls wait for each other: they meet only if the actor runs two at once."""

    name = "rendezvous"
    stateful = True
    concurrent_calls = 2

    def setup(self) -> None:
        self.barrier = threading.Barrier(2, timeout=20)

    def process(self, row):  # type: ignore[no-untyped-def]
        try:
            self.barrier.wait()
            met = "met"
        except threading.BrokenBarrierError:
            met = "alone"
        return [{**row, "warnings": [met]}]


def test_a_stage_of_concurrent_calls_gets_that_many_calls_at_once_in_one_actor(ray_local) -> None:  # type: ignore[no-untyped-def]
    """The fused decode+models stage decodes one segment while another is in the networks."""
    import ray.cloudpickle
    import ray.data

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the stage class, to the workers
    listing = _listing_batch(2)
    dataset = ray.data.from_arrow([listing.slice(0, 1), listing.slice(1, 1)])
    out = apply_stage(dataset, _Rendezvous, {"config": Config()}, Resources(num_cpus=0.5), pool_size=1).take_all()
    assert sorted(row["warnings"][0] for row in out) == ["met", "met"]


#: A run's driver in a session of its own, as Ray's job supervisor starts a submitted job's:
#: it runs a pool of two actors of a stage that reports where the CPU scheduler put each.
_DRIVER = """
import json, os, sys

import ray
import ray.data

from pipeline.config import config_from_dict
from pipeline.execution.adapter import apply_stage
from pipeline.execution.pools import Resources
from pipeline.execution.ray_private import loopback_only
from pipeline.execution.records import listing_table
from pipeline.execution.stages import Stage


class WhereRun(Stage):
    name = "where"
    stateful = True

    def process(self, row):
        with open("/proc/self/autogroup") as f:
            group = f.read().strip()
        where = {"own_session": os.getsid(0) == os.getpid(), "niceness": os.getpriority(os.PRIO_PROCESS, 0), "group": group}
        return [{**row, "warnings": [json.dumps(where)]}]


with loopback_only():  # a second driver of the test's embedded Ray, on loopback as it is
    ray.init(address=sys.argv[1], _node_ip_address="127.0.0.1", logging_level="ERROR", log_to_driver=False)
config = config_from_dict({"compute": {"background_actors": sys.argv[2] == "on"}})
size = int(sys.argv[3])
rows = [{"video_id": f"v{i}", "uri": f"file:///v{i}.mp4", "location": f"/v{i}.mp4", "size_bytes": 1} for i in range(4)]
out = apply_stage(
    ray.data.from_arrow(listing_table(rows)), WhereRun, {"config": config}, Resources(num_cpus=0.25), size, size, initial_pool_size=size
).take_all()
print(json.dumps([json.loads(row["warnings"][0]) for row in out]))
"""


@pytest.mark.skipif(not autogroups_on(), reason="this kernel does not group CPU time by session")
@pytest.mark.parametrize(
    ("setting", "actors", "behind"),
    [("on", 2, True), pytest.param("off", 2, False, marks=pytest.mark.slow), pytest.param("on", 1, False, marks=pytest.mark.slow)],
)
def test_actors_beside_a_driver_of_another_session_run_behind_it(ray_local, setting: str, actors: int, behind: bool) -> None:  # type: ignore[no-untyped-def]
    """Ray nices its workers (15), but where the kernel shares CPU time between sessions a
    niceness counts only inside one: a submitted job's driver, in a session of its own, shared
    the head's core with a model actor as an equal and was held off for 10-20 s at a time. The
    actors of a pool of two or more on the driver's node take a session and CPU group of their
    own at their niceness, unless ``compute.background_actors`` is off."""
    import json

    address = ray_local.get_runtime_context().gcs_address
    driver = subprocess.run(
        [sys.executable, "-c", _DRIVER, address, setting, str(actors)],
        capture_output=True, text=True, timeout=120, start_new_session=True,
    )  # fmt: skip
    assert driver.returncode == 0, driver.stderr[-3000:]
    where = json.loads(driver.stdout.strip().splitlines()[-1])
    assert len(where) == 4
    with open(AUTOGROUP_SELF) as f:
        ours = f.read().strip()  # the session Ray's node runs in, the actors' unless they leave it
    for actor in where:
        if behind:
            assert actor["niceness"] > 0 and actor["own_session"], actor
            assert actor["group"] != ours and actor["group"].endswith(f"nice {actor['niceness']}"), actor
        else:
            assert not actor["own_session"] and actor["group"] == ours, actor


def _actor_pool_asked(monkeypatch: pytest.MonkeyPatch, resources: Resources, calls: int | None = None) -> object:
    """The ``ActorPoolStrategy`` arguments ``apply_stage`` gives a ``_Rendezvous`` pool of two."""
    import ray.data

    seen: dict[str, object] = {}

    class Dataset:
        def map_batches(self, fn, **kwargs):  # type: ignore[no-untyped-def]
            seen.update(kwargs)
            return self

    monkeypatch.setattr(ray.data, "ActorPoolStrategy", lambda **kwargs: kwargs)
    apply_stage(Dataset(), _Rendezvous, {"config": Config()}, resources, pool_size=2, calls=calls)  # type: ignore[arg-type]
    return seen["compute"]


def test_a_concurrent_stage_queues_no_more_calls_on_an_actor_than_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Data fills the actor on the node holding a block while it has room: a deeper queue let
    one actor take a whole video's segments while another node's actor idled."""
    assert _actor_pool_asked(monkeypatch, Resources(num_cpus=1.5)) == {
        "min_size": 1,
        "max_size": 2,
        "initial_size": 1,
        "max_concurrent_calls_per_actor": 2,
        "enable_true_multi_threading": True,
        "max_tasks_in_flight_per_actor": 2,
    }


def test_an_actor_told_to_take_one_call_queues_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``calls=1`` (a model actor on one network thread) leaves Ray Data's one call per actor."""
    assert _actor_pool_asked(monkeypatch, Resources(num_cpus=0.75), calls=1) == {"min_size": 1, "max_size": 2, "initial_size": 1}
    more = _actor_pool_asked(monkeypatch, Resources(num_cpus=1.5), calls=5)
    assert more["max_tasks_in_flight_per_actor"] == 2  # type: ignore[index]  # never above the stage's


class _SlowSetup(Stage):
    """A stateful stage whose setup waits until the test lets it go (or fails, if told to)."""

    name = "slow-setup"
    stateful = True
    release = threading.Event()
    fail = False

    def setup(self) -> None:
        assert type(self).release.wait(timeout=20)
        if type(self).fail:
            raise RuntimeError("weights missing")
        self.ready = True

    def process(self, row):  # type: ignore[no-untyped-def]
        return [{**row, "warnings": ["processed" if self.ready else "not set up"]}]


def _listing_batch(n: int = 1):  # type: ignore[no-untyped-def]
    from pipeline.execution.records import listing_table

    return listing_table([{"video_id": f"v{i}", "uri": f"file:///v{i}.mp4", "location": f"/v{i}.mp4", "size_bytes": 1} for i in range(n)])


def test_a_stage_actor_is_ready_before_its_stage_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Data hands an actor no work until its constructor returns: a constructor that loaded
    the weights let the first node's actor take the segments meant for the others."""
    from pipeline.execution.adapter import StageActor

    monkeypatch.setattr(_SlowSetup, "release", threading.Event())
    actor = StageActor(_SlowSetup, {"config": Config()})  # returns while setup still waits
    assert not actor._built.done()
    out: list[object] = []
    call = threading.Thread(target=lambda: out.append(actor(_listing_batch())))
    call.start()
    time.sleep(0.2)
    assert not out  # the call waits for the setup
    _SlowSetup.release.set()
    call.join(timeout=20)
    (table,) = out
    assert table.column("warnings").to_pylist() == [["processed"]]  # type: ignore[attr-defined]


def test_a_stage_actor_whose_setup_failed_raises_it_from_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.execution.adapter import StageActor

    release = threading.Event()
    release.set()
    monkeypatch.setattr(_SlowSetup, "release", release)
    monkeypatch.setattr(_SlowSetup, "fail", True)
    actor = StageActor(_SlowSetup, {"config": Config()})
    for _ in range(2):
        with pytest.raises(RuntimeError, match="weights missing"):
            actor(_listing_batch())


def test_a_model_stage_call_runs_with_the_actors_torch_threads_on_any_thread() -> None:
    """Torch keeps a thread count per thread once used: the setup thread's setting does not
    reach the thread that calls, so each call sets its own."""
    import torch

    from pipeline.execution.stages import ModelStage

    stage = ModelStage(Config())
    stage.device = torch.device("cpu")
    stage.call_threads = 2
    seen: list[int] = []

    def call() -> None:
        torch.set_num_threads(1)  # what a Ray worker's thread starts with (OMP_NUM_THREADS=1)
        stage._use_call_threads()
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert seen == [2]


def test_a_runs_input_is_described_on_the_driver_without_a_task(ray_local, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """``ray.data.from_arrow`` asks a remote task per table for its metadata, each a worker
    process to start on a fresh node; the run's input needs none."""
    import pyarrow as pa
    from ray.data import read_api

    from pipeline.execution.ray_runtime import dataset_of

    def no_task(*args: object, **kwargs: object) -> None:
        raise AssertionError("a remote task to describe the input")

    monkeypatch.setattr(read_api, "cached_remote_fn", no_task)
    with pytest.raises(AssertionError, match="remote task"):
        read_api.from_arrow(pa.table({"a": [1]}))  # the check sees what it is meant to
    schema = pa.schema([("video_id", pa.string()), ("etag", pa.string())])
    tables = [pa.Table.from_pylist([{"video_id": f"v{i}", "etag": None}], schema=schema) for i in range(3)]
    dataset = dataset_of(tables)
    assert dataset.num_blocks() == 3
    assert dataset.schema().base_schema == schema  # an all-null column keeps its type
    assert sorted(row["video_id"] for row in dataset.take_all()) == ["v0", "v1", "v2"]


class _FanOut(Stage):
    """A stateless stage that turns each row into four, as planning splits a video into segments."""

    name = "fan-out"

    def process(self, row):  # type: ignore[no-untyped-def]
        return [{**row, "segment_index": i} for i in range(4)]


class _Hold(Stage):
    """A stateful stage whose calls each hold their row for a while and record when they ran."""

    name = "hold"
    stateful = True
    concurrent_calls = 2

    def process(self, row):  # type: ignore[no-untyped-def]
        started = time.time()
        time.sleep(2)
        return [{**row, "warnings": [repr(started), repr(time.time())]}]


def test_a_stateless_stage_runs_at_most_the_tasks_it_is_given() -> None:
    import ray.data

    seen: dict[str, object] = {}

    class Dataset:
        def map_batches(self, fn, **kwargs):  # type: ignore[no-untyped-def]
            seen.update(kwargs)
            return self

    apply_stage(Dataset(), PlanStage, {"config": Config()}, Resources(num_cpus=PLAN_CPUS), tasks=4)  # type: ignore[arg-type]
    assert isinstance(seen["compute"], ray.data.TaskPoolStrategy) and seen["compute"].size == 4
    assert not {"concurrency", "_generator_backpressure_num_objects"} & set(seen)  # deprecated: they warn on the console
    seen.clear()
    apply_stage(Dataset(), PlanStage, {"config": Config()}, Resources(num_cpus=PLAN_CPUS))  # type: ignore[arg-type]
    assert "compute" not in seen


def test_every_row_a_task_emits_reaches_the_actors_before_the_first_finishes(ray_local) -> None:  # type: ignore[no-untyped-def]
    """Four rows from one task, four calls' room in two actors: all four run at once. (On one
    embedded Ray this held with Ray's default of two blocks ahead and with Ray Data's
    reservations too: the late segments showed on a cluster of two nodes. This guards the
    shape here.)"""
    import ray.cloudpickle
    import ray.data

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the stage classes, to the workers
    configure_data(Config())
    planned = apply_stage(ray.data.from_arrow(_listing_batch(1)), _FanOut, {"config": Config()}, Resources(num_cpus=0.25))
    out = apply_stage(planned, _Hold, {"config": Config()}, Resources(num_cpus=0.5), min_pool_size=2, pool_size=2).take_all()
    assert sorted(row["segment_index"] for row in out) == [0, 1, 2, 3]
    starts = [float(row["warnings"][0]) for row in out]
    ends = [float(row["warnings"][1]) for row in out]
    assert max(starts) < min(ends), "a row waited for another row's call to finish before it was handed out"
