"""`vindex clips`: frame-exact clip files of shots and scenes, stream copy, selection, the clips table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pytest

from pipeline.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from pipeline.media.opening import open_container
from pipeline.clips.cut import CutRequest, EncodeSettings, copy_bounds, cut_copied, cut_reencoded
from pipeline.clips.run import (
    JOB,
    ClipsTable,
    CutStage,
    VideoJob,
    clip_id_for,
    clip_path,
    cut_video,
    destination_url,
    read_clips,
    run_clips,
)
from pipeline.clips.select import ClipSpan, Selection, filter_units, plan_clips, split_span, trim_span, unit_table
from pipeline.config import Config, config_from_dict
from pipeline.errors import ConfigError, IndexError_, QueryError
from pipeline.execution.adapter import run_rows
from pipeline.execution.runner import run_index
from pipeline.index.schemas import CLIPS
from pipeline.index.snapshot import Snapshot
from pipeline.index.reader import open_index
from pipeline.index.schemas import to_table
from pipeline.index.store import Index
from pipeline.sources.listing import video_id_for
from testkit import synthetic

#: Keyframes every 10 frames, so a stream copy's boundaries differ from the shots'.
GOP = 10
SPEC_CUTS = synthetic.simple_spec([33, 47, 28], "cut", contents=[1, 4, 6], width=96, height=64, seed=21)
SPEC_MORE = synthetic.simple_spec([41, 36], "cut", contents=[2, 5], width=96, height=64, seed=22)
#: The quality a frame of a clip must keep against the source's frame.
MIN_PSNR_DB = 30.0


@pytest.fixture(scope="module")
def indexed(ray_local, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Two generated videos and their index (one run)."""
    folder = tmp_path_factory.mktemp("clips-corpus")
    synthetic.write_clip(folder / "cuts.mp4", SPEC_CUTS, gop=GOP)
    synthetic.write_clip(folder / "more.mp4", SPEC_MORE, gop=GOP)
    index = str(tmp_path_factory.mktemp("clips-index") / "idx")
    summary = run_index(str(folder), index, Config(), show_progress=False)
    assert summary.counts["ok"] == 2
    return {"folder": folder, "index": index}


def _frames(source: Any) -> list[np.ndarray]:
    with av.open(source) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _source_frames(index: str) -> dict[str, list[np.ndarray]]:
    """Every video's frames, decoded with PyAV, by video_id."""
    videos = open_index(index).table("videos", columns=["video_id", "uri"]).to_pylist()
    return {v["video_id"]: _frames(v["uri"].removeprefix("file://")) for v in videos}


def _check_clip_frames(row: dict[str, Any], source: list[np.ndarray]) -> None:
    clip = _frames(row["uri"].removeprefix("file://"))
    assert len(clip) == row["end_frame"] - row["start_frame"] + 1, row
    assert _psnr(clip[0], source[row["start_frame"]]) > MIN_PSNR_DB
    assert _psnr(clip[-1], source[row["end_frame"]]) > MIN_PSNR_DB


# --------------------------------------------------------------------------- pure parts


def test_trim_and_split_spans() -> None:
    assert trim_span(10, 29, 3) == (13, 26)
    assert trim_span(10, 15, 3) is None
    assert split_span(0, 99, 30) == [(0, 24), (25, 49), (50, 74), (75, 99)]
    assert split_span(5, 14, 10) == [(5, 14)]
    pieces = split_span(7, 107, 17)
    assert pieces[0][0] == 7 and pieces[-1][1] == 107
    assert all(b[0] == a[1] + 1 for a, b in zip(pieces, pieces[1:]))
    assert max(e - s + 1 for s, e in pieces) <= 17 and max(e - s for s, e in pieces) - min(e - s for s, e in pieces) <= 1


def _units(rows: list[tuple[str, int, int, int]], fps: float = 25.0) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"video_id": v, "shot_index": i, "start_frame": s, "end_frame": e, "start_s": s / fps,
             "end_s": (e + 1) / fps, "uri": f"file:///{v}.mp4", "fps": fps, "seconds": (e + 1 - s) / fps}
            for v, i, s, e in rows
        ]
    )


def test_plan_clips_min_max_trim() -> None:
    units = _units([("b", 0, 0, 24), ("a", 0, 0, 99), ("a", 1, 100, 109)])
    plain = plan_clips(units, Selection())
    assert [(c.video_id, c.unit_index, c.start_frame, c.end_frame) for c in plain] == [
        ("a", 0, 0, 99), ("a", 1, 100, 109), ("b", 0, 0, 24)
    ]
    assert plain[0].start_s == 0.0 and plain[0].end_s == 4.0
    # 0.2 s at 25 fps: five frames from each end. Trimmed, shot a/1 (10 frames) keeps nothing
    # and b/0 keeps 15 frames (0.6 s), under the minimum.
    trimmed = plan_clips(units, Selection(trim_seconds=0.2, min_seconds=0.7))
    assert [(c.video_id, c.start_frame, c.end_frame) for c in trimmed] == [("a", 5, 94)]
    split = plan_clips(units, Selection(max_seconds=1.0, min_seconds=0.8))
    assert [(c.video_id, c.unit_index, c.start_frame, c.end_frame) for c in split] == [
        ("a", 0, 0, 24), ("a", 0, 25, 49), ("a", 0, 50, 74), ("a", 0, 75, 99), ("b", 0, 0, 24)
    ]


def test_where_is_sql_on_the_units_and_confined() -> None:
    units = _units([("a", 0, 0, 99), ("a", 1, 100, 109), ("b", 0, 0, 24)])
    assert filter_units(units, "seconds >= 1 and video_id = 'a'").column("shot_index").to_pylist() == [0]
    with pytest.raises(QueryError, match="no_such_column"):
        filter_units(units, "no_such_column > 1")
    with pytest.raises(QueryError):
        filter_units(units, "exists (select * from read_csv('/etc/hostname'))")


def _shot_units() -> pa.Table:
    """Units with every column `--where` sees for shots (as :func:`unit_table` gives them)."""
    fps = 25.0
    rows = [("a", 0, 0, 99, "start", 0.5, False), ("a", 1, 100, 109, "cut", 2.0, False), ("b", 0, 0, 74, "start", 0.1, True)]
    return pa.Table.from_pylist(
        [
            {"video_id": v, "shot_index": i, "start_frame": s, "end_frame": e, "start_s": s / fps, "end_s": (e + 1) / fps,
             "transition": t, "boundary_score": 0.9, "motion": m, "brightness": 0.5, "sharpness": 0.5, "still": still,
             "run_id": "r1", "uri": f"file:///{v}.mp4", "fps": fps, "seconds": (e + 1 - s) / fps}
            for v, i, s, e, t, m, still in rows
        ]
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("seconds > 2 and transition = 'start'", [("a", 0), ("b", 0)]),
        ("seconds > 0.3 and transition = 'cut'", [("a", 1)]),
        ("units.video_id = 'b' or motion >= 2", [("a", 1), ("b", 0)]),
        ("still", [("b", 0)]),
        ("not still and uri like '%a.mp4'", [("a", 0), ("a", 1)]),
        ("lower(transition) in ('cut') and shot_index between 1 and 3", [("a", 1)]),
        ("split_part(uri, '/', 4) = 'b.mp4'", [("b", 0)]),
        ("coalesce(motion, 0) * fps > 40 and uri || '--' <> ''", [("a", 1)]),  # '--' in a string is no comment
        ("case when still then seconds else 0 end > 1", [("b", 0)]),
        ("  ", [("a", 0), ("a", 1), ("b", 0)]),
    ],
)
def test_where_is_one_boolean_expression_over_the_units_columns(where: str, expected: list[tuple[str, int]]) -> None:
    kept = filter_units(_shot_units(), where)
    assert sorted((r["video_id"], r["shot_index"]) for r in kept.to_pylist()) == expected
    assert kept.column_names == _shot_units().column_names


#: A row no unit has, which a pasted predicate would make up.
FABRICATED = "'x', 0, 0, 0, 0.0, 0.0, 'cut', 0.0, 0.0, 0.0, 0.0, false, 'r', 'file:///etc/passwd', 25.0, 1.0"


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (f"false) UNION ALL SELECT {FABRICATED} --", "unbalanced ')': the predicate must not close the WHERE clause"),
        (f"false) UNION ALL SELECT {FABRICATED} FROM units WHERE (true", "unbalanced"),
        (f"false) UNION ALL (SELECT {FABRICATED}", "unbalanced"),
        ("true /* ) union all select * from units */", "comments are not allowed"),
        ("1=1; DROP TABLE units", "';' is not allowed"),
        ("1=1); select * from units where (1=1", "unbalanced ')'"),
        ("true -- ) union all select * from units", "comments are not allowed"),
        ("shot_index in (select 1)", "a subquery is not allowed"),
        ("(select count(*) from units) > 0", "a subquery is not allowed"),
        ("exists (select * from read_csv('/etc/passwd'))", "a subquery is not allowed"),
        ("read_csv('/etc/passwd') is not null", "function 'read_csv' is not allowed"),
        ("query('select 1') is not null", "function 'query' is not allowed"),
        ("pg_get_viewdef(1) is null", "function 'pg_get_viewdef' is not allowed"),  # a macro holding a query
        ("count(*) > 0", "function 'count_star' is not allowed"),
        ("main.lower(uri) = 'a'", "function 'lower' is not allowed"),
        ("columns(*) is not null", "COLUMNS"),
        ("secret > 1", "no column 'secret'"),
        ("videos.uri = 'a'", "no column 'videos.uri'"),
        ("$1", "parameters"),
        ("true\x00", "control character"),
        ("'unterminated", "unterminated"),
    ],
)
def test_where_refuses_anything_but_one_expression_over_the_units_columns(where: str, reason: str) -> None:
    with pytest.raises(QueryError, match=re.escape(reason)) as refused:
        filter_units(_shot_units(), where)
    assert str(refused.value).startswith(f"--where {where!r}: ")


def test_settings_are_validated_and_change_the_clip_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--max-seconds"):
        Selection(min_seconds=2, max_seconds=1)
    with pytest.raises(ConfigError, match="by 'frame'"):
        Selection(by="frame")
    with pytest.raises(ConfigError, match="--crf"):
        EncodeSettings(crf=60)
    span = ClipSpan("v", "file:///v.mp4", 25.0, "shot", 3, 10, 40)
    out = destination_url(str(tmp_path / "out") + "/")
    assert out == (tmp_path / "out").as_uri() == destination_url(str(tmp_path / "out"))
    assert clip_id_for(span, EncodeSettings(), out) == clip_id_for(span, EncodeSettings(), out)
    settings = (EncodeSettings(), EncodeSettings(crf=23), EncodeSettings(preset="fast"), EncodeSettings("copy"))
    assert len({clip_id_for(span, s, out) for s in settings}) == 4
    later = ClipSpan("v", "file:///v.mp4", 25.0, "shot", 3, 11, 40)
    assert clip_id_for(span, EncodeSettings(), out) != clip_id_for(later, EncodeSettings(), out)
    assert clip_id_for(span, EncodeSettings(), out) != clip_id_for(span, EncodeSettings(), "s3://bucket/clips")


#: What a tampered index may hold as a video_id, and the text of the refusal.
UNSAFE_VIDEO_IDS = [
    "../outside/x",
    "/tmp/absolute",
    "",
    "x\x00y",
    "3F2504E0-4F89-5D3A-9A0C-0305E82C3301",  # a uuid5, not in vindex's (lower-case) text
    "3f2504e0-4f89-4d3a-9a0c-0305e82c3301",  # a uuid4: vindex makes uuid5s
    "3f2504e0-4f89-5d3a-9a0c-0305e82c3301/../..",
    "{3f2504e0-4f89-5d3a-9a0c-0305e82c3301}",
]


def test_clip_paths_are_built_only_from_ids_vindex_makes() -> None:
    good = video_id_for("file:///videos/v.mp4")
    span = ClipSpan(good, "file:///videos/v.mp4", 25.0, "shot", 3, 10, 40)
    clip_id = clip_id_for(span, EncodeSettings(), "file:///dest")
    assert clip_path("/dest", span, clip_id) == f"/dest/{good}/shot00003_0000010-0000040_{clip_id[:8]}.mp4"
    assert clip_path("bucket/clips", span, clip_id).startswith(f"bucket/clips/{good}/shot00003_")
    for video_id in UNSAFE_VIDEO_IDS:
        with pytest.raises(IndexError_, match="is not an id vindex makes"):
            clip_path("/dest", dataclasses.replace(span, video_id=video_id), clip_id)
    for wrong in (
        dataclasses.replace(span, unit_index=-1),
        dataclasses.replace(span, start_frame=-5),
        dataclasses.replace(span, end_frame=True),
    ):
        with pytest.raises(IndexError_, match="not an integer of 0 or more"):
            clip_path("/dest", wrong, clip_id)
    with pytest.raises(IndexError_, match="unit kind '../shot'"):
        clip_path("/dest", dataclasses.replace(span, kind="../shot"), clip_id)


def _job(source: Path, video_id: str, spans: list[tuple[int, int, int]], settings: EncodeSettings, dest: Path) -> VideoJob:
    clips = [ClipSpan(video_id, source.as_uri(), 25.0, "shot", unit, start, end) for unit, start, end in spans]
    return VideoJob(video_id, source.as_uri(), 25.0, tuple((clip_id_for(c, settings, dest.as_uri()), c) for c in clips))


def test_a_unit_whose_path_would_leave_the_destination_is_a_failed_row(tmp_path: Path) -> None:
    source = tmp_path / "src.mp4"
    synthetic.write_clip(source, SPEC_CUTS, gop=GOP)
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    settings = EncodeSettings(preset="ultrafast")
    for video_id in ("../outside/x", str(outside / "absolute")):
        rows = cut_video(_job(source, video_id, [(0, 0, 9)], settings, dest), settings, str(dest), "run")
        assert [(r["status"], r["uri"], r["video_id"]) for r in rows] == [("failed", None, video_id)]
        assert f"video_id {video_id!r} is not an id vindex makes (a uuid5)" in rows[0]["error_message"]
    assert not outside.exists() and list(dest.iterdir()) == []

    # One bad unit of a video fails alone; the video's other clips are cut.
    good = video_id_for(source.as_uri())
    rows = cut_video(_job(source, good, [(0, 0, 9), (-1, 10, 19)], settings, dest), settings, str(dest), "run")
    assert [(r["unit_index"], r["status"]) for r in rows] == [(-1, "failed"), (0, "ok")]
    [ok] = [r for r in rows if r["status"] == "ok"]
    written = Path(ok["uri"].removeprefix("file://"))
    assert written.parent == dest / good and written.is_file()

    # A video's folder in the destination that links elsewhere is not written through.
    outside.mkdir()
    shutil.rmtree(dest / good)
    (dest / good).symlink_to(outside, target_is_directory=True)
    rows = cut_video(_job(source, good, [(0, 0, 9)], settings, dest), settings, str(dest), "run")
    assert [(r["status"], r["uri"]) for r in rows] == [("failed", None)]
    assert "outside the destination" in rows[0]["error_message"]
    assert list(outside.iterdir()) == []


def test_copy_bounds_are_whole_groups_of_pictures() -> None:
    keyframes = [0, 10, 20, 30]
    assert copy_bounds(keyframes, 35, 12, 18) == (10, 19)
    assert copy_bounds(keyframes, 35, 10, 20) == (10, 29)
    assert copy_bounds(keyframes, 35, 25, 35) == (20, 35)


def _clip_row(clip_id: str, video_id: str, status: str) -> dict[str, Any]:
    return {
        "clip_id": clip_id, "video_id": video_id, "kind": "shot", "unit_index": 0, "start_frame": 0, "end_frame": 9,
        "start_s": 0.0, "end_s": 0.4, "uri": None, "size_bytes": None, "codec": None, "width": None, "height": None,
        "mode": "reencode", "run_id": "clips-1", "status": status, "error_message": None,
        "created_at": dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc),
    }  # fmt: skip


def test_clip_rows_with_quotes_in_their_ids_are_replaced_exactly(tmp_path: Path) -> None:
    """A commit replaces the rows of its clip ids, whatever characters the ids hold: the ids
    enter the commit's predicate quoted, so a quote neither breaks it nor widens it."""
    table = ClipsTable(Snapshot(str(tmp_path / "idx")))
    table.ensure()
    table.commit([_clip_row("it's", "o'hara", "failed"), _clip_row("plain", "o'hara", "ok")])
    table.commit([_clip_row("it's", "o'hara", "ok"), _clip_row("x') OR ('1'='1", "v", "failed")])
    rows = sorted((r["clip_id"], r["video_id"], r["status"]) for r in table.read().to_pylist())
    assert rows == [("it's", "o'hara", "ok"), ("plain", "o'hara", "ok"), ("x') OR ('1'='1", "v", "failed")]
    assert table.done() == {"it's", "plain"}


def _two_clip_job(tmp_path: Path) -> VideoJob:
    video_id = video_id_for("file:///videos/a.mp4")
    spans = [ClipSpan(video_id, str(tmp_path / "a.mp4"), 25.0, "shot", i, 10 * i, 10 * i + 9) for i in range(2)]
    return VideoJob(video_id, str(tmp_path / "a.mp4"), 25.0, tuple((f"clip{i}", span) for i, span in enumerate(spans)))


class _DiedTwice:
    """A crash guard that has seen two attempts at every key never end (two dead workers)."""

    def begin(self, key: str) -> int:
        return 2

    def end(self, key: str) -> None:
        pass

    def unfinished(self, key: str) -> int:
        return 2


def test_a_video_that_killed_its_cutting_worker_twice_gets_failed_rows(tmp_path: Path) -> None:
    """Cutting runs as the index's stages do: under the crash guard, whose verdict becomes one
    failed clips row per clip of the video (not a segment failure), and nothing is cut."""
    job = _two_clip_job(tmp_path)
    stage = CutStage(Config(), settings=EncodeSettings(), dest=str(tmp_path / "out"), run_id="clips-1")
    stage.guard_with(lambda name: _DiedTwice())
    rows = run_rows(stage, pa.Table.from_pylist([job.record()], schema=JOB), CLIPS).to_pylist()
    assert [(r["clip_id"], r["video_id"], r["status"], r["run_id"]) for r in rows] == [
        ("clip0", job.video_id, "failed", "clips-1"), ("clip1", job.video_id, "failed", "clips-1"),
    ]  # fmt: skip
    assert all("the cut worker process died 2 times on this video" in r["error_message"] for r in rows)
    assert not (tmp_path / "out").exists()


def test_a_video_whose_cutting_raises_gets_failed_rows_and_the_job_row_round_trips(tmp_path: Path) -> None:
    job = _two_clip_job(tmp_path)
    (tmp_path / "out").write_text("a file where the destination folder should be")
    record = pa.Table.from_pylist([job.record({"anon": True})], schema=JOB).to_pylist()[0]
    assert VideoJob.from_record(record) == job and record["source_options"] == '{"anon": true}'
    stage = CutStage(Config(), settings=EncodeSettings(), dest=str(tmp_path / "out"), run_id="clips-1")
    rows = stage(record)
    assert [(r["clip_id"], r["status"]) for r in rows] == [("clip0", "failed"), ("clip1", "failed")]
    assert all(r["error_message"].startswith("the task cutting this video failed: FileExistsError") for r in rows)


def test_cutting_functions_without_ray(tmp_path: Path) -> None:
    source = tmp_path / "src.mp4"
    synthetic.write_clip(source, SPEC_CUTS, gop=GOP)
    frames = _frames(str(source))
    requests = [CutRequest("a", 3, 31, str(tmp_path / "a.mp4")), CutRequest("b", 20, 50, str(tmp_path / "b.mp4")),
                CutRequest("late", 100, 120, str(tmp_path / "late.mp4"))]
    results = {r.clip_id: r for r in cut_reencoded(lambda: open_container(str(source)), requests, EncodeSettings(), 25.0)}
    assert results["late"].error == f"the video ends at frame {len(frames) - 1}"
    for name in ("a", "b"):
        result = results[name]
        assert result.error is None and (result.codec, result.width, result.height) == ("h264", 96, 64)
        clip = _frames(str(tmp_path / f"{name}.mp4"))
        assert len(clip) == result.end_frame - result.start_frame + 1
        assert all(_psnr(c, frames[result.start_frame + i]) > MIN_PSNR_DB for i, c in enumerate(clip))

    copies = {r.clip_id: r for r in cut_copied(lambda: open_container(str(source)), requests[:2])}
    assert (copies["a"].start_frame, copies["a"].end_frame) == (0, 39)
    assert (copies["b"].start_frame, copies["b"].end_frame) == (20, 59)
    missing = list(cut_reencoded(lambda: open_container(str(tmp_path / "gone.mp4")), requests[:1], EncodeSettings(), 25.0))
    assert missing[0].error is not None and "No such file" in missing[0].error


def test_an_odd_sized_source_is_cut_at_an_even_size(tmp_path: Path) -> None:
    source = tmp_path / "odd.mp4"
    with av.open(str(source), "w") as container:  # 4:4:4 allows odd sizes; 4:2:0 output does not
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 65, 49, "yuv444p"
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((49, 65, 3), i * 10, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    out = tmp_path / "odd-clip.mp4"
    [result] = cut_reencoded(lambda: open_container(str(source)), [CutRequest("a", 2, 9, str(out))], EncodeSettings(), 25.0)
    assert (result.error, result.width, result.height) == (None, 64, 48)
    frames = _frames(str(out))
    assert len(frames) == 8 and abs(int(frames[0].mean()) - 20) <= 2 and abs(int(frames[-1].mean()) - 90) <= 2


# --------------------------------------------------------------------------- through Ray and the index


def test_clips_are_frame_exact_and_rerun_skips(indexed: dict[str, Any], tmp_path: Path) -> None:
    index = open_index(indexed["index"])
    out = tmp_path / "clips"
    summary = run_clips(index, str(out), Selection(), EncodeSettings(), show_progress=False)
    shots = index.table("shots", columns=["video_id", "shot_index", "start_frame", "end_frame", "start_s", "end_s"])
    assert (summary.ok, summary.failed, summary.skipped) == (shots.num_rows, 0, 0)
    rows = read_clips(index).to_pylist()
    units = {(s["video_id"], s["shot_index"]): s for s in shots.to_pylist()}
    assert {(r["video_id"], r["unit_index"]) for r in rows} == set(units)
    sources = _source_frames(indexed["index"])
    for row in rows:
        unit = units[(row["video_id"], row["unit_index"])]
        assert (row["start_frame"], row["end_frame"]) == (unit["start_frame"], unit["end_frame"])
        assert (row["start_s"], row["end_s"]) == pytest.approx((unit["start_s"], unit["end_s"]))
        assert (row["status"], row["kind"], row["mode"], row["codec"]) == ("ok", "shot", "reencode", "h264")
        assert row["size_bytes"] == Path(row["uri"].removeprefix("file://")).stat().st_size
        _check_clip_frames(row, sources[row["video_id"]])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    again = run_clips(index, str(out), Selection(), EncodeSettings(), show_progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, shots.num_rows)
    assert read_clips(index).num_rows == shots.num_rows
    # Another destination holds other files: nothing there is skipped, and the rows add up.
    elsewhere = run_clips(index, str(tmp_path / "elsewhere"), Selection(), EncodeSettings(), show_progress=False)
    assert (elsewhere.ok, elsewhere.skipped) == (shots.num_rows, 0)
    assert read_clips(index).num_rows == 2 * shots.num_rows


def test_scenes_trimmed_split_and_filtered_from_the_cli(indexed: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "scene-clips"
    index = open_index(indexed["index"])
    cuts_id = next(v["video_id"] for v in index.table("videos").to_pylist() if v["uri"].endswith("cuts.mp4"))
    code = main(["clips", indexed["index"], "--out", str(out), "--by", "scene", "--trim-seconds", "0.2",
                 "--max-seconds", "1", "--where", f"video_id = '{cuts_id}'", "--quiet"])
    assert code == EXIT_OK
    scenes = index.table("scenes", filter=None).to_pylist()
    expected = plan_clips(
        filter_units(unit_table(index, "scene"), f"video_id = '{cuts_id}'"),
        Selection(by="scene", trim_seconds=0.2, max_seconds=1),
    )
    rows = sorted((r for r in read_clips(index).to_pylist() if r["kind"] == "scene"), key=lambda r: r["start_frame"])
    assert [(r["unit_index"], r["start_frame"], r["end_frame"]) for r in rows] == [
        (c.unit_index, c.start_frame, c.end_frame) for c in expected
    ]
    assert {r["video_id"] for r in rows} == {cuts_id}
    assert all(r["end_frame"] - r["start_frame"] + 1 <= 25 for r in rows)  # at most 1 s at 25 fps
    first_scene = min((s for s in scenes if s["video_id"] == cuts_id), key=lambda s: s["scene_index"])
    assert rows[0]["start_frame"] == first_scene["start_frame"] + 5  # 0.2 s trimmed
    sources = _source_frames(indexed["index"])
    for row in rows:
        _check_clip_frames(row, sources[cuts_id])


def test_where_filters_shots_on_their_curation_signals(indexed: dict[str, Any]) -> None:
    index = open_index(indexed["index"])
    shots = index.table("shots", columns=["video_id", "shot_index", "motion", "still"]).to_pylist()
    units = unit_table(index, "shot")
    assert units.num_rows == len(shots)
    median = sorted(s["motion"] for s in shots)[len(shots) // 2]
    moving = filter_units(units, f"motion > {median!r}")
    assert {(r["video_id"], r["shot_index"]) for r in moving.to_pylist()} == {
        (s["video_id"], s["shot_index"]) for s in shots if s["motion"] > median
    }
    assert 0 < moving.num_rows < len(shots)
    still = filter_units(units, "still")
    assert still.num_rows == sum(s["still"] for s in shots)


def _tampered_index(tmp_path: Path) -> Index:
    """An index written by something else than vindex: its one video's id is a path."""
    source = tmp_path / "src.mp4"
    synthetic.write_clip(source, SPEC_CUTS, gop=GOP)
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    now = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    video = {"video_id": "../outside/x", "uri": source.as_uri(), "status": "ok", "fps": 25.0, "run_id": "r1",
             "indexed_at": now}
    shot = {"video_id": "../outside/x", "shot_index": 0, "start_frame": 0, "end_frame": 32, "start_s": 0.0, "end_s": 1.32,
            "transition": "start", "run_id": "r1"}
    index.commit_videos({"videos": to_table("videos", [video]), "shots": to_table("shots", [shot])})
    index.append_run({"run_id": "r1", "started_at": now, "finished_at": now, "source": "file:///", "status": "ok"})
    return index


def test_an_injected_where_is_refused_before_anything_is_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = _tampered_index(tmp_path)
    dest = tmp_path / "dest"
    where = f"false) UNION ALL SELECT {FABRICATED} --"
    assert main(["clips", index.uri, "--out", str(dest), "--where", where, "--quiet"]) == EXIT_USAGE
    assert "the predicate must not close the WHERE clause" in capsys.readouterr().err
    assert read_clips(index).num_rows == 0 and not dest.exists()


def test_a_tampered_index_gets_failed_rows_and_no_file_outside_the_destination(  # type: ignore[no-untyped-def]
    ray_local, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = _tampered_index(tmp_path)
    dest = tmp_path / "dest"
    assert main(["clips", index.uri, "--out", str(dest), "--quiet"]) == EXIT_SOME_FAILED
    assert "is not an id vindex makes" in capsys.readouterr().out
    rows = read_clips(index).to_pylist()
    assert [(r["video_id"], r["status"], r["uri"]) for r in rows] == [("../outside/x", "failed", None)]
    assert not (tmp_path / "outside").exists() and list(dest.iterdir()) == []


def test_copy_records_the_real_boundaries(indexed: dict[str, Any], tmp_path: Path) -> None:
    index = open_index(indexed["index"])
    summary = run_clips(index, str(tmp_path / "copies"), Selection(), EncodeSettings("copy"), show_progress=False)
    assert summary.failed == 0 and summary.ok > 0
    rows = [r for r in read_clips(index).to_pylist() if r["mode"] == "copy"]
    units = {(s["video_id"], s["shot_index"]): s for s in index.table("shots").to_pylist()}
    sources = _source_frames(indexed["index"])
    moved = 0
    for row in rows:
        unit = units[(row["video_id"], row["unit_index"])]
        assert row["start_frame"] % GOP == 0 and row["start_frame"] <= unit["start_frame"]
        assert row["end_frame"] >= unit["end_frame"]
        assert (row["end_frame"] + 1) % GOP == 0 or row["end_frame"] == len(sources[row["video_id"]]) - 1
        moved += (row["start_frame"], row["end_frame"]) != (unit["start_frame"], unit["end_frame"])
        _check_clip_frames(row, sources[row["video_id"]])
    assert moved > 0  # the shots do not all fall on keyframes: the boundaries recorded are the copy's


def test_a_vanished_source_gives_failed_rows(indexed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = open_index(indexed["index"])
    video = next(v for v in index.table("videos").to_pylist() if v["uri"].endswith("more.mp4"))
    path = Path(video["uri"].removeprefix("file://"))
    hidden = path.with_suffix(".away")
    path.rename(hidden)
    try:
        code = main(["clips", indexed["index"], "--out", str(tmp_path / "c"), "--crf", "28", "--quiet"])
    finally:
        hidden.rename(path)
    assert code == EXIT_SOME_FAILED
    assert "No such file" in capsys.readouterr().out
    rows = [r for r in read_clips(index).to_pylist() if r["uri"] is None or "/c/" in r["uri"]]
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and {r["video_id"] for r in failed} == {video["video_id"]}
    assert all("No such file" in r["error_message"] and r["uri"] is None for r in failed)
    assert any(r["status"] == "ok" for r in rows)  # the other video's clips were cut

    # Back in place, a re-run cuts exactly the failed clips and replaces their rows.
    assert main(["clips", indexed["index"], "--out", str(tmp_path / "c"), "--crf", "28", "--quiet"]) == EXIT_OK
    now = {r["clip_id"]: r for r in read_clips(index).to_pylist()}
    assert all(now[r["clip_id"]]["status"] == "ok" for r in failed)


def test_clips_to_s3(indexed: dict[str, Any], s3, s3_endpoint: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s3.mkdir("vindex-clips")
    index = open_index(indexed["index"])
    config = config_from_dict({"storage": {"endpoint_url": s3_endpoint}})
    summary = run_clips(index, "s3://vindex-clips/out", Selection(), EncodeSettings(crf=20), config=config, show_progress=False)
    assert summary.failed == 0 and summary.ok == index.table("shots").num_rows
    rows = [r for r in read_clips(index).to_pylist() if (r["uri"] or "").startswith("s3://")]
    assert len(rows) == summary.ok
    sources = _source_frames(indexed["index"])
    for row in rows:
        assert s3.info(row["uri"])["size"] == row["size_bytes"]
        local = tmp_path / "dl.mp4"
        s3.get(row["uri"], str(local))
        _check_clip_frames({**row, "uri": str(local)}, sources[row["video_id"]])


def test_the_job_entrypoint_and_the_export_of_clips(indexed: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from jobs.clips import main as job_main
    from pipeline.index.export import export_index

    out = tmp_path / "job"
    assert job_main([indexed["index"], "--out", str(out), "--by", "scene", "--preset", "ultrafast"]) == EXIT_OK
    index = open_index(indexed["index"])
    mine = [r for r in read_clips(index).to_pylist() if (r["uri"] or "").startswith(out.as_uri())]
    assert len(mine) == index.table("scenes").num_rows

    export_index(index, str(tmp_path / "export"))
    assert pq.read_table(tmp_path / "export" / "clips").num_rows == read_clips(index).num_rows


def test_the_cli_parser_imports_no_heavy_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from pipeline.cli import build_parser; build_parser().parse_args(['clips', 'i', '--out', 'o']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray', 'av', 'deltalake', 'duckdb'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
