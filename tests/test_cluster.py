"""A real two-node Ray cluster: `vindex submit --wait`, `vindex jobs ...`, a worker node killed mid-run.

The cluster is two `ray start --block` processes (head 127.0.0.2, worker node 127.0.0.3) in a
loopback-only network namespace of their own, stopped by PID (:mod:`testkit.cluster`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.index.store import Index
from testkit import synthetic
from testkit.cluster import WORKER_IP, LoopbackCluster, loopback_cluster, namespaces_available

pytestmark = pytest.mark.cluster

NODE_ENV = {
    # Spread actors over the nodes (instead of packing the first node), so that killing the
    # worker node always takes pipeline actors with it.
    "RAY_scheduler_spread_threshold": "0.0",
    # Declare a silent node dead after ~5 s instead of Ray's ~15 s default.
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}
#: Both nodes have one CPU; each must hold the whole pipeline once the other is gone:
#: planning 0.25 + one decode actor 0.25 + one model actor 0.5.
RUN_SETTINGS = [
    # Separate decode and model pools, as on a GPU cluster (CPU-only runs otherwise fuse them).
    "compute.fuse_on_cpu=false",
    "compute.decode_cpus=0.25",
    "compute.model_cpus=0.5",
    "compute.decode_actors=1",
    "compute.model_actors=1",
    "compute.model_threads=1",
    "compute.max_inflight_mb=128",
    "decode.threads=1",
    "write.commit_every_videos=1",
    # Two segments a video (80 frames): each video is stitched where its second segment is
    # modelled, from segments that may sit on either node (pipeline.execution.rendezvous).
    # Segments are a multiple of the shot network's step, window_frames - 50.
    "shots.window_frames=100",
    "decode.segment_frames=50",
]
VIDEOS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    if not namespaces_available():
        pytest.skip("needs root, `ray` and `unshare --net` for a loopback-only network namespace")
    with loopback_cluster(2, tmp_path_factory.mktemp("cluster"), node_env=NODE_ENV) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, synthetic.ClipTruth]]:
    folder = tmp_path_factory.mktemp("corpus")
    truths = {}
    for i in range(VIDEOS):
        spec = synthetic.simple_spec([40, 40], "cut", contents=[2 * i, 2 * i + 1], width=160, height=96, seed=i)
        truths[f"clip{i}.mp4"] = synthetic.write_clip(folder / f"clip{i}.mp4", spec)
    return folder, truths


def _job_id(stdout: str) -> str:
    match = re.search(r"submitted job (\S+) to http://127\.0\.0\.1:\d+", stdout)
    assert match, stdout
    return match.group(1)


def _committed(index_path: Path) -> int:
    index = Index(str(index_path))
    return index.read("videos", columns=["video_id"]).num_rows if index.exists("videos") else 0


def _tables(index_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every video table, without the run id, sorted."""
    index = Index(str(index_path))
    out = {}
    for name, drop in (
        ("videos", {"run_id", "indexed_at"}),
        ("shots", {"run_id"}),
        ("scenes", {"run_id"}),
        ("keyframes", {"run_id", "embedding", "thumbnail"}),
    ):
        rows = index.read(name).to_pylist()
        out[name] = sorted((tuple(v for k, v in sorted(row.items()) if k not in drop) for row in rows), key=repr)
    return out


def _wait_until_no_pipeline_actors(cluster: LoopbackCluster) -> None:
    """Until the actors of earlier jobs are gone."""
    deadline = time.monotonic() + 60
    while any(a["state"] == "ALIVE" and a["class_name"].startswith("MapWorker") for a in cluster.state("actors")):
        assert time.monotonic() < deadline, "actors of an earlier job are still alive"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def undisturbed(
    cluster: LoopbackCluster, corpus: tuple[Path, dict[str, synthetic.ClipTruth]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, subprocess.CompletedProcess[str]]:
    """The corpus indexed by `vindex submit --wait` on the intact cluster."""
    index_path = tmp_path_factory.mktemp("undisturbed") / "idx"
    args = ["submit", str(corpus[0]), "--index", str(index_path), "--wait"]
    result = cluster.vindex(*args, *[a for s in RUN_SETTINGS for a in ("--set", s)])
    return index_path, _job_id(result.stdout), result


def test_submit_wait_then_jobs_status_logs_and_stop(
    cluster: LoopbackCluster,
    corpus: tuple[Path, dict[str, synthetic.ClipTruth]],
    undisturbed: tuple[Path, str, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    index_path, job_id, result = undisturbed
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"job {job_id} SUCCEEDED" in result.stdout
    # the job's own log streamed through: the run's summary line
    assert re.search(rf"run \S+: {VIDEOS} videos ok, 0 failed, 0 unchanged, 0 deleted \({VIDEOS} listed\)", result.stdout)

    index = Index(str(index_path))
    videos = index.read("videos").to_pylist()
    assert sorted(Path(v["uri"]).name for v in videos) == sorted(corpus[1])
    assert {v["status"] for v in videos} == {"ok"}
    shots = [(s["video_id"], s["shot_index"]) for s in index.read("shots").to_pylist()]
    assert len(shots) == len(set(shots)) == sum(len(t.shots) for t in corpus[1].values()) == 2 * VIDEOS
    by_name = {Path(v["uri"]).name: v for v in videos}
    assert all(by_name[name]["num_frames"] == truth.num_frames for name, truth in corpus[1].items())
    assert [r["status"] for r in index.read("runs").to_pylist()] == ["ok"]

    status = cluster.vindex("jobs", "status", job_id)
    assert (status.returncode, status.stdout.split()[:2]) == (0, [job_id, "SUCCEEDED"])
    logs = cluster.vindex("jobs", "logs", job_id)
    assert logs.returncode == 0 and f"{VIDEOS} videos ok" in logs.stdout
    assert "pools: decode Pool(min_size=1, max_size=1" in logs.stdout
    listing = cluster.vindex("jobs", "list")
    assert any(line.split()[:2] == [job_id, "SUCCEEDED"] for line in listing.stdout.splitlines()), listing.stdout

    # A second job, not waited for, stopped while it runs.
    second = cluster.vindex(
        "submit", str(corpus[0]), "--index", str(tmp_path / "idx"), *[a for s in RUN_SETTINGS for a in ("--set", s)]
    )
    assert second.returncode == 0, second.stderr
    second_id = _job_id(second.stdout)
    assert second_id != job_id
    stop = cluster.vindex("jobs", "stop", second_id, "--wait")
    assert (stop.returncode, stop.stdout.strip()) == (0, f"job {second_id} STOPPED"), stop.stdout + stop.stderr
    status = cluster.vindex("jobs", "status", second_id)
    assert status.stdout.split()[:2] == [second_id, "STOPPED"]
    follow = cluster.vindex("jobs", "logs", second_id, "--follow")
    assert follow.returncode == 1 and f"job {second_id} STOPPED" in follow.stderr
    unknown = cluster.vindex("jobs", "status", "raysubmit_does_not_exist")
    assert unknown.returncode == 2 and "raysubmit_does_not_exist" in unknown.stderr


#: Run as a job on the head node: a segment modelled on the worker node by an actor that is
#: then gone (as Ray Data retires idle actors once every input is handed out) is read by the
#: head node's stitching side through the rendezvous.
OUTLIVES_SCRIPT = """
import numpy as np, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from pipeline.execution.rendezvous import RayGathering, segment_rendezvous

ray.init(address="auto")
worker = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == "%s")

def segment(index):
    payload = np.full(2**18, index + 1, np.float32)  # 1 MB: held in the object store, not inline
    return {"video_id": "v", "uri": "file:///v.mp4", "segment_index": index, "segment_count": 2,
            "start_frame": 50 * index, "end_frame": 50 * index + 50, "single": payload}

@ray.remote(num_cpus=0)
class Modeller:
    def __init__(self, rendezvous):
        self.gathering = RayGathering(rendezvous)
    def offer(self, record):
        return self.gathering.offer(record)

with segment_rendezvous("outlives") as rendezvous:
    there = NodeAffinitySchedulingStrategy(worker, soft=False)
    modeller = Modeller.options(scheduling_strategy=there).remote(rendezvous)
    assert ray.get(modeller.offer.remote(segment(0))) is None
    ray.kill(modeller)
    try:
        ray.get(modeller.offer.remote(segment(0)))
    except ray.exceptions.RayActorError:
        pass
    gathering = RayGathering(rendezvous)
    parts = gathering.offer(segment(1))
    kept = gathering.load(parts[0])
    print("SEGMENT", "kept" if kept is not None and np.array_equal(kept["single"], segment(0)["single"]) else "lost")
""" % WORKER_IP


def test_a_segment_outlives_its_actor_on_another_node(cluster: LoopbackCluster, tmp_path: Path) -> None:
    """Without the rendezvous's own copy the segment dies with the actor that put it, and the
    stitching actor models it again (a whole segment's work, for every actor retired)."""
    script = tmp_path / "outlives.py"
    script.write_text(OUTLIVES_SCRIPT)
    # Every node is on this machine: the job's workers import the checkout the tests run from.
    runtime_env = json.dumps({"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}})
    submit = ["ray", "job", "submit", "--address", cluster.address, "--runtime-env-json", runtime_env, "--"]
    submit += [sys.executable, str(script)]
    result = subprocess.run(cluster.netns(submit), capture_output=True, text=True, timeout=300, env=cluster.env)
    assert "SEGMENT kept" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]


#: Runs submitted at most until Ray places a pipeline actor on the worker node.
PLACEMENT_ATTEMPTS = 3


def _pipeline_actors_on(cluster: LoopbackCluster, node_id: str, index_path: Path) -> list[str]:
    """The pipeline actors alive on ``node_id`` once any is; [] if the run commits every video first."""
    deadline = time.monotonic() + 180
    while True:
        on_node = sorted(
            a["class_name"]
            for a in cluster.state("actors")
            if a["state"] == "ALIVE" and a.get("node_id") == node_id and a["class_name"].startswith("MapWorker")
        )
        if on_node or _committed(index_path) >= VIDEOS:
            return on_node
        assert time.monotonic() < deadline, "no pipeline actor on the worker node within 180 s"
        time.sleep(0.2)


def test_a_killed_worker_node_loses_nothing_and_duplicates_nothing(
    cluster: LoopbackCluster,
    corpus: tuple[Path, dict[str, synthetic.ClipTruth]],
    undisturbed: tuple[Path, str, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    assert undisturbed[2].returncode == 0, undisturbed[2].stderr[-3000:]
    if cluster.worker is None or cluster.worker.poll() is not None:
        cluster.start_worker()
    # Kill the worker node as soon as pipeline actors run there: their tasks, and the
    # decoded segments in that node's object store that the model actor has yet to read,
    # are lost with it. Ray places actors where it sees fit, and both pools fit on the head:
    # a run that used only the head tests nothing, so it is submitted again (seen in 1 of 3
    # clean CI runs).
    worker_node = next(n["node_id"] for n in cluster.state("nodes") if n["node_ip"] == WORKER_IP)
    for attempt in range(PLACEMENT_ATTEMPTS):
        _wait_until_no_pipeline_actors(cluster)  # every one found below is this job's
        index_path = tmp_path / f"idx{attempt}"
        submitted = cluster.vindex(
            "submit", str(corpus[0]), "--index", str(index_path), *[a for s in RUN_SETTINGS for a in ("--set", s)]
        )
        assert submitted.returncode == 0, submitted.stderr
        job_id = _job_id(submitted.stdout)
        on_worker = _pipeline_actors_on(cluster, worker_node, index_path)
        if on_worker:
            break
        cluster.vindex("jobs", "logs", job_id, "--follow")  # let it end before the next attempt
    else:
        pytest.fail(f"in {PLACEMENT_ATTEMPTS} runs Ray never placed a pipeline actor on the worker node")
    killed_at = time.monotonic()
    processes = cluster.kill_worker_node()
    committed_at_kill = _committed(index_path)
    assert committed_at_kill < VIDEOS

    while WORKER_IP in cluster.alive_node_ips():
        assert time.monotonic() - killed_at < 60, "the head never noticed the dead node"
        time.sleep(0.25)
    noticed_s = time.monotonic() - killed_at

    finished = cluster.vindex("jobs", "logs", job_id, "--follow")
    took_s = time.monotonic() - killed_at
    print(
        f"\nkilled {processes} processes of the worker node ({on_worker}) with {committed_at_kill}/{VIDEOS} "
        f"videos committed; node declared dead after {noticed_s:.1f} s; job ended {took_s:.1f} s after the kill"
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert f"{VIDEOS} videos ok, 0 failed" in finished.stdout

    mine, reference = _tables(index_path), _tables(undisturbed[0])
    assert {name: len(rows) for name, rows in mine.items()} == {name: len(rows) for name, rows in reference.items()}
    assert mine == reference
    shots = [(s["video_id"], s["shot_index"]) for s in Index(str(index_path)).read("shots").to_pylist()]
    assert len(shots) == len(set(shots)) == 2 * VIDEOS
    assert [r["status"] for r in Index(str(index_path)).read("runs").to_pylist()] == ["ok"]


#: A run of one video on the two 1-CPU nodes takes about a minute; one that waits for an actor
#: no node can hold never ends.
SMALL_NODES_TIMEOUT_S = 240


def test_default_settings_fit_their_actors_to_one_cpu_nodes_instead_of_waiting_forever(
    cluster: LoopbackCluster, corpus: tuple[Path, dict[str, synthetic.ClipTruth]], tmp_path: Path
) -> None:
    """Each fused actor asks for 1.5 CPUs by default: more than either node has, so the run shrinks it."""
    if cluster.worker is None or cluster.worker.poll() is not None:
        cluster.start_worker()
    _wait_until_no_pipeline_actors(cluster)
    args = ["submit", str(corpus[0] / "clip0.mp4"), "--index", str(tmp_path / "idx"), "--wait"]
    settings = ["--set", "compute.model_threads=1", "--set", "decode.threads=1", "--set", "compute.max_inflight_mb=128"]
    try:
        result = cluster.vindex(*args, *settings, timeout=SMALL_NODES_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or "")
        match = re.search(r"submitted job (\S+)", output)
        if match:
            cluster.vindex("jobs", "stop", match.group(1), "--wait")
        pytest.fail(f"the run was still waiting after {SMALL_NODES_TIMEOUT_S} s:\n{output[-3000:]}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 videos ok, 0 failed" in result.stdout
    assert "asks for 0.75 CPU instead of 1.5 (compute.model_cpus + compute.decode_cpus)" in result.stdout
    # Both actors start at once, one per node, and stay (a pool grown from one actor, or shrunk
    # back to one, left the second idle).
    assert (
        "model Pool(min_size=2, max_size=2, resources=Resources(num_cpus=0.75, num_gpus=0.0), initial_size=2)"
        in result.stdout
    )

    # An actor no node can ever hold: the job fails before any work, naming the resource.
    started = time.monotonic()
    args = ["submit", str(corpus[0] / "clip0.mp4"), "--index", str(tmp_path / "idx2"), "--wait"]
    refused = cluster.vindex(
        *args, "--set", "compute.fuse_on_cpu=false", "--set", "compute.model_cpus=2", timeout=SMALL_NODES_TIMEOUT_S
    )
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert "a model actor asks for 2 CPU (compute.model_cpus) but the largest node has 1 CPU" in refused.stdout
    print(f"\nthe refused job ended {time.monotonic() - started:.1f} s after its submission")
