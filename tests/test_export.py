"""`vindex export`: exactly the live rows as plain Parquet, locally and to S3, marker last;
written only into an empty folder or over an earlier export, never over the user's files."""

from __future__ import annotations

import json
import posixpath
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from fsspec.core import url_to_fs

from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.config import Config, config_from_dict
from pipeline.execution.runner import run_index
from pipeline.index import export as export_module
from pipeline.index.export import FOLDER_MARKER, MARKER, ExportError, export_index, read_marker
from pipeline.index.reader import open_index
from pipeline.index.schemas import SCHEMAS, to_table
from pipeline.index.store import Index
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
    # Nothing but the tables and the markers: the temporary folder was renamed away.
    assert sorted(p.name for p in dest.iterdir()) == sorted([*SCHEMAS, MARKER, FOLDER_MARKER])
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
    assert sorted(p.name for p in dest.iterdir()) == sorted([*SCHEMAS, MARKER, FOLDER_MARKER])


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
    modified.pop(f"vindex-export/snapshots/one/{FOLDER_MARKER}")
    assert sorted(modified) == sorted(f"vindex-export/snapshots/one/{name}/part-0.parquet" for name in SCHEMAS)
    assert marker_written >= max(modified.values())


# --------------------------------------------------------------------------- what a destination may hold
#
# These need no run: a hand-built index of one video, exported to a local folder and to an
# fsspec memory:// folder alike.

EXPORT_FILES = sorted([MARKER, FOLDER_MARKER, *(f"{name}/part-0.parquet" for name in SCHEMAS)])


@pytest.fixture(scope="module")
def small_index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    index = Index(str(tmp_path_factory.mktemp("small") / "idx"))
    index.ensure()
    video = {"video_id": "v1", "uri": "file:///v/a.mp4", "status": "ok", "run_id": "r1"}
    index.commit_videos({"videos": to_table("videos", [video])})
    return index


@pytest.fixture(params=["local", "memory"])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "dest")
    return f"memory://export-{uuid.uuid4().hex}/dest"


def _put(dest: str, relative: str, data: bytes) -> None:
    fs, root = url_to_fs(dest)
    fs.makedirs(posixpath.dirname(posixpath.join(root, relative)), exist_ok=True)
    with fs.open(posixpath.join(root, relative), "wb") as f:
        f.write(data)


def _files(dest: str) -> dict[str, bytes]:
    """Every file under ``dest`` (relative path: content)."""
    fs, root = url_to_fs(dest)
    root = root.rstrip("/")
    return {path[len(root) + 1 :]: fs.cat_file(path) for path in fs.find(root)}


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_files_is_refused_and_left_intact(small_index: Index, dest: str, overwrite: bool) -> None:
    # Named like an export's tables, but no export marker: the user's own videos.
    _put(dest, "videos/holiday.mp4", b"holiday")
    _put(dest, "clips/c1.mp4", b"clip one")
    with pytest.raises(ExportError, match=r"is not a vindex export .*: nothing was changed; choose an empty or new folder"):
        export_index(small_index, dest, overwrite=overwrite)
    assert _files(dest) == {"videos/holiday.mp4": b"holiday", "clips/c1.mp4": b"clip one"}


def test_the_command_refuses_a_folder_of_the_users_files(small_index: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "dest"
    (dest / "videos").mkdir(parents=True)
    (dest / "clips").mkdir()
    (dest / "videos" / "holiday.mp4").write_bytes(b"holiday")
    (dest / "clips" / "c1.mp4").write_bytes(b"clip one")
    for flags in ([], ["--overwrite"]):
        assert main(["export", small_index.uri, str(dest), *flags]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "is not a vindex export" in err and "choose an empty or new folder" in err and "--overwrite" not in err
    assert _files(str(dest)) == {"videos/holiday.mp4": b"holiday", "clips/c1.mp4": b"clip one"}


def test_overwrite_replaces_an_earlier_export(small_index: Index, dest: str) -> None:
    first = export_index(small_index, dest)
    assert (first.removed, first.left) == ((), ())
    assert sorted(_files(dest)) == EXPORT_FILES
    with pytest.raises(ExportError, match="holds an earlier export: pass --overwrite to replace it"):
        export_index(small_index, dest)
    second = export_index(small_index, dest, overwrite=True)
    # The completion marker goes first, so a half-cleared export never looks complete.
    assert second.removed == (MARKER, *sorted(f"{name}/part-0.parquet" for name in SCHEMAS))
    assert second.left == ()
    assert sorted(_files(dest)) == EXPORT_FILES
    marker = read_marker(dest)
    assert marker is not None and marker["tables"]["videos"]["rows"] == 1


def test_the_command_says_what_it_deleted(small_index: Index, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = str(tmp_path / "dest")
    assert main(["export", small_index.uri, dest]) == EXIT_OK
    capsys.readouterr()
    assert main(["export", small_index.uri, dest, "--overwrite"]) == EXIT_OK
    deleted = [line for line in capsys.readouterr().out.splitlines() if line.startswith("deleted")]
    assert deleted == [f"deleted the earlier export's {dest}/{MARKER}"] + [
        f"deleted the earlier export's {dest}/{name}/part-0.parquet" for name in sorted(SCHEMAS)
    ]


def test_a_file_beside_an_earlier_export_is_left_in_place(small_index: Index, dest: str) -> None:
    export_index(small_index, dest)
    _put(dest, "notes.txt", b"keep me")
    _put(dest, "videos-by-hand/holiday.mp4", b"holiday")
    summary = export_index(small_index, dest, overwrite=True)
    assert summary.left == ("notes.txt", "videos-by-hand/")
    files = _files(dest)
    assert (files.pop("notes.txt"), files.pop("videos-by-hand/holiday.mp4")) == (b"keep me", b"holiday")
    assert sorted(files) == EXPORT_FILES


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_file_inside_an_earlier_exports_table_folder_is_refused(small_index: Index, dest: str, overwrite: bool) -> None:
    export_index(small_index, dest)
    _put(dest, "videos/holiday.mp4", b"holiday")
    before = _files(dest)
    with pytest.raises(ExportError, match=r"files an export does not write \(videos/holiday.mp4\) .*nothing was deleted"):
        export_index(small_index, dest, overwrite=overwrite)
    assert _files(dest) == before


def test_a_link_in_an_earlier_export_is_never_followed(small_index: Index, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    export_index(small_index, str(dest))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "part-0.parquet").write_bytes(b"the user's own file")
    shutil.rmtree(dest / "shots")
    (dest / "shots").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ExportError, match=r"files an export does not write \(shots\)"):
        export_index(small_index, str(dest), overwrite=True)
    assert (elsewhere / "part-0.parquet").read_bytes() == b"the user's own file"
    assert (dest / MARKER).exists()


def test_an_unfinished_export_is_recognised_by_its_folder_marker(
    small_index: Index, dest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export_module._export_table

    def fail_at_keyframes(index: Index, name: str, fs: Any, root: str) -> Any:
        if name == "keyframes":
            raise OSError("the storage went away")
        return real(index, name, fs, root)

    monkeypatch.setattr(export_module, "_export_table", fail_at_keyframes)
    with pytest.raises(OSError, match="the storage went away"):
        export_index(small_index, dest)
    monkeypatch.undo()
    assert read_marker(dest) is None and FOLDER_MARKER in _files(dest)
    with pytest.raises(ExportError, match="holds an unfinished earlier export: pass --overwrite"):
        export_index(small_index, dest)
    summary = export_index(small_index, dest, overwrite=True)
    # Locally the tables were still in their staging folder; in memory, written in place.
    assert summary.removed and all(p.endswith("part-0.parquet") for p in summary.removed)
    assert sorted(_files(dest)) == EXPORT_FILES
