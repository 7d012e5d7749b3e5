"""A query sees the index's tables, and nothing else: no other file, no extension, no setting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import EXIT_USAGE, main
from pipeline.index.store import Index, to_table
from pipeline.errors import QueryError
from pipeline.index.query import CONFINED_SETTINGS, connect, run_query

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
REFUSED = "queries only see the index's tables"


def _commit(index: Index) -> None:
    """Two videos, three shots, one scene each, one keyframe, one run: every table has rows."""
    videos = [
        {"video_id": v, "uri": f"file:///c/{v}.mp4", "status": "ok", "num_shots": n, "run_id": "r1", "indexed_at": NOW}
        for v, n in (("a", 2), ("b", 1))
    ]
    shots = [
        {"video_id": v, "shot_index": i, "start_frame": 10 * i, "end_frame": 10 * i + 9, "start_s": 0.4 * i,
         "end_s": 0.4 * (i + 1), "transition": "cut" if i else "start", "run_id": "r1"}
        for v, i in (("a", 0), ("a", 1), ("b", 0))
    ]
    scenes = [
        {"video_id": v, "scene_index": 0, "first_shot": 0, "last_shot": n - 1, "start_frame": 0,
         "end_frame": 10 * n - 1, "start_s": 0.0, "end_s": 0.4 * n, "run_id": "r1"}
        for v, n in (("a", 2), ("b", 1))
    ]
    keyframes = [
        {"video_id": "a", "shot_index": 1, "scene_index": 0, "frame": 14, "time_s": 0.56, "score": 1.5,
         "embedding": np.full(1280, 0.25, np.float32), "thumbnail": b"\xff\xd8jpeg", "run_id": "r1"}
    ]
    index.commit_videos(
        {"videos": to_table("videos", videos), "shots": to_table("shots", shots),
         "scenes": to_table("scenes", scenes), "keyframes": to_table("keyframes", keyframes)}
    )
    index.append_run({"run_id": "r1", "started_at": NOW, "finished_at": NOW, "source": "file:///c", "status": "ok"})


@pytest.fixture
def index(tmp_path: Path) -> Index:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    _commit(index)
    return index


def test_the_connection_is_confined(index: Index) -> None:
    connection = connect(index)
    try:
        settings = dict(connection.sql("select name, value from duckdb_settings()").fetchall())
    finally:
        connection.close()
    assert {name: settings[name] for name in CONFINED_SETTINGS} == {
        name: str(value).lower() for name, value in CONFINED_SETTINGS.items()
    }


def test_every_table_joins_and_aggregates_still_work(index: Index) -> None:
    counts = run_query(
        index,
        "select (select count(*) from videos) as videos, (select count(*) from shots) as shots, "
        "(select count(*) from scenes) as scenes, (select count(*) from keyframes) as keyframes, "
        "(select count(*) from runs) as runs",
    )
    assert counts.to_pylist() == [{"videos": 2, "shots": 3, "scenes": 2, "keyframes": 1, "runs": 1}]
    per_video = run_query(
        index,
        "select v.uri, count(s.shot_index) as shots, max(s.end_s) as end_s, max(c.last_shot) as last_shot "
        "from videos v join shots s using (video_id) join scenes c using (video_id) group by v.uri order by v.uri",
    )
    assert per_video.to_pylist() == [
        {"uri": "file:///c/a.mp4", "shots": 2, "end_s": 0.8, "last_shot": 1},
        {"uri": "file:///c/b.mp4", "shots": 1, "end_s": 0.4, "last_shot": 0},
    ]
    keyframe = run_query(
        index,
        "select k.frame, len(k.embedding) as dims, octet_length(k.thumbnail) as jpeg_bytes, r.status "
        "from keyframes k join videos v using (video_id) join runs r on r.run_id = v.run_id",
    )
    assert keyframe.to_pylist() == [{"frame": 14, "dims": 1280, "jpeg_bytes": 6, "status": "ok"}]


def _outside_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "outside.parquet"
    pq.write_table(pa.table({"secret": ["outside the index"]}), path)
    return path


@pytest.mark.parametrize(
    "sql",
    [
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/hostname')",
        "select * from glob('/etc/*')",
        "select * from read_parquet('{outside}')",
        "select * from read_parquet('{shots_files}')",  # even the index's own files: tables only
        "select * from 'https://example.com/data.csv'",
        "copy (select * from videos) to '{out}/videos.csv'",
        "copy shots to '{out}/shots.parquet' (format parquet)",
        "export database '{out}/exported'",
        "attach '{out}/other.duckdb' as other",
        "install httpfs",
        "load httpfs",
        "set enable_external_access = true",
        "set lock_configuration = false",
        "reset autoinstall_known_extensions",
        "set allowed_directories = ['/']",
    ],
)
def test_an_operation_outside_the_tables_is_refused_and_writes_nothing(index: Index, tmp_path: Path, sql: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    statement = sql.format(outside=_outside_parquet(tmp_path), shots_files=f"{index.uri}/shots/*.parquet", out=out)
    with pytest.raises(QueryError, match=REFUSED) as refused:
        run_query(index, statement)
    assert "disabled" in str(refused.value) or "locked" in str(refused.value)  # DuckDB's reason is kept
    assert list(out.iterdir()) == []


def test_a_refusal_in_a_script_stops_it_and_leaves_nothing_behind(index: Index, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QueryError, match=REFUSED):
        run_query(index, f"select 1; copy (select * from keyframes) to '{out}/k.parquet'; select 2")
    assert list(out.iterdir()) == []


def test_other_errors_keep_duckdbs_message(index: Index) -> None:
    with pytest.raises(QueryError, match="nope") as error:
        run_query(index, "select nope from shots")
    assert REFUSED not in str(error.value)


def test_cli_reports_a_refusal(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", index.uri, "select * from read_csv('/etc/passwd')"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert REFUSED in err and "root:" not in err


def test_a_query_over_an_index_in_s3_reads_its_tables(s3, s3_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """pyarrow reads the tables' objects, so DuckDB's own storage access stays off."""
    s3.mkdir("vindex-query")
    index = Index(
        "s3://vindex-query/idx",
        {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"},
    )
    index.ensure()
    _commit(index)
    result = run_query(index, "select video_id, count(*) as shots from shots group by 1 order by 1")
    assert result.to_pylist() == [{"video_id": "a", "shots": 2}, {"video_id": "b", "shots": 1}]
    with pytest.raises(QueryError, match=REFUSED):
        run_query(index, "select * from read_parquet('s3://vindex-query/idx/shots/*.parquet')")
