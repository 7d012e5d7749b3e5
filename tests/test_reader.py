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
from pipeline.index import EMBEDDING_FIXED, SCHEMAS, Index, to_table
from pipeline.reader import IndexReader, open_index

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_public_api_is_what_all_says() -> None:
    assert pipeline.__all__ == ["IndexReader", "open_index", "similar"]
    assert sorted(name for name in dir(pipeline) if not name.startswith("_")) == sorted(pipeline.__all__)
    from pipeline.similarity import similar

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


def test_open_index_refuses_a_folder_that_is_not_an_index(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="has no 'videos' table: is it a vindex index"):
        open_index(str(tmp_path))


def test_tables_as_arrow_and_pandas(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    videos = [{"video_id": v, "uri": f"file:///{v}.mp4", "status": s, "indexed_at": NOW} for v, s in (("a", "ok"), ("b", "failed"))]
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
