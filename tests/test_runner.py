"""End to end through Ray: a folder of generated clips and a corrupt file into an index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.cli import EXIT_SOME_FAILED, main
from pipeline.config import Config, DecodeConfig
from pipeline.index.store import Index
from pipeline.execution.runner import run_index
from testkit import synthetic

CUTS_SPEC = synthetic.simple_spec([45, 50, 40], "cut", contents=[5, 6, 7], seed=11)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, mixed_clip: tuple[Path, synthetic.ClipTruth]) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "mixed.mp4").write_bytes(mixed_clip[0].read_bytes())
    truths = {"mixed.mp4": mixed_clip[1]}
    (folder / "nested").mkdir()
    truths["nested/cuts.mp4"] = synthetic.write_clip(folder / "nested" / "cuts.mp4", CUTS_SPEC)
    synthetic.write_random_bytes(folder / "corrupt.mp4", 30000, seed=5)
    return {"folder": folder, "truths": truths}


def test_run_query_and_rerun(ray_local, corpus: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    folder: Path = corpus["folder"]  # type: ignore[assignment]
    truths: dict[str, synthetic.ClipTruth] = corpus["truths"]  # type: ignore[assignment]
    index_path = tmp_path / "idx"

    code = main(["run", str(folder), "--index", str(index_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == EXIT_SOME_FAILED
    assert "2 videos ok, 1 failed" in out
    assert "corrupt.mp4: [probe] not a readable video container" in out

    index = Index(str(index_path))
    videos = {Path(v["uri"]).name: v for v in index.read("videos").to_pylist()}
    assert set(videos) == {"mixed.mp4", "cuts.mp4", "corrupt.mp4"}
    bad = videos["corrupt.mp4"]
    assert (bad["status"], bad["error_stage"]) == ("failed", "probe")
    assert "not a readable video container" in bad["error_message"]

    shots = index.read("shots").to_pylist()
    scenes = index.read("scenes").to_pylist()
    keyframes = index.read("keyframes").to_pylist()
    for name, truth in (("mixed.mp4", truths["mixed.mp4"]), ("cuts.mp4", truths["nested/cuts.mp4"])):
        video = videos[name]
        assert video["status"] == "ok" and video["num_frames"] == truth.num_frames
        mine = sorted((s for s in shots if s["video_id"] == video["video_id"]), key=lambda s: s["shot_index"])
        assert [s["shot_index"] for s in mine] == list(range(len(truth.shots)))
        for found, transition in zip(mine[1:], truth.transitions):
            if transition.kind == "cut":
                assert found["transition"] == "cut"
                assert abs(found["start_frame"] - (transition.last_frame + 1)) <= 1
            else:
                assert found["transition"] == "gradual"
        for a, b in zip(mine, mine[1:]):
            assert a["end_frame"] < b["start_frame"]
        # every shot has a keyframe inside it
        frames = {s["shot_index"]: (s["start_frame"], s["end_frame"]) for s in mine}
        kf = [k for k in keyframes if k["video_id"] == video["video_id"]]
        assert {k["shot_index"] for k in kf} == set(frames)
        assert all(frames[k["shot_index"]][0] <= k["frame"] <= frames[k["shot_index"]][1] for k in kf)
        assert all(k["thumbnail"][:2] == b"\xff\xd8" and len(k["embedding"]) == 1280 for k in kf)
        # scenes cover every shot once, in order
        mine_scenes = sorted((s for s in scenes if s["video_id"] == video["video_id"]), key=lambda s: s["scene_index"])
        covered = [i for s in mine_scenes for i in range(s["first_shot"], s["last_shot"] + 1)]
        assert covered == list(range(len(mine)))

    runs = index.read("runs").to_pylist()
    assert len(runs) == 1 and runs[0]["status"] == "partial"
    assert runs[0]["counts"]["new"] == 3 and runs[0]["counts"]["failed"] == 1

    assert main(["query", str(index_path), "select count(*) as n from shots", "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip() == f"n\n{len(shots)}"

    # A second run decodes nothing new: the two good videos are unchanged, the failed one is retried.
    again = run_index(str(folder), str(index_path), Config(), show_progress=False)
    assert (again.counts["unchanged"], again.counts["changed"], again.counts["failed"]) == (2, 1, 1)
    assert index.read("shots").num_rows == len(shots)
    assert len(index.read("videos").to_pylist()) == 3


def test_incremental_runs_replace_changed_and_mark_vanished(ray_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, index_path = tmp_path / "src", str(tmp_path / "idx")
    folder.mkdir()
    synthetic.write_clip(folder / "a.mp4", CUTS_SPEC)
    synthetic.write_clip(folder / "b.mp4", synthetic.simple_spec([30, 30], "cut", contents=[1, 2], seed=4))
    first = run_index(str(folder), index_path, Config(), show_progress=False)
    assert (first.counts["new"], first.counts["ok"]) == (2, 2)

    (folder / "a.mp4").unlink()
    b_truth = synthetic.write_clip(folder / "b.mp4", synthetic.simple_spec([30, 30, 30], "cut", contents=[3, 4, 5], seed=4))
    synthetic.write_clip(folder / "c.mp4", synthetic.simple_spec([40], "cut", contents=[6], seed=4))
    second = run_index(str(folder), index_path, Config(), show_progress=False)
    counts = second.counts
    assert (counts["new"], counts["changed"], counts["unchanged"], counts["deleted"]) == (1, 1, 0, 1)

    index = Index(index_path)
    videos = {Path(v["uri"]).name: v for v in index.read("videos").to_pylist()}
    assert {name: v["status"] for name, v in videos.items()} == {"a.mp4": "deleted", "b.mp4": "ok", "c.mp4": "ok"}
    shots = index.read("shots").to_pylist()
    keys = [(s["video_id"], s["shot_index"]) for s in shots]
    assert len(keys) == len(set(keys))  # replaced, never duplicated
    assert not [s for s in shots if s["video_id"] == videos["a.mp4"]["video_id"]]
    b_shots = [s for s in shots if s["video_id"] == videos["b.mp4"]["video_id"]]
    assert len(b_shots) == len(b_truth.shots) and {s["run_id"] for s in b_shots} == {second.run_id}

    third = run_index(str(folder), index_path, Config(), full=True, show_progress=False)
    assert (third.counts["changed"], third.counts["unchanged"], third.counts["deleted"]) == (2, 0, 0)
    assert [r["status"] for r in sorted(index.read("runs").to_pylist(), key=lambda r: r["run_id"])] == ["ok"] * 3


def test_memory_filesystem_source(ray_local, mixed_clip: tuple[Path, synthetic.ClipTruth], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/vindex-mem/clip.mp4", mixed_clip[0].read_bytes())
    try:
        summary = run_index("memory://vindex-mem", str(tmp_path / "idx"), Config(), show_progress=False)
    finally:
        fs.rm("/vindex-mem", recursive=True)
    assert (summary.counts["ok"], summary.counts["failed"]) == (1, 0)
    video = Index(str(tmp_path / "idx")).read("videos").to_pylist()[0]
    assert video["uri"] == "memory:///vindex-mem/clip.mp4"
    assert video["num_shots"] == len(mixed_clip[1].shots)


def test_segmented_video_gives_identical_rows(ray_local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Cuts right at segment edges (frames 150 and 300) and a dissolve across one (445..460).
    spec = synthetic.simple_spec([150, 150, 145, 90], ["cut", "cut", "dissolve:16"], contents=[1, 2, 3, 4], seed=9)
    folder = tmp_path / "src"
    folder.mkdir()
    truth = synthetic.write_clip(folder / "edges.mp4", spec)
    assert [s.start_frame for s in truth.shots] == [0, 150, 300, 461]

    def rows(segment_frames: int) -> dict[str, list[dict[str, object]]]:
        config = Config(decode=DecodeConfig(segment_frames=segment_frames))
        index = str(tmp_path / f"idx{segment_frames}")
        run_index(str(folder), index, config, show_progress=False)
        out = {}
        for name, key in (("shots", "shot_index"), ("scenes", "scene_index"), ("keyframes", "frame")):
            table = sorted(Index(index).read(name).to_pylist(), key=lambda r: r[key])
            out[name] = [{k: v for k, v in r.items() if k not in ("run_id", "embedding", "boundary_score", "score")} for r in table]
        return out

    whole, segmented = rows(1500), rows(150)
    assert [(s["start_frame"], s["end_frame"], s["transition"]) for s in whole["shots"]][:3] == [
        (0, 149, "start"), (150, 299, "cut"), (300, whole["shots"][2]["end_frame"], "cut")
    ]
    assert segmented == whole


def test_every_bad_input_ends_with_one_status_row(ray_local, huge_clip: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(huge_clip, folder / "huge_8k.mp4")
    good = synthetic.simple_spec([40, 40], "cut", contents=[1, 2], width=160, height=96)
    synthetic.write_clip(folder / "good.mp4", good)
    synthetic.write_clip(tmp_path / "faststart.mp4", synthetic.simple_spec([60, 60, 60], "cut"), faststart=True)
    synthetic.write_truncated(tmp_path / "faststart.mp4", folder / "half_faststart.mp4", 0.5)
    synthetic.write_truncated(folder / "good.mp4", folder / "half.mp4", 0.5)
    synthetic.write_zero_byte(folder / "empty.mp4")
    synthetic.write_random_bytes(folder / "noise.mp4", 20000, seed=3)
    synthetic.write_audio_only(folder / "audio.mp4")
    synthetic.write_jpeg_as_mp4(folder / "photo.mp4")
    synthetic.write_clip(folder / "one_frame.mp4", synthetic.simple_spec([1], "cut"))

    summary = run_index(str(folder), str(tmp_path / "idx"), Config(), show_progress=False)
    rows = {Path(v["uri"]).name: v for v in Index(str(tmp_path / "idx")).read("videos").to_pylist()}
    outcome = {name: (v["status"], v["error_stage"]) for name, v in rows.items()}
    assert outcome == {
        "good.mp4": ("ok", None),
        "one_frame.mp4": ("ok", None),
        "huge_8k.mp4": ("ok", None),
        "half_faststart.mp4": ("ok", None),
        "half.mp4": ("failed", "probe"),
        "empty.mp4": ("failed", "probe"),
        "noise.mp4": ("failed", "probe"),
        "audio.mp4": ("failed", "probe"),
        "photo.mp4": ("failed", "probe"),
    }
    assert rows["empty.mp4"]["error_message"] == "empty object (0 bytes)"
    assert "no video stream" in rows["audio.mp4"]["error_message"]
    partial = rows["half_faststart.mp4"]
    assert 0 < partial["num_frames"] < 180 and "stream ended after" in partial["warnings"]
    assert rows["one_frame.mp4"]["num_shots"] == 1 and rows["one_frame.mp4"]["num_keyframes"] == 1
    assert (rows["huge_8k.mp4"]["width"], rows["huge_8k.mp4"]["num_shots"]) == (7680, 2)
    assert (summary.counts["ok"], summary.counts["failed"]) == (4, 5)
