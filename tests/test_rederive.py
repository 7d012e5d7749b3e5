"""Settings by effect: scene settings derive scenes again from stored shot embeddings without
decoding; settings that change nothing (threads, batch sizes) re-index nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import load_config
from pipeline.index.store import Index
from pipeline.execution.rederive import scenes_from_stored_shots
from pipeline.execution.runner import run_index
from pipeline.algorithms.stitch import scene_rows
from testkit import synthetic


def test_scene_settings_rederive_without_decoding(ray_local, mixed_clip: tuple[Path, synthetic.ClipTruth], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, index_path = tmp_path / "src", str(tmp_path / "idx")
    source.mkdir()
    (source / "mixed.mp4").write_bytes(mixed_clip[0].read_bytes())
    first = run_index(str(source), index_path, load_config(None), show_progress=False)
    assert first.counts["ok"] == 1 and first.counts["frames"] == mixed_clip[1].num_frames
    index = Index(index_path)
    shots_before = index.read("shots").sort_by("shot_index").to_pylist()
    keyframes_before = index.read("keyframes").sort_by("frame").to_pylist()
    assert all(s["embedding"] is not None and len(s["embedding"]) == 1280 for s in shots_before)

    # Settings that change nothing: nothing is decoded or written.
    idle = run_index(str(source), index_path, load_config(None, {"decode.threads": 1, "inference.embed_batch_frames": 4,
                                                                  "inference.shot_batch_windows": 2}), show_progress=False)
    assert (idle.counts["unchanged"], idle.counts["frames"], idle.rederived) == (1, 0, 0)

    # Every boundary below 0.99 cohesion starts a scene: one scene per shot, without decoding.
    split = load_config(None, {"scenes.threshold": 0.99})
    again = run_index(str(source), index_path, split, show_progress=False)
    assert (again.counts["changed"], again.counts["frames"], again.rederived, again.counts["ok"]) == (1, 0, 1, 1)
    video = index.read("videos").to_pylist()[0]
    shots = index.read("shots").sort_by("shot_index").to_pylist()
    scenes = index.read("scenes").sort_by("scene_index").to_pylist()
    keyframes = index.read("keyframes").sort_by("frame").to_pylist()
    assert video["run_id"] == again.run_id and video["num_scenes"] == len(scenes) == len(shots)
    assert {r["run_id"] for r in shots + scenes + keyframes} == {again.run_id}
    # Shots and keyframes are the same rows; only the scene labels moved.
    strip = lambda rows, drop: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert strip(shots, {"run_id"}) == strip(shots_before, {"run_id"})
    assert strip(keyframes, {"run_id", "scene_index"}) == strip(keyframes_before, {"run_id", "scene_index"})
    assert [k["scene_index"] for k in keyframes] == [k["shot_index"] for k in keyframes]
    # The same scenes as indexing from scratch with those settings would give.
    embeddings = np.asarray([s["embedding"] for s in shots], np.float32)
    expected = scene_rows(shots, embeddings, split.scenes, again.run_id)
    assert [(s["first_shot"], s["last_shot"], s["start_s"], s["end_s"]) for s in scenes] == [
        (s["first_shot"], s["last_shot"], s["start_s"], s["end_s"]) for s in expected
    ]
    runs = {r["run_id"]: r for r in index.read("runs").to_pylist()}
    assert (runs[again.run_id]["rederived"], runs[idle.run_id]["rederived"]) == (1, 0)
    assert run_index(str(source), index_path, split, show_progress=False).counts["unchanged"] == 1
    # On request, with no setting changed: derived again, still without decoding.
    forced = run_index(str(source), index_path, split, show_progress=False, rederive_scenes=True)
    assert (forced.rederived, forced.counts["frames"], forced.counts["unchanged"]) == (1, 0, 0)


def test_videos_indexed_before_shots_kept_embeddings_are_reindexed(tmp_path: Path) -> None:
    from pipeline.index.schemas import to_table

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    video = {"video_id": "v", "uri": "file:///v.mp4", "status": "ok", "run_id": "r0", "num_scenes": 1}
    shot = {"video_id": "v", "shot_index": 0, "start_frame": 0, "end_frame": 9, "start_s": 0.0, "end_s": 0.4, "run_id": "r0"}
    index.commit_videos({"videos": to_table("videos", [video]), "shots": to_table("shots", [shot])})
    result = scenes_from_stored_shots(index, ["v"], load_config(None), "r1", "s")
    assert result.rows == [] and result.not_derivable == ["v"]


def test_videos_indexed_before_shots_kept_colour_histograms_are_reindexed(tmp_path: Path) -> None:
    from pipeline.index.schemas import to_table

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    video = {"video_id": "v", "uri": "file:///v.mp4", "status": "ok", "run_id": "r0", "num_scenes": 1}
    shot = {"video_id": "v", "shot_index": 0, "start_frame": 0, "end_frame": 9, "start_s": 0.0, "end_s": 0.4, "run_id": "r0",
            "embedding": [1.0] + [0.0] * 1279}
    index.commit_videos({"videos": to_table("videos", [video]), "shots": to_table("shots", [shot])})
    result = scenes_from_stored_shots(index, ["v"], load_config(None), "r1", "s")
    assert result.rows == [] and result.not_derivable == ["v"]
    # With the histogram stored, the same video is derived again.
    index.commit_videos({"videos": to_table("videos", [{**video, "run_id": "r2"}]),
                         "shots": to_table("shots", [{**shot, "run_id": "r2", "colour_histogram": [1.0] + [0.0] * 63}])})
    again = scenes_from_stored_shots(index, ["v"], load_config(None), "r3", "s")
    assert again.not_derivable == [] and [(s["first_shot"], s["last_shot"]) for s in again.rows[0].scenes] == [(0, 0)]


def test_an_older_index_gains_the_colour_histogram_column_as_null(tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from pipeline.index.schemas import SCHEMAS

    old_schema = pa.schema([f for f in SCHEMAS["shots"] if f.name != "colour_histogram"])
    uri = str(tmp_path / "idx")
    row = {"video_id": "a", "shot_index": 0, "start_frame": 0, "end_frame": 9, "start_s": 0.0, "end_s": 0.4,
           "transition": "start", "run_id": "r1"}
    DeltaTable.create(uri + "/shots", schema=old_schema)
    write_deltalake(uri + "/shots", pa.Table.from_pylist([row], schema=old_schema), mode="append")
    Index(uri).ensure()
    shots = DeltaTable(uri + "/shots").to_pyarrow_table()
    assert shots.schema.field("colour_histogram").type == pa.list_(pa.float32())
    assert shots.column("colour_histogram").to_pylist() == [None]
