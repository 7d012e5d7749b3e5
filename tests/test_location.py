"""An index location is vindex's only where vindex made it (pipeline.index.location)."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from pipeline.cli import EXIT_USAGE, main
from pipeline.errors import ConfigError
from pipeline.index.location import MARKER, check_apart, claim_index, is_table_data_file
from pipeline.index.schemas import SCHEMAS, to_table
from pipeline.index.store import Index


def test_run_never_puts_a_table_in_a_users_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`mkdir videos; cp holiday.mp4 videos/; vindex run videos --index .`: refused, nothing written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "holiday.mp4").write_bytes(b"a user's video")

    assert main(["run", "videos", "--index", "."]) == EXIT_USAGE

    err = capsys.readouterr().err
    assert "the source videos lies inside the index ." in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["holiday.mp4", "videos"]


def test_a_table_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "idx" / "shots").mkdir(parents=True)
    (tmp_path / "idx" / "shots" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"idx/shots holds files that are not a vindex table's \(notes.txt\)"):
        claim_index(str(tmp_path / "idx"), SCHEMAS, source=str(tmp_path / "videos"))
    assert sorted(p.name for p in (tmp_path / "idx").rglob("*")) == ["notes.txt", "shots"]


@pytest.mark.parametrize(
    ("source", "index"),
    [
        ("corpus", "corpus/index"),  # the index inside the source
        ("corpus/*.mp4", "corpus/index"),  # a glob's folder
        ("corpus", "corpus"),
        ("idx/videos", "idx"),  # the source inside the index
        ("idx/videos/a.mp4", "idx"),
    ],
)
def test_index_and_source_must_lie_apart(tmp_path: Path, source: str, index: str) -> None:
    with pytest.raises(ConfigError, match="lies inside the"):
        check_apart(str(tmp_path / source), str(tmp_path / index))


@pytest.mark.parametrize(
    ("source", "index"),
    [("corpus", "corpus-index"), ("corpus2", "corpus"), ("a/corpus", "b/index"), ("memory://corpus", "idx")],
)
def test_neighbours_are_apart(tmp_path: Path, source: str, index: str) -> None:
    check_apart(source if "://" in source else str(tmp_path / source), str(tmp_path / index))


def test_a_new_location_is_marked_and_an_earlier_index_adopted(tmp_path: Path) -> None:
    new = tmp_path / "new"
    claim_index(str(new), SCHEMAS, source=str(tmp_path / "videos"))
    assert json.loads((new / MARKER).read_text())["format"] == "vindex-index"

    earlier = Index(str(tmp_path / "earlier"))  # made before the marker existed
    earlier.ensure()
    earlier.commit_videos({"videos": to_table("videos", [{"video_id": "v", "uri": "file:///v.mp4", "run_id": "r"}])})
    claim_index(earlier.uri, SCHEMAS)
    assert (tmp_path / "earlier" / MARKER).exists()
    claim_index(earlier.uri, SCHEMAS)  # and again: nothing changes


def test_claim_works_on_object_storage_urls() -> None:
    claim_index("memory://claimed/idx", SCHEMAS, source="memory://claimed/videos")
    assert fsspec.filesystem("memory").exists("/claimed/idx/" + MARKER)
    fs = fsspec.filesystem("memory")
    fs.pipe("/claimed2/idx/videos/holiday.mp4", b"x")
    with pytest.raises(ConfigError, match="holiday.mp4"):
        claim_index("memory://claimed2/idx", SCHEMAS, source="memory://claimed2/videos")


@pytest.mark.parametrize(
    ("name", "is_data"),
    [
        ("part-00000-a63d3128-4fb4-45e4-9ee9-e1d48ead210d-c000.snappy.parquet", True),
        ("part-00001-a63d3128-4fb4-45e4-9ee9-e1d48ead210d-c000.zstd.parquet", True),
        ("part-00001-a63d3128-4fb4-45e4-9ee9-e1d48ead210d-c000.parquet", True),
        ("sub/part-00001-a63d3128-4fb4-45e4-9ee9-e1d48ead210d-c000.parquet", False),
        ("notes.parquet", False),
        ("holiday.mp4", False),
        ("part-00000-never-committed.parquet", False),
    ],
)
def test_only_files_a_delta_writer_names_are_data_files(name: str, is_data: bool) -> None:
    assert is_table_data_file(name) is is_data


def test_the_clips_table_is_never_made_in_a_folder_of_other_files(tmp_path: Path) -> None:
    from pipeline.clips.run import ClipsTable

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    (tmp_path / "idx" / "clips").mkdir()
    (tmp_path / "idx" / "clips" / "c1.mp4").write_bytes(b"a user's clip")
    with pytest.raises(ConfigError, match=r"idx/clips holds files that are not a vindex table's \(c1.mp4\)"):
        ClipsTable(index).ensure()
    assert sorted(p.name for p in (tmp_path / "idx" / "clips").iterdir()) == ["c1.mp4"]


def test_a_marked_index_lists_only_folders_that_are_not_tables_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At each run's start: a marked index's tables are vindex's; their files are not listed again."""
    from pipeline.index import location

    index = Index(str(tmp_path / "idx"))
    claim_index(index.uri, SCHEMAS)
    index.ensure()
    listed: list[str] = []
    real = location.foreign_files
    monkeypatch.setattr(location, "foreign_files", lambda folder, *a: listed.append(folder) or real(folder, *a))
    claim_index(index.uri, [*SCHEMAS, "clips"])
    assert listed == [index.uri + "/clips"]  # the one table folder that is not a table yet
