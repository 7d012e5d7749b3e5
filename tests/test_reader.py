"""The Python API: `pipeline.open_index`, tables as Arrow and pandas; the package's public names."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pipeline
from pipeline.errors import IndexError_
from pipeline.index.schemas import EMBEDDING_FIXED, SCHEMAS, to_table
from pipeline.index.store import Index
from pipeline.index.reader import IndexReader, open_index

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_public_api_is_what_all_says() -> None:
    assert pipeline.__all__ == ["IndexReader", "open_index", "similar"]
    assert sorted(name for name in dir(pipeline) if not name.startswith("_")) == sorted(pipeline.__all__)
    from pipeline.index.similarity import similar

    assert (pipeline.IndexReader, pipeline.open_index, pipeline.similar) == (IndexReader, open_index, similar)
    namespace: dict[str, object] = {}
    exec("from pipeline import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(pipeline.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        pipeline.nothing_here  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_package_stays_light() -> None:
    code = "import sys, pipeline; print(sorted(m for m in ('torch', 'ray', 'pyarrow') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_reader_has_no_write_methods(tmp_path: Path) -> None:
    """A reader opened on an index cannot write to it: it is a snapshot, not the writer."""
    Index(str(tmp_path)).ensure()
    reader = open_index(str(tmp_path))
    writes = ("ensure", "commit_videos", "append_run", "collect_orphans", "abandon_stale_runs", "mark_videos")
    assert [name for name in writes if hasattr(reader, name)] == []
    assert [name for name in writes if hasattr(Index(str(tmp_path)), name)] == list(writes)


def test_open_index_refuses_a_folder_that_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="has no 'videos' table: is it a vindex index"):
        open_index(str(tmp_path))


def test_tables_as_arrow_and_pandas(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    videos = [{"video_id": v, "uri": f"file:///{v}.mp4", "status": s, "run_id": "r1", "indexed_at": NOW}
              for v, s in (("a", "ok"), ("b", "failed"))]
    keyframes = [{"video_id": "a", "shot_index": 0, "scene_index": 0, "frame": 6, "time_s": 0.24, "score": 1.0,
                  "embedding": np.full(1280, 0.5, np.float32), "thumbnail": b"\xff\xd8", "run_id": "r1"}]
    index.commit_videos({"videos": to_table("videos", videos), "keyframes": to_table("keyframes", keyframes)})

    reader = pipeline.open_index(str(tmp_path / "idx"))
    assert reader.tables == ("videos", "shots", "scenes", "keyframes", "runs")
    assert reader.table("videos").schema == SCHEMAS["videos"]
    assert reader.to_arrow("videos").equals(reader.table("videos"))
    failed = reader.table("videos", columns=["uri"], filter=pc.field("status") == "failed")
    assert failed.to_pylist() == [{"uri": "file:///b.mp4"}]
    keyframe_table = reader.table("keyframes")
    assert keyframe_table.schema.field("embedding").type == EMBEDDING_FIXED
    assert isinstance(keyframe_table, pa.Table) and keyframe_table.num_rows == 1

    frame = reader.to_pandas("videos", columns=["video_id", "status"])
    assert sorted(frame.itertuples(index=False, name=None)) == [("a", "ok"), ("b", "failed")]
    assert reader.to_pandas("shots").empty and list(reader.to_pandas("shots").columns) == SCHEMAS["shots"].names
    embedding = reader.to_pandas("keyframes")["embedding"].iloc[0]
    assert len(embedding) == 1280 and float(embedding[0]) == 0.5
    with pytest.raises(IndexError_, match="no table 'frames'"):
        reader.table("frames")


def _simulated_run(index: Index, run_id: str, videos: dict[str, str], finish: bool = True) -> None:
    """What a run writes, in its order: a running row, the videos, then the final row."""
    started = dt.datetime.now(dt.timezone.utc)
    row = {"run_id": run_id, "started_at": started, "finished_at": None, "source": "/v", "counts": None,
           "config": "{}", "versions": "{}", "status": "running"}
    index.append_run(row)
    rows = [{"video_id": v, "uri": f"file:///v/{v}.mp4", "status": "ok", "run_id": run_id, "num_shots": shots,
             "indexed_at": started} for v, shots in videos.items()]
    index.commit_videos({"videos": to_table("videos", rows)})
    if finish:
        index.append_run({**row, "finished_at": dt.datetime.now(dt.timezone.utc), "status": "ok"})


def test_as_of_a_run_reads_the_index_as_it_was_when_that_run_finished(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    _simulated_run(index, "r1", {"a": 3})
    _simulated_run(index, "r2", {"a": 5, "b": 7})  # a changed and re-indexed, b new
    _simulated_run(index, "r3", {"b": 9}, finish=False)  # stopped before its end

    reader = open_index(str(tmp_path / "idx"))
    shots = lambda r: sorted((v["video_id"], v["num_shots"]) for v in r.table("videos").to_pylist())  # noqa: E731
    assert shots(reader) == [("a", 5), ("b", 9)]
    assert shots(reader.as_of("r1")) == [("a", 3)]
    assert shots(reader.as_of("r2")) == [("a", 5), ("b", 7)]
    runs_then = reader.as_of("r1").table("runs").to_pylist()
    assert [(r["run_id"], r["status"]) for r in runs_then] == [("r1", "ok")]
    assert reader.as_of("r1").table("shots").num_rows == 0  # written in that commit: empty

    with pytest.raises(IndexError_, match="run 'r3' never finished"):
        reader.as_of("r3")
    with pytest.raises(IndexError_, match="no run 'r9'"):
        reader.as_of("r9")


def test_cli_query_as_of(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import EXIT_OK, EXIT_USAGE, main

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    _simulated_run(index, "r1", {"a": 3})
    _simulated_run(index, "r2", {"a": 5})
    sql = "select video_id, num_shots from videos"
    assert main(["query", str(tmp_path / "idx"), sql, "--format", "csv", "--as-of", "r1"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["video_id,num_shots", "a,3"]
    assert main(["query", str(tmp_path / "idx"), sql, "--format", "csv"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["video_id,num_shots", "a,5"]
    assert main(["query", str(tmp_path / "idx"), sql, "--as-of", "nope"]) == EXIT_USAGE
    assert "no run 'nope'" in capsys.readouterr().err
    # Once compaction has vacuumed r1's files, reading as of r1 says so instead of a raw error.
    # (Lowering the retention floor stands in for waiting until r1's files are old enough.)
    from pipeline.index import maintenance
    monkeypatch.setattr(maintenance, "MIN_RETENTION_HOURS", 0)
    maintenance.compact_index(index, retention_hours=0)
    assert main(["query", str(tmp_path / "idx"), sql, "--as-of", "r1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "as of run 'r1' can no longer be read: compaction has vacuumed its files" in err
    assert main(["query", str(tmp_path / "idx"), sql, "--format", "csv"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["video_id,num_shots", "a,5"]


def test_a_tables_dataset_prunes_files_by_video_and_run_and_keeps_rows_without_statistics(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    from pipeline.index.snapshot import PRUNING_COLUMNS, delta_dataset

    uri = str(tmp_path / "t")
    schema = pa.schema([("video_id", pa.string()), ("run_id", pa.string()), ("frame", pa.int64())])
    for videos, run in ((["a", "b"], "r1"), (["m", "n"], "r2"), ([None, "z"], "r3")):
        write_deltalake(uri, pa.table({"video_id": videos, "run_id": [run] * 2, "frame": [1, 2]}, schema=schema), mode="append")
    table = DeltaTable(uri)
    dataset = delta_dataset(table)
    assert dataset.to_table().sort_by("frame").equals(table.to_pyarrow_dataset().to_table().sort_by("frame"))

    def files(where: pc.Expression) -> int:
        return len(list(dataset.get_fragments(filter=where)))

    assert files(pc.field("video_id") == "m") == 2  # its own, and the one with a null video_id
    assert files(pc.field("run_id") == "r1") == 1
    assert files(pc.field("frame") == 1) == 3  # no statistics kept for other columns: every file is read
    assert dataset.to_table(filter=pc.field("video_id").is_null()).column("run_id").to_pylist() == ["r3"]
    assert dataset.to_table(filter=pc.field("video_id") == "z").column("run_id").to_pylist() == ["r3"]
    named = {str(f.partition_expression) for f in dataset.get_fragments()}
    assert all("frame" not in text and all(c in text for c in PRUNING_COLUMNS) for text in named), named
