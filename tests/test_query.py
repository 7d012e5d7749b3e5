"""A query sees the index's tables, and nothing else: no other file, no extension, no setting."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import EXIT_USAGE, main
from pipeline.index.schemas import to_table
from pipeline.index.store import Index
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
    with connect(index) as connection:
        settings = dict(connection.sql("select name, value from duckdb_settings()").fetchall())
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


# --------------------------------------------------------------------------- an index with clips


def _clip_row(clip_id: str, video_id: str, unit_index: int) -> dict[str, object]:
    return {
        "clip_id": clip_id, "video_id": video_id, "kind": "shot", "unit_index": unit_index, "start_frame": 10 * unit_index,
        "end_frame": 10 * unit_index + 9, "start_s": 0.4 * unit_index, "end_s": 0.4 * (unit_index + 1),
        "uri": f"file:///out/{video_id}/{clip_id}.mp4", "size_bytes": 1000 + unit_index, "codec": "h264", "width": 96,
        "height": 64, "mode": "reencode", "run_id": "clips-1", "status": "ok", "error_message": None, "created_at": NOW,
    }


@pytest.fixture
def clipped(index: Index) -> Index:
    """The index with a clips table, as `vindex clips` leaves it: two clips of video a."""
    from pipeline.clips.run import ClipsTable

    clips = ClipsTable(index)
    clips.ensure()
    clips.commit([_clip_row("c0", "a", 0), _clip_row("c1", "a", 1)])
    return index


def test_queries_read_an_index_with_a_clips_table(clipped: Index) -> None:
    assert run_query(clipped, "select count(*) as n from shots").to_pylist() == [{"n": 3}]
    joined = run_query(
        clipped,
        "select c.clip_id, s.transition, v.uri from clips c join shots s on s.video_id = c.video_id "
        "and s.shot_index = c.unit_index join videos v on v.video_id = c.video_id order by c.clip_id",
    )
    assert joined.to_pylist() == [
        {"clip_id": "c0", "transition": "start", "uri": "file:///c/a.mp4"},
        {"clip_id": "c1", "transition": "cut", "uri": "file:///c/a.mp4"},
    ]
    # As of a run, the clips table (outside the run protocol, pinned by no run) is not there.
    as_of = dataclasses.replace(clipped, versions=clipped.pinned_at_run("r1"))
    assert run_query(as_of, "select count(*) as n from shots").to_pylist() == [{"n": 3}]
    with pytest.raises(QueryError, match="clips"):
        run_query(as_of, "select count(*) from clips")


def test_every_reading_command_works_on_an_index_with_a_clips_table(
    clipped: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["query", clipped.uri, "select count(*) as n from shots", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "n\n3\n"
    assert main(["query", clipped.uri, "select sum(size_bytes) as b from clips", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "b\n2001\n"
    assert main(["query", clipped.uri, "select count(*) as n from videos", "--format", "csv", "--as-of", "r1"]) == 0
    assert capsys.readouterr().out == "n\n2\n"
    assert main(["status", clipped.uri]) == 0
    assert "videos: 2 ok" in capsys.readouterr().out
    assert main(["similar", clipped.uri, "--keyframe", "a:14", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split(",")[2:4] == ["file:///c/a.mp4", "a"]
    assert main(["export", clipped.uri, str(tmp_path / "export")]) == 0
    assert pq.read_table(tmp_path / "export" / "clips").num_rows == 2
    assert pq.read_table(tmp_path / "export" / "shots").num_rows == 3
    assert main(["report", clipped.uri, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").is_file()


# --------------------------------------------------------------------------- time limit and spill folder

#: A query that runs until stopped: it counts 10^14 rows.
ENDLESS = "select count(*) from range(100000000000000)"
#: Another: a recursive CTE without an end.
RECURSIVE = "with recursive r(n) as (select 1 union all select n + 1 from r) select count(*) from r"


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary folder, made an empty folder of the test's; the working
    directory, another."""
    import tempfile

    root = tmp_path / "system-temp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return root


@pytest.mark.parametrize("sql", [ENDLESS, RECURSIVE])
def test_a_query_running_past_its_timeout_is_stopped(index: Index, temp_root: Path, sql: str) -> None:
    with pytest.raises(QueryError, match=r"ran longer than 1 s and was stopped \(pass --timeout"):
        run_query(index, sql, timeout_s=1)
    assert list(temp_root.iterdir()) == []  # the spill folder is removed
    assert list(Path.cwd().iterdir()) == []  # nothing (no .tmp) in the working directory


def test_the_cli_stops_a_long_query_with_exit_2(index: Index, temp_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", index.uri, ENDLESS, "--timeout", "1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "vindex: error: the query ran longer than 1 s and was stopped" in err
    assert list(temp_root.iterdir()) == [] and list(Path.cwd().iterdir()) == []


def test_timeout_values(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import build_parser
    from pipeline.index.query import DEFAULT_TIMEOUT_S

    parse = build_parser().parse_args
    assert parse(["query", "i", "select 1"]).timeout == DEFAULT_TIMEOUT_S
    assert parse(["query", "i", "select 1", "--timeout", "2.5"]).timeout == 2.5
    assert parse(["query", "i", "select 1", "--timeout", "0"]).timeout is None
    assert parse(["query", "i", "select 1", "--timeout", "none"]).timeout is None
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(SystemExit):
            parse(["query", "i", "select 1", "--timeout", bad])
    # No limit: a quick query runs as before.
    assert run_query(index, "select count(*) as n from shots", timeout_s=None).to_pylist() == [{"n": 3}]


def test_duckdb_spills_into_a_folder_of_its_own_in_the_system_temp_folder(index: Index, temp_root: Path) -> None:
    with connect(index) as connection:
        [(spill,)] = connection.sql("select current_setting('temp_directory')").fetchall()
        assert Path(spill).parent == temp_root and Path(spill).is_dir()
        # What DuckDB spills goes there, and a query cannot move it.
        with pytest.raises(Exception, match="locked"):
            connection.sql(f"set temp_directory = '{Path.cwd()}'")
    assert not Path(spill).exists()
    assert list(Path.cwd().iterdir()) == []


def test_a_query_opens_only_the_tables_it_mentions() -> None:
    from pipeline.index.query import mentioned

    names = ["videos", "shots", "scenes", "keyframes", "runs"]
    assert mentioned(names, "select count(*) from SHOTS where video_id = 'x'") == ["shots"]
    assert mentioned(names, 'select * from "shots" s join videos v using (video_id)') == ["videos", "shots"]
    assert mentioned(names, "select 1 from shots_x, my_runs, keyframes2") == []
    assert mentioned(names, "select 1") == []


def test_a_query_sees_every_table_it_names(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    result = run_query(index, "select (select count(*) from videos) + (select count(*) from RUNS) as n")
    assert result.column("n").to_pylist() == [0]


def test_a_query_sees_exactly_the_rows_the_markers_name_now_and_as_of_a_run(index: Index) -> None:
    """Rows a run has appended but not yet marked, and rows whose marker another run has since
    replaced, are invisible to a query as to the Python readers, at the latest version and as
    of a finished run."""
    shot = {"shot_index": 0, "start_frame": 0, "end_frame": 9, "start_s": 0.0, "end_s": 0.4, "transition": "start"}
    index.append_children({"shots": to_table("shots", [{**shot, "video_id": "a", "run_id": "r2"},
                                                       {**shot, "video_id": "c", "run_id": "r2"}])})
    index.commit_videos({
        "videos": to_table("videos", [{"video_id": "b", "uri": "file:///c/b.mp4", "status": "ok", "num_shots": 2,
                                       "run_id": "r3", "indexed_at": NOW}]),
        "shots": to_table("shots", [{**shot, "video_id": "b", "run_id": "r3"}, {**shot, "shot_index": 1,
                                                                                "video_id": "b", "run_id": "r3"}]),
    })  # fmt: skip
    sql = "select video_id, run_id, count(*) as n from shots group by all order by all"
    now = [("a", "r1", 2), ("b", "r3", 2)]
    assert [tuple(r.values()) for r in run_query(index, sql).to_pylist()] == now
    shown = index.dataset("shots").to_table(columns=["video_id", "run_id"]).to_pylist()
    assert sorted(tuple(r.values()) for r in shown) == [("a", "r1"), ("a", "r1"), ("b", "r3"), ("b", "r3")]
    assert [tuple(r.values()) for r in run_query(index, "select * from shots where video_id = 'c'").to_pylist()] == []
    assert run_query(index, "select * from shots limit 0").column_names == index.dataset("shots").schema.names
    as_of_r1 = dataclasses.replace(index, versions=index.pinned_at_run("r1"))
    assert [tuple(r.values()) for r in run_query(as_of_r1, sql).to_pylist()] == [("a", "r1", 2), ("b", "r1", 1)]
