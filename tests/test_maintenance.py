"""Compaction merges a table's small files without changing its rows; vacuum deletes the rest,
never a file a running writer may still commit."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.compact import main as compact_job
from pipeline.index import maintenance
from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.errors import ConfigError
from pipeline.index.schemas import SCHEMAS, to_table
from pipeline.index.store import Index
from pipeline.index.maintenance import MIN_RETENTION_HOURS, compact_index

VIDEOS = 6
#: A data file no commit references, named as a Delta writer names its files.
STRAY = "part-00000-0f0e0d0c-0b0a-4998-8776-655443322110-c000.snappy.parquet"


def _video(i: int) -> dict[str, object]:
    return {"video_id": f"v{i}", "uri": f"file:///c/{i}.mp4", "status": "ok", "num_shots": 2, "run_id": f"r{i}"}


def _shots(i: int) -> list[dict[str, object]]:
    return [
        {"video_id": f"v{i}", "shot_index": s, "start_frame": 40 * s, "end_frame": 40 * s + 39, "run_id": f"r{i}"}
        for s in range(2)
    ]


@pytest.fixture
def index(tmp_path: Path) -> Index:
    """An index written one video per commit, one video re-indexed: many small files, some dead,
    and a data file no commit references (what a run killed mid-commit leaves)."""
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    for i in [*range(VIDEOS), 0]:
        index.commit_videos({"videos": to_table("videos", [_video(i)]), "shots": to_table("shots", _shots(i))})
    index.append_run({"run_id": "r0", "started_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)})
    shots = Path(index.uri) / "shots"
    live = min(shots.glob("*.parquet"))
    (shots / STRAY).write_bytes(live.read_bytes())
    return index


def _parquet_on_disk(index: Index, name: str) -> set[str]:
    return {p.name for p in (Path(index.uri) / name).glob("*.parquet")}


def _live_files(index: Index, name: str) -> set[str]:
    from deltalake import DeltaTable

    return {Path(uri).name for uri in DeltaTable(f"{index.uri}/{name}").file_uris()}


def _rows(index: Index, name: str) -> list[dict[str, object]]:
    return sorted(index.read(name).to_pylist(), key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def test_compact_merges_files_keeps_rows_and_every_recent_file(index: Index) -> None:
    before = {name: _rows(index, name) for name in SCHEMAS}
    on_disk = _parquet_on_disk(index, "shots")
    live = {name: len(_live_files(index, name)) for name in ("shots", "videos")}
    assert live["shots"] >= VIDEOS and live["videos"] == VIDEOS  # one file per commit at least
    assert len(on_disk) > live["shots"]  # the replaced file and the stray one

    report = {t.table: t for t in compact_index(index, retention_hours=MIN_RETENTION_HOURS)}

    assert {name: _rows(index, name) for name in SCHEMAS} == before
    shots, videos = report["shots"], report["videos"]
    assert (shots.files_before, shots.files_after) == (live["shots"], 1)
    assert (videos.files_before, videos.files_after) == (VIDEOS, 1)
    # every file is younger than the retention: the replaced and compacted ones keep the
    # old versions readable, and the stray one may be a writer's, still to be committed
    assert shots.files_vacuumed == videos.files_vacuumed == 0
    assert _parquet_on_disk(index, "shots") == on_disk | _live_files(index, "shots")
    assert report["scenes"] == type(shots)("scenes", 0, 0, ())  # empty tables stay empty


def test_vacuum_deletes_a_stray_file_once_older_than_the_retention(index: Index) -> None:
    stray = Path(index.uri) / "shots" / STRAY
    hours_ago = time.time() - (MIN_RETENTION_HOURS + 1) * 3600
    os.utime(stray, (hours_ago, hours_ago))
    on_disk = _parquet_on_disk(index, "shots")

    report = {t.table: t for t in compact_index(index, retention_hours=MIN_RETENTION_HOURS)}

    assert report["shots"].deleted == (STRAY,) and not stray.exists()
    # the compacted versions' files stay, and so does the one compaction wrote
    assert _parquet_on_disk(index, "shots") == (on_disk - {stray.name}) | _live_files(index, "shots")


def test_vacuum_past_the_retention_deletes_every_unreferenced_file(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lowering the floor stands in for waiting out the retention.
    monkeypatch.setattr(maintenance, "MIN_RETENTION_HOURS", 0)
    before = {name: _rows(index, name) for name in SCHEMAS}
    on_disk = {name: len(_parquet_on_disk(index, name)) for name in ("shots", "videos")}

    report = {t.table: t for t in compact_index(index, retention_hours=0)}

    assert {name: _rows(index, name) for name in SCHEMAS} == before
    # the replaced files, the compacted ones and the stray one are gone; the compacted one is left
    assert report["shots"].files_vacuumed == on_disk["shots"]
    assert report["videos"].files_vacuumed == on_disk["videos"] == VIDEOS + 1
    assert _parquet_on_disk(index, "shots") == _live_files(index, "shots")
    assert len(_parquet_on_disk(index, "shots")) == 1


def test_a_retention_window_keeps_recent_versions_files(index: Index) -> None:
    on_disk = _parquet_on_disk(index, "shots")
    report = {t.table: t for t in compact_index(index, retention_hours=24)}
    assert report["shots"].files_after == 1 and report["shots"].files_vacuumed == 0
    assert _parquet_on_disk(index, "shots") == on_disk | _live_files(index, "shots")  # old versions stay readable


@pytest.mark.parametrize("hours", [-1, 0, MIN_RETENTION_HOURS - 1])
def test_a_retention_under_the_minimum_is_refused_before_any_work(index: Index, hours: int) -> None:
    on_disk, live = _parquet_on_disk(index, "shots"), _live_files(index, "shots")
    with pytest.raises(ConfigError, match=f"--retention-hours must be at least {MIN_RETENTION_HOURS}, got {hours}"):
        compact_index(index, retention_hours=hours)
    with pytest.raises(ConfigError, match="--retention-hours"):
        maintenance.compact_table(index, "shots", retention_hours=hours)
    assert _parquet_on_disk(index, "shots") == on_disk
    assert _live_files(index, "shots") == live


def test_compaction_never_deletes_a_writers_file_not_yet_committed(index: Index) -> None:
    """A writer has written its Parquet file, compaction runs, then the writer commits."""
    from deltalake import DeltaTable
    from deltalake.transaction import AddAction

    rows = to_table("shots", _shots(VIDEOS))
    in_flight = Path(index.uri) / "shots" / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    pq.write_table(rows, in_flight)

    compact_index(index, retention_hours=MIN_RETENTION_HOURS)

    assert in_flight.exists()
    add = AddAction(
        path=in_flight.name,
        size=in_flight.stat().st_size,
        partition_values={},
        modification_time=int(in_flight.stat().st_mtime * 1000),
        data_change=True,
        stats=f'{{"numRecords": {rows.num_rows}}}',
    )
    shots = f"{index.uri}/shots"
    DeltaTable(shots).create_write_transaction([add], mode="append", schema=SCHEMAS["shots"])
    committed = DeltaTable(shots).to_pyarrow_table().to_pylist()  # every row, as any Delta reader sees them
    assert sorted((r["video_id"], r["shot_index"]) for r in committed if r["video_id"] == f"v{VIDEOS}") == [
        (f"v{VIDEOS}", 0),
        (f"v{VIDEOS}", 1),
    ]


def _killed_commit_debris(index: Index, name: str) -> Path:
    """A data file no commit references, older than the retention: vacuum has work to commit."""
    debris = Path(index.uri) / name / f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
    pq.write_table(SCHEMAS[name].empty_table(), debris)
    hours_ago = time.time() - (MIN_RETENTION_HOURS + 1) * 3600
    os.utime(debris, (hours_ago, hours_ago))
    return debris


def test_compaction_during_a_run_loses_no_committed_row(tmp_path: Path) -> None:
    """Commits like a run's (re-indexing some videos) while compaction, and vacuum of old debris,
    run again and again: both commit to the same tables, and Delta's conflict check decides."""
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    for i in range(VIDEOS):
        index.commit_videos({"videos": to_table("videos", [_video(i)]), "shots": to_table("shots", _shots(i))})
    min_commits, min_compactions, max_commits = 16, 3, 200
    compacted_enough, done = threading.Event(), threading.Event()
    committed: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while len(committed) < min_commits or (not compacted_enough.is_set() and len(committed) < max_commits):
                i = len(committed)
                video = i % 8  # v0..v5 re-indexed, v6 and v7 new
                shots = [dict(row, run_id=f"w{i}") for row in _shots(video)]
                index.commit_videos(
                    {"videos": to_table("videos", [dict(_video(video), run_id=f"w{i}")]), "shots": to_table("shots", shots)}
                )
                committed.append(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=run)
    writer.start()
    compactions, debris = 0, []
    while not done.is_set():
        debris += [_killed_commit_debris(index, name) for name in ("shots", "videos")]
        compact_index(index, retention_hours=MIN_RETENTION_HOURS)
        compactions += 1
        if compactions >= min_compactions:
            compacted_enough.set()
    writer.join()

    assert errors == [] and compactions >= min_compactions
    assert not any(path.exists() for path in debris)
    last_run = {f"v{i % 8}": f"w{i}" for i in committed}
    videos = {r["video_id"]: r["run_id"] for r in index.read("videos").to_pylist()}
    assert videos == last_run
    # every video's current shots (those of the run its videos row names), each exactly once
    shots = sorted(
        (r["video_id"], r["shot_index"], r["run_id"])
        for r in index.read("shots").to_pylist()
        if videos[r["video_id"]] == r["run_id"]
    )
    assert shots == sorted((v, s, run) for v, run in last_run.items() for s in range(2))


def test_a_run_after_compaction_collects_orphans_and_the_tables_stay_filterable(tmp_path: Path) -> None:
    """Compaction puts many videos in one file; re-indexing one of them then rewrites that file."""
    import pyarrow.compute as pc

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    now = dt.datetime.now(dt.timezone.utc)
    index.append_run({"run_id": "r0", "started_at": now, "finished_at": now, "status": "ok"})

    def commit(i: int, run_id: str) -> None:
        shots = [dict(row, run_id=run_id) for row in _shots(i)]
        index.commit_videos({"videos": to_table("videos", [dict(_video(i), run_id=run_id)]), "shots": to_table("shots", shots)})

    for i in range(3):
        commit(i, "r0")
    compact_index(index, retention_hours=MIN_RETENTION_HOURS)
    commit(1, "r1")  # a later run re-indexes v1, then v2: r0's rows of each are collected
    commit(2, "r1")

    rows = index.read("shots", filter=pc.field("video_id") == "v0").to_pylist()
    assert [(r["video_id"], r["shot_index"]) for r in rows] == [("v0", 0), ("v0", 1)]


def test_cli_and_job_entrypoint(index: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", index.uri, "--retention-hours", "0"]) == EXIT_USAGE
    assert f"--retention-hours must be at least {MIN_RETENTION_HOURS}, got 0" in capsys.readouterr().err
    assert main(["compact", index.uri, "--retention-hours", str(MIN_RETENTION_HOURS)]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"videos     files {VIDEOS} -> 1, 0 unreferenced data files deleted" in out
    assert compact_job([index.uri]) == EXIT_OK
    assert "videos     files 1 -> 1, 0 unreferenced data files deleted" in capsys.readouterr().out
    assert main(["compact", str(tmp_path / "nothing")]) == EXIT_USAGE
    assert "is it a vindex index" in capsys.readouterr().err


def _three_hours_old(path: Path) -> None:
    then = time.time() - 3 * 3600
    os.utime(path, (then, then))


def test_compaction_refuses_a_table_folder_holding_a_users_files(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    """A video in a table's folder (a table once made inside a user's `videos/`) is never deleted."""
    holiday = Path(index.uri) / "videos" / "holiday.mp4"
    holiday.write_bytes(b"not vindex's")
    _three_hours_old(holiday)
    live = _live_files(index, "videos")

    assert main(["compact", index.uri, "--retention-hours", "1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "holds files that are not a vindex table's (holiday.mp4)" in err
    assert holiday.read_bytes() == b"not vindex's"
    assert _live_files(index, "videos") == live  # refused before any work


def test_vacuum_deletes_only_files_a_delta_writer_names(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the folder check is passed, vacuum's candidates are filtered by name."""
    from pipeline.index import location

    monkeypatch.setattr(location, "foreign_files", lambda *args, **kwargs: [])
    monkeypatch.setattr(maintenance, "MIN_RETENTION_HOURS", 0)
    shots = Path(index.uri) / "shots"
    keep = [shots / "notes.parquet", shots / "holiday.mp4", shots / "sub" / STRAY]
    for path in keep:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
        _three_hours_old(path)

    report = {t.table: t for t in compact_index(index, retention_hours=0)}

    assert all(path.exists() for path in keep)
    assert STRAY in report["shots"].deleted
    assert all(location.is_table_data_file(name) for name in report["shots"].deleted)


def test_compact_names_what_it_deleted(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    _three_hours_old(Path(index.uri) / "shots" / STRAY)
    assert main(["compact", index.uri, "--retention-hours", "1"]) == EXIT_OK
    assert f"  deleted shots/{STRAY}" in capsys.readouterr().out


def test_a_run_compacts_a_table_that_gathered_too_many_files(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committer merges small files every COMPACT_CHECK_COMMITS commits: no manual compact needed."""
    from pipeline.execution import committer as committing
    from pipeline.algorithms.stitch import VideoRows
    from pipeline.execution.committer import Committer

    before = {name: _rows(index, name) for name in SCHEMAS}
    monkeypatch.setattr(maintenance, "AUTO_COMPACT_FILES", VIDEOS + 2)
    monkeypatch.setattr(committing, "COMPACT_CHECK_COMMITS", 2)
    committer = Committer(index, every=1)
    for i in range(VIDEOS, VIDEOS + 4):
        committer.add(VideoRows(_video(i), _shots(i), [], []))
    committer.flush()
    # shots: at the 2nd commit its 7 + 2 files went over 8 and were merged into 1, then 2 more
    # commits added one each (11 without compaction); runs (1 file) was not touched
    assert len(_live_files(index, "shots")) == 3 and len(_live_files(index, "runs")) == 1
    keys = sorted((r["video_id"], r["shot_index"]) for r in index.read("shots").to_pylist())
    expected = sorted([(r["video_id"], r["shot_index"]) for r in before["shots"]]
                      + [(f"v{i}", s) for i in range(VIDEOS, VIDEOS + 4) for s in range(2)])
    assert keys == expected


def test_compaction_covers_the_clips_table_once_it_exists(index: Index) -> None:
    from pipeline.clips.run import ClipsTable

    assert "clips" not in {t.table for t in compact_index(index, retention_hours=MIN_RETENTION_HOURS)}
    clips = ClipsTable(index)
    clips.ensure()
    for i in range(3):
        clips.commit([{"clip_id": f"c{i}", "video_id": "v0", "kind": "shot", "unit_index": i, "status": "ok"}])
    report = {t.table: t for t in compact_index(index, retention_hours=MIN_RETENTION_HOURS)}
    assert (report["clips"].files_before, report["clips"].files_after) == (3, 1)
    assert sorted(clips.read(columns=["clip_id"]).column("clip_id").to_pylist()) == ["c0", "c1", "c2"]


def test_compact_orders_rows_by_video_so_a_one_video_read_opens_one_file(tmp_path: Path) -> None:
    """Ids are hashes: files merged in arrival order each span them all, and a filtered read
    must open every file. Ordered by ``video_id``, each file holds a narrow range of ids."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    ids = [hashlib.sha1(str(i).encode()).hexdigest()[:16] for i in range(24)]  # spread as video ids are
    rng = np.random.default_rng(0)
    for batch in range(0, len(ids), 4):
        videos = [{**_video(0), "video_id": v, "run_id": "r"} for v in ids[batch : batch + 4]]
        # Enough rows that the writer fills several files of the target size below.
        shots = [
            {"video_id": v, "shot_index": s, "start_frame": int(f), "end_frame": int(f) + 9, "run_id": "r"}
            for v in ids[batch : batch + 4]
            for s, f in enumerate(rng.integers(0, 10**9, 2000))
        ]
        index.commit_videos({"videos": to_table("videos", videos), "shots": to_table("shots", shots)})
    rows = _rows(index, "shots")

    maintenance.compact_index(index, retention_hours=MIN_RETENTION_HOURS, target_bytes=64 * 1024)

    assert _rows(index, "shots") == rows
    dataset = DeltaTable(f"{index.uri}/shots").to_pyarrow_dataset()
    files = len(list(dataset.get_fragments()))
    assert files >= 4  # several files, so that pruning has something to prune
    opened = [len(list(dataset.get_fragments(filter=pc.field("video_id") == v))) for v in ids]
    # a video's 2,000 rows fill most of a file: they lie in at most two
    assert max(opened) <= 2, f"a one-video read opens {opened} of {files} files"
