"""Storage faults against the real local S3 server, injected by a loopback proxy in front of it.

Each faulty object ends with exactly one status row, transient faults are retried until
they pass, and the next run retries what failed.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import config_from_dict
from pipeline.index.store import Index
from pipeline.execution.runner import run_index
from pipeline.sources.reading import READ_ATTEMPTS
from testkit import synthetic

BUCKET = "vindex-faults"


def test_storage_faults_each_end_in_one_status_row(ray_local, s3, faulty_s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = tmp_path / "clip.mp4"
    truth = synthetic.write_clip(clip, synthetic.simple_spec([30, 30], "cut", contents=[4, 5], seed=11))
    s3.mkdir(BUCKET)
    names = ["ok", "flaky500", "dropped", "denied", "broken500", "vanished"]
    for name in names:
        s3.put(str(clip), f"{BUCKET}/v/{name}.mp4")
    faulty_s3.fail(f"{BUCKET}/v/flaky500.mp4", "500", times=3)
    faulty_s3.fail(f"{BUCKET}/v/dropped.mp4", "drop", times=2)
    faulty_s3.fail(f"{BUCKET}/v/denied.mp4", "403")
    faulty_s3.fail(f"{BUCKET}/v/broken500.mp4", "500")
    faulty_s3.fail(f"{BUCKET}/v/vanished.mp4", "delete", times=1)

    config = config_from_dict({"storage": {"endpoint_url": faulty_s3.endpoint}})
    index_uri = str(tmp_path / "index")
    summary = run_index(f"s3://{BUCKET}/v", index_uri, config, show_progress=False)
    assert (summary.counts["listed"], summary.counts["ok"], summary.counts["failed"]) == (6, 3, 3)

    videos = {Path(v["uri"]).stem: v for v in Index(index_uri).read("videos").to_pylist()}
    assert sorted(videos) == sorted(names)  # exactly one row each
    for name in ("ok", "flaky500", "dropped"):
        assert (videos[name]["status"], videos[name]["num_frames"], videos[name]["num_shots"]) == ("ok", truth.num_frames, 2)
    failed = {name: (videos[name]["error_stage"], videos[name]["error_message"]) for name in ("denied", "broken500", "vanished")}
    assert all(v["status"] == "failed" for k, v in videos.items() if k in failed)
    assert failed["denied"][0] == "probe" and "access denied" in failed["denied"][1]
    assert failed["vanished"][0] == "probe" and "object not found" in failed["vanished"][1]
    assert failed["broken500"] == (
        "probe", f"reading the object failed after {READ_ATTEMPTS} attempts: [Errno 121] Internal Server Error"
    )
    # Transient faults were retried: each flaky object was asked for again after its faults;
    # the persistent 500 was asked for at least once per attempt of ours; a 403 is not retried.
    assert faulty_s3.hits[f"{BUCKET}/v/flaky500.mp4"] > 3
    assert faulty_s3.hits[f"{BUCKET}/v/dropped.mp4"] > 2
    assert faulty_s3.hits[f"{BUCKET}/v/broken500.mp4"] >= READ_ATTEMPTS
    assert faulty_s3.hits[f"{BUCKET}/v/denied.mp4"] < faulty_s3.hits[f"{BUCKET}/v/broken500.mp4"]
    shots = Index(index_uri).read("shots", columns=["video_id", "shot_index"]).to_pylist()
    assert len(shots) == len({(s["video_id"], s["shot_index"]) for s in shots}) == 3 * 2

    # The store recovers: the next run retries the failures, and the vanished object is marked deleted.
    faulty_s3.clear()
    again = run_index(f"s3://{BUCKET}/v", index_uri, config, show_progress=False)
    assert (again.counts["listed"], again.counts["unchanged"], again.counts["ok"], again.counts["deleted"]) == (5, 3, 2, 1)
    latest = {Path(v["uri"]).stem: v["status"] for v in Index(index_uri).read("videos").to_pylist()}
    assert latest == {"ok": "ok", "flaky500": "ok", "dropped": "ok", "denied": "ok", "broken500": "ok", "vanished": "deleted"}
    shots = Index(index_uri).read("shots", columns=["video_id", "shot_index"]).to_pylist()
    assert len(shots) == len({(s["video_id"], s["shot_index"]) for s in shots}) == 5 * 2
