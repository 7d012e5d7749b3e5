"""Compaction merges a table's small files without changing its rows; vacuum deletes the rest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from jobs.compact import main as compact_job
from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.errors import ConfigError
from pipeline.index import SCHEMAS, Index, to_table
from pipeline.maintenance import compact_index

VIDEOS = 6


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
    live = sorted(shots.glob("*.parquet"))[0]
    (shots / "part-00000-never-committed.parquet").write_bytes(live.read_bytes())
    return index


def _parquet_on_disk(index: Index, name: str) -> set[str]:
    return {p.name for p in (Path(index.uri) / name).glob("*.parquet")}


def _live_files(index: Index, name: str) -> set[str]:
    from deltalake import DeltaTable

    return {Path(uri).name for uri in DeltaTable(f"{index.uri}/{name}").file_uris()}


def _rows(index: Index, name: str) -> list[dict[str, object]]:
    return sorted(index.read(name).to_pylist(), key=lambda r: sorted((k, str(v)) for k, v in r.items()))


def test_compact_merges_files_keeps_rows_and_vacuums_the_rest(index: Index) -> None:
    before = {name: _rows(index, name) for name in SCHEMAS}
    assert len(_live_files(index, "shots")) == VIDEOS  # one live file per video (v0's first one replaced)
    assert len(_parquet_on_disk(index, "shots")) == VIDEOS + 2

    report = {t.table: t for t in compact_index(index, retention_hours=0)}

    assert {name: _rows(index, name) for name in SCHEMAS} == before
    shots, videos = report["shots"], report["videos"]
    assert (shots.files_before, shots.files_after) == (VIDEOS, 1)
    assert (videos.files_before, videos.files_after) == (VIDEOS, 1)
    # the replaced file, the six compacted ones and the stray one are gone; the live one is left
    assert shots.files_vacuumed == VIDEOS + 2
    assert videos.files_vacuumed == VIDEOS + 1
    assert _parquet_on_disk(index, "shots") == _live_files(index, "shots")
    assert len(_parquet_on_disk(index, "shots")) == 1
    assert report["scenes"] == type(shots)("scenes", 0, 0, 0)  # empty tables stay empty


def test_a_retention_window_keeps_recent_versions_files(index: Index) -> None:
    report = {t.table: t for t in compact_index(index, retention_hours=24)}
    assert report["shots"].files_after == 1 and report["shots"].files_vacuumed == 0
    assert len(_parquet_on_disk(index, "shots")) == VIDEOS + 3  # old versions stay readable
    with pytest.raises(ConfigError, match="--retention-hours"):
        compact_index(index, retention_hours=-1)


def test_cli_and_job_entrypoint(index: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", index.uri, "--retention-hours", "0"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"shots      files {VIDEOS} -> 1, {VIDEOS + 2} unreferenced files deleted" in out
    assert compact_job([index.uri, "--retention-hours", "0"]) == EXIT_OK
    assert "shots      files 1 -> 1, 0 unreferenced files deleted" in capsys.readouterr().out
    assert main(["compact", str(tmp_path / "nothing")]) == EXIT_USAGE
    assert "is it a vindex index" in capsys.readouterr().err
