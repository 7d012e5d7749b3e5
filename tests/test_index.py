from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.errors import IndexError_, QueryError
from pipeline.index.schemas import EMBEDDING_FIXED, LISTING_COLUMNS, SCHEMAS, to_table
from pipeline.index.store import Index
from pipeline.index.query import format_result, run_query

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def video(video_id: str, status: str = "ok", run_id: str = "r1") -> dict[str, object]:
    return {"video_id": video_id, "uri": f"file:///{video_id}.mp4", "size_bytes": 1, "status": status, "run_id": run_id, "indexed_at": NOW}


def shot(video_id: str, index: int, run_id: str = "r1") -> dict[str, object]:
    return {"video_id": video_id, "shot_index": index, "start_frame": index * 10, "end_frame": index * 10 + 9,
            "start_s": index * 0.4, "end_s": (index + 1) * 0.4, "transition": "cut" if index else "start", "run_id": run_id}


def keyframe(video_id: str) -> dict[str, object]:
    return {"video_id": video_id, "shot_index": 0, "scene_index": 0, "frame": 3, "time_s": 0.12, "score": 1.5,
            "embedding": np.arange(1280, dtype=np.float32), "thumbnail": b"\xff\xd8jpeg", "run_id": "r1"}


def commit(index: Index, videos: list[dict], shots: list[dict], keyframes: list[dict] | None = None) -> None:  # type: ignore[type-arg]
    index.commit_videos(
        {"videos": to_table("videos", videos), "shots": to_table("shots", shots),
         "keyframes": to_table("keyframes", keyframes or [])}
    )


def test_schemas_use_exact_frames_and_float_seconds() -> None:
    for name in ("shots", "scenes"):
        schema = SCHEMAS[name]
        assert schema.field("start_frame").type == pa.int64() and schema.field("end_frame").type == pa.int64()
        assert schema.field("start_s").type == pa.float64() and schema.field("end_s").type == pa.float64()
    assert SCHEMAS["keyframes"].field("frame").type == pa.int64()
    assert all("run_id" in schema.names for schema in SCHEMAS.values())


def test_recommit_replaces_a_videos_rows_instead_of_duplicating(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    commit(index, [video("a"), video("b")], [shot("a", 0), shot("a", 1), shot("b", 0)])
    commit(index, [video("a", run_id="r2")], [shot("a", 0, "r2")])
    shots = index.read("shots").to_pylist()
    assert sorted((s["video_id"], s["shot_index"], s["run_id"]) for s in shots) == [("a", 0, "r2"), ("b", 0, "r1")]
    videos = index.read("videos").to_pylist()
    assert sorted((v["video_id"], v["run_id"]) for v in videos) == [("a", "r2"), ("b", "r1")]


def test_tables_are_readable_without_vindex(tmp_path: Path) -> None:
    import duckdb
    import pandas as pd
    import polars as pl
    from deltalake import DeltaTable

    path = tmp_path / "idx"
    index = Index(str(path))
    index.ensure()
    commit(index, [video("a")], [shot("a", 0), shot("a", 1)], [keyframe("a")])
    assert DeltaTable(str(path / "shots")).to_pyarrow_table().num_rows == 2
    assert pd.read_parquet(DeltaTable(str(path / "shots")).file_uris()).shape[0] == 2
    assert pl.read_delta(str(path / "shots")).height == 2
    con = duckdb.connect()
    con.register("shots", DeltaTable(str(path / "shots")).to_pyarrow_dataset())
    assert con.sql("select max(end_frame) from shots").fetchall() == [(19,)]
    keyframes = index.read("keyframes")
    assert keyframes.schema.field("embedding").type == EMBEDDING_FIXED
    assert keyframes.column("thumbnail").to_pylist() == [b"\xff\xd8jpeg"]


def test_query_over_all_tables_and_formats(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    commit(index, [video("a"), video("b", status="failed")], [shot("a", 0), shot("a", 1)])
    result = run_query(index, "select v.video_id, count(s.shot_index) as shots from videos v "
                              "left join shots s using (video_id) group by 1 order by 1")
    assert result.to_pylist() == [{"video_id": "a", "shots": 2}, {"video_id": "b", "shots": 0}]
    assert format_result(result, "csv") == "video_id,shots\na,2\nb,0"
    assert format_result(result, "json").splitlines()[0] == '{"video_id": "a", "shots": 2}'
    table = format_result(result, "table").splitlines()
    assert table[0].split() == ["video_id", "shots"] and table[-1] == "(2 rows)"
    with pytest.raises(QueryError, match="nope"):
        run_query(index, "select nope from shots")


def test_reading_a_location_that_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="is it a vindex index"):
        Index(str(tmp_path / "missing")).read("videos")
    with pytest.raises(IndexError_, match="no table 'frames'"):
        Index(str(tmp_path)).read("frames")


def _commit_many(index_uri: str, prefix: str, count: int) -> None:
    index = Index(index_uri)
    for i in range(count):
        commit(index, [video(f"{prefix}{i}")], [shot(f"{prefix}{i}", 0)])


def test_concurrent_runs_commit_without_losing_rows(tmp_path: Path) -> None:
    import multiprocessing

    uri = str(tmp_path / "idx")
    Index(uri).ensure()
    # Separate processes, like two `vindex run`s; spawn, since deltalake must not be forked.
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_commit_many, args=(uri, prefix, 5)) for prefix in ("a", "b", "c")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0, 0]
    index = Index(uri)
    assert sorted(v["video_id"] for v in index.read("videos").to_pylist()) == sorted(
        f"{p}{i}" for p in "abc" for i in range(5)
    )
    assert index.read("shots").num_rows == 15


def test_a_listed_object_fills_exactly_the_listing_columns_of_videos() -> None:
    from pipeline.sources.listing import VideoObject

    listed = VideoObject("file:///v.mp4", 10, "e1", dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc))
    row = {key: value for key, value in listed.to_row().items() if key in SCHEMAS["videos"].names}
    assert tuple(row) == LISTING_COLUMNS
    assert to_table("videos", [row]).select(list(LISTING_COLUMNS)).to_pylist() == [row]


def test_a_table_another_run_created_at_the_same_moment_is_taken_as_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs starting on a new index at once race to create each table; the one whose first
    commit lands second gets Delta's conflict, and must go on with the table the other made."""
    import deltalake
    from deltalake.exceptions import CommitFailedError

    real_create = deltalake.DeltaTable.create
    raced: list[str] = []

    def create_racing(uri: str, *args: object, **kwargs: object) -> object:
        real_create(uri, *args, **kwargs)  # what the other run committed first
        raced.append(uri)
        raise CommitFailedError("Failed to commit transaction: Protocol changed since last commit: protocol changed")

    monkeypatch.setattr(deltalake.DeltaTable, "create", create_racing)
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    assert len(raced) == len(SCHEMAS)
    monkeypatch.undo()
    assert all(index.exists(name) for name in SCHEMAS)
    index.commit_videos({"videos": to_table("videos", [{"video_id": "v", "uri": "file:///v.mp4", "status": "ok", "run_id": "r"}])})
    assert index.read("videos").num_rows == 1
