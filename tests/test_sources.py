from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from pipeline.config import SourceConfig
from pipeline.errors import ConfigError
from pipeline.sources.listing import VIDEO_NAMESPACE, list_videos, normalise_uri, video_id_for
from pipeline.sources.reading import is_utf8, local_path, open_input, protocol_of, with_retries


def test_lists_videos_recursively_with_identity(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.mp4").write_bytes(b"x" * 10)
    (tmp_path / "two.MOV").write_bytes(b"y" * 3)
    (tmp_path / "notes.txt").write_text("not a video")
    videos = list_videos(str(tmp_path), SourceConfig())
    assert [v.uri for v in videos] == [f"file://{tmp_path}/a/one.mp4", f"file://{tmp_path}/two.MOV"]
    assert [v.size_bytes for v in videos] == [10, 3]
    assert all(v.mtime is not None and v.mtime.tzinfo is not None for v in videos)


def test_glob_and_extension_filter(tmp_path: Path) -> None:
    for name in ("x.mp4", "y.mp4", "z.webm"):
        (tmp_path / name).write_bytes(b"0")
    assert [Path(v.uri).name for v in list_videos(f"{tmp_path}/*.mp4", SourceConfig())] == ["x.mp4", "y.mp4"]
    webm_only = SourceConfig(extensions=(".webm",))
    assert [Path(v.uri).name for v in list_videos(str(tmp_path), webm_only)] == ["z.webm"]


def test_single_file_source(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").write_bytes(b"0")
    assert len(list_videos(str(tmp_path / "x.mp4"), SourceConfig())) == 1


def test_memory_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/corpus-src/clip.mp4", b"abc")
    fs.pipe("/corpus-src/sub/clip2.mkv", b"abcd")
    try:
        videos = list_videos("memory://corpus-src", SourceConfig())
        assert [v.uri for v in videos] == ["memory:///corpus-src/clip.mp4", "memory:///corpus-src/sub/clip2.mkv"]
        assert [v.size_bytes for v in videos] == [3, 4]
    finally:
        fs.rm("/corpus-src", recursive=True)


def test_missing_source_fails_fast(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        list_videos(str(tmp_path / "nope"), SourceConfig())


def test_video_id_is_deterministic_over_spellings(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    spellings = [str(path), f"file://{path}", f"{tmp_path}//v.mp4"]
    assert {normalise_uri(s) for s in spellings} == {f"file://{path}"}
    expected = str(uuid.uuid5(VIDEO_NAMESPACE, f"file://{path}"))
    assert {video_id_for(s) for s in spellings} == {expected}


def test_transient_errors_are_retried_then_given_up() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "data"

    assert with_retries(flaky, "s3://b/k", backoff_s=0.001) == "data" and len(calls) == 3

    def always_down() -> str:
        calls.append(1)
        raise TimeoutError("read timed out")

    calls.clear()
    with pytest.raises(TimeoutError):
        with_retries(always_down, "s3://b/k", attempts=3, backoff_s=0.001)
    assert len(calls) == 3


def test_missing_or_forbidden_objects_are_not_retried() -> None:
    for error in (FileNotFoundError("gone"), PermissionError("403 Forbidden")):
        calls: list[int] = []

        def read(error: Exception = error) -> None:
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            with_retries(read, "s3://b/k", backoff_s=0.001)
        assert len(calls) == 1


def test_protocol_of_names_the_filesystem() -> None:
    assert [protocol_of(u) for u in ("/tmp/a.mp4", "file:///tmp/a.mp4", "memory://x/a.mp4", "s3://b/a.mp4")] == [
        "file", "file", "memory", "s3"
    ]


#: Names that must index like any other, with the ids they had before odd names were handled.
ODD_NAMES = ["with space.mp4", "a#b.mp4", "a?b.mp4", "100%.mp4", "café.mp4"]


def test_odd_names_keep_their_ids_and_read_back(tmp_path: Path) -> None:
    for i, name in enumerate(ODD_NAMES):
        (tmp_path / name).write_bytes(bytes([i]) * 5)
    videos = list_videos(str(tmp_path), SourceConfig())
    assert sorted(Path(v.uri).name for v in videos) == sorted(ODD_NAMES)
    for video in videos:
        # Unchanged: uuid5 of the plain file:// URI, as before.
        assert video.video_id == str(uuid.uuid5(VIDEO_NAMESPACE, video.uri))
        with open_input(video.uri) as f:
            assert f.read() == bytes([ODD_NAMES.index(Path(video.uri).name)]) * 5
        assert local_path(video.uri) == str(tmp_path / Path(video.uri).name)


def test_a_name_that_is_not_utf8_gets_a_valid_reversible_uri(tmp_path: Path) -> None:
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9 100%.mp4"
    with open(raw, "wb") as f:
        f.write(b"bytes")
    (tmp_path / "plain.mp4").write_bytes(b"p")
    videos = list_videos(str(tmp_path), SourceConfig())
    uris = [v.uri for v in videos]
    assert f"file://{tmp_path}/caf%E9 100%25.mp4" in uris
    pa.array(uris)  # valid UTF-8: Arrow and Parquet take it
    odd = next(v for v in videos if "caf" in v.uri)
    assert uuid.UUID(odd.video_id).version == 5
    assert os.fsencode(local_path(odd.uri) or "") == raw
    with open_input(odd.uri) as f:
        assert f.read() == b"bytes"
    assert not is_utf8(local_path(odd.uri) or "") and is_utf8(local_path(uris[-1]) or "")
    # Listing again gives the same URI: the id is stable.
    assert [v.uri for v in list_videos(str(tmp_path), SourceConfig())] == uris


def test_odd_keys_in_object_storage() -> None:
    fs = fsspec.filesystem("memory")
    for name in ODD_NAMES:
        fs.pipe(f"/odd-keys/{name}", name.encode())
    try:
        videos = list_videos("memory://odd-keys", SourceConfig())
        assert sorted(v.uri for v in videos) == sorted(f"memory:///odd-keys/{n}" for n in ODD_NAMES)
        for video in videos:
            with open_input(video.uri) as f:
                assert f.read().decode() == video.uri.rsplit("/", 1)[1]
    finally:
        fs.rm("/odd-keys", recursive=True)
