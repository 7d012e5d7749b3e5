"""`vindex export`: exactly the live rows as plain Parquet, locally and to S3, marker last."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.config import Config, config_from_dict
from pipeline.execution.runner import run_index
from pipeline.index.export import MARKER, ExportError, export_index, read_marker
from pipeline.index.reader import open_index
from pipeline.index.store import SCHEMAS
from pipeline.sources.storage import fsspec_options
from testkit import synthetic

#: Small clips (64x48) keep each of the three runs short.
SPEC_A = synthetic.simple_spec([20, 24], "cut", contents=[1, 2], width=64, height=48, seed=7)
SPEC_A2 = synthetic.simple_spec([18, 16, 20], "cut", contents=[3, 4, 5], width=64, height=48, seed=8)
SPEC_A3 = synthetic.simple_spec([26, 22], "cut", contents=[6, 1], width=64, height=48, seed=9)
SPEC_B = synthetic.simple_spec([22, 20], "cut", contents=[2, 7], width=64, height=48, seed=10)


@pytest.fixture(scope="module")
def three_runs(ray_local, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """An index after three runs, each re-indexing a changed video (so Delta keeps old files)."""
    folder = tmp_path_factory.mktemp("export-corpus")
    index = str(tmp_path_factory.mktemp("export-index") / "idx")
    synthetic.write_clip(folder / "b.mp4", SPEC_B)
    run_ids = []
    for spec in (SPEC_A, SPEC_A2, SPEC_A3):
        synthetic.write_clip(folder / "a.mp4", spec)
        summary = run_index(str(folder), index, Config(), show_progress=False)
        assert summary.counts["failed"] == 0 and summary.counts["ok"] == (2 if not run_ids else 1)
        run_ids.append(summary.run_id)
    return {"index": index, "runs": run_ids}


def _rows(table: pa.Table) -> list[str]:
    """A table's rows as sorted JSON lines: equal lists mean the same set of rows."""
    return sorted(json.dumps(r, sort_keys=True, default=repr) for r in table.to_pylist())


def test_export_holds_exactly_the_live_rows(three_runs: dict[str, Any], tmp_path: Path) -> None:
    index = open_index(three_runs["index"])
    dest = tmp_path / "export"
    summary = export_index(index, str(dest))

    # The problem an export solves: the Delta folder read as plain Parquet holds dead rows.
    plain = pads.dataset(Path(three_runs["index"]) / "shots", format="parquet").to_table()
    assert plain.num_rows > index.table("shots").num_rows

    for name in SCHEMAS:
        exported = pq.read_table(dest / name)
        assert _rows(exported) == _rows(index.table(name)), name
    assert pq.read_table(dest / "shots").schema.field("embedding").type == index.table("shots").schema.field("embedding").type

    marker = read_marker(str(dest))
    assert marker is not None and marker["as_of_run"] is None
    assert marker["tables"]["shots"]["rows"] == index.table("shots").num_rows == summary.tables[1].rows
    assert set(marker["versions"]) == set(SCHEMAS)
    # Nothing but the tables and the marker: the temporary folder was renamed away.
    assert sorted(p.name for p in dest.iterdir()) == sorted([*SCHEMAS, MARKER])
    # The marker is the last file written.
    data_mtimes = [p.stat().st_mtime_ns for p in dest.rglob("*.parquet")]
    assert (dest / MARKER).stat().st_mtime_ns >= max(data_mtimes)


def test_export_as_of_an_earlier_run(three_runs: dict[str, Any], tmp_path: Path) -> None:
    first = three_runs["runs"][0]
    dest = tmp_path / "first"
    assert main(["export", three_runs["index"], str(dest), "--as-of", first]) == EXIT_OK
    then = open_index(three_runs["index"]).as_of(first)
    for name in SCHEMAS:
        assert _rows(pq.read_table(dest / name)) == _rows(then.table(name)), name
    now_shots = open_index(three_runs["index"]).table("shots")
    assert _rows(pq.read_table(dest / "shots")) != _rows(now_shots)
    marker = read_marker(str(dest))
    assert marker is not None and marker["as_of_run"] == first


def test_destination_rules(three_runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = open_index(three_runs["index"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not a vindex export"):
        export_index(index, str(foreign), overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"

    # An index holds folders named like an export's tables: it is never taken for one.
    copy = tmp_path / "index-copy"
    shutil.copytree(three_runs["index"], copy)
    with pytest.raises(ExportError, match="is a vindex index"):
        export_index(index, str(copy), overwrite=True)
    assert open_index(str(copy)).table("shots").num_rows == index.table("shots").num_rows

    dest = tmp_path / "again"
    assert main(["export", three_runs["index"], str(dest)]) == EXIT_OK
    assert main(["export", three_runs["index"], str(dest)]) == EXIT_USAGE
    assert "holds an earlier export: pass --overwrite" in capsys.readouterr().err
    assert main(["export", three_runs["index"], str(dest), "--overwrite"]) == EXIT_OK
    assert _rows(pq.read_table(dest / "videos")) == _rows(index.table("videos"))


def test_a_failed_export_leaves_no_marker(three_runs: dict[str, Any], tmp_path: Path) -> None:
    broken = tmp_path / "broken-index"
    shutil.copytree(three_runs["index"], broken)
    index = open_index(str(broken))
    for name in index.dataset("keyframes").files:  # paths relative to the table's folder
        (broken / "keyframes" / name).unlink()  # a storage failure midway: keyframes is exported after shots and scenes
    dest = tmp_path / "half"
    with pytest.raises(FileNotFoundError):
        export_index(index, str(dest))
    assert read_marker(str(dest)) is None
    with pytest.raises(ExportError, match="unfinished earlier export"):
        export_index(open_index(three_runs["index"]), str(dest))
    export_index(open_index(three_runs["index"]), str(dest), overwrite=True)
    assert read_marker(str(dest)) is not None
    assert sorted(p.name for p in dest.iterdir()) == sorted([*SCHEMAS, MARKER])


def test_export_to_s3(three_runs: dict[str, Any], s3, s3_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    s3.mkdir("vindex-export")
    dest = "s3://vindex-export/snapshots/one"
    config = config_from_dict({"storage": {"endpoint_url": s3_endpoint}})
    code = main(["export", three_runs["index"], dest, "--set", f"storage.endpoint_url={s3_endpoint}"])
    assert code == EXIT_OK
    index = open_index(three_runs["index"])
    import s3fs

    fs = s3fs.S3FileSystem(**fsspec_options(dest, config.storage))
    for name in SCHEMAS:
        exported = pq.read_table(f"vindex-export/snapshots/one/{name}", filesystem=fs)
        assert _rows(exported) == _rows(index.table(name)), name
    marker = read_marker(dest, fsspec_options(dest, config.storage))
    assert marker is not None and marker["tables"]["videos"]["rows"] == 2
    assert fs.ls("vindex-export/snapshots/one/videos") == ["vindex-export/snapshots/one/videos/part-0.parquet"]
    # Written in place (object stores cannot rename), the marker last.
    modified = {path: fs.info(path)["LastModified"] for path in fs.find("vindex-export/snapshots/one")}
    marker_written = modified.pop(f"vindex-export/snapshots/one/{MARKER}")
    assert sorted(modified) == sorted(f"vindex-export/snapshots/one/{name}/part-0.parquet" for name in SCHEMAS)
    assert marker_written >= max(modified.values())
