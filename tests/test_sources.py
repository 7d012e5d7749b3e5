from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from pipeline.config import SourceConfig
from pipeline.errors import ConfigError
from pipeline.sources import VIDEO_NAMESPACE, list_videos, normalise_uri, video_id_for


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
    from pipeline.sources import with_retries

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
    from pipeline.sources import with_retries

    for error in (FileNotFoundError("gone"), PermissionError("403 Forbidden")):
        calls: list[int] = []

        def read(error: Exception = error) -> None:
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            with_retries(read, "s3://b/k", backoff_s=0.001)
        assert len(calls) == 1

