"""Where a video's bytes come from: each rule of open_media, and the spans it cuts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest

from pipeline.media.opening import MEDIA_KINDS, open_container, open_media
from pipeline.media.spans import REORDER_MARGIN_FRAMES, cut_span
from pipeline.sources.reading import is_utf8
from testkit import synthetic


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of its own for temporary files, to see what is made and that it is deleted."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def gop30(tmp_path: Path) -> Path:
    """360 frames, keyframes every 30, B-frames (x264 veryfast)."""
    path = tmp_path / "gop30.mp4"
    truth = synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    assert truth.num_frames == 360
    return path


@pytest.fixture
def remote(gop30: Path) -> Iterator[str]:
    """The same video as an object in a (process-local) remote filesystem."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/vindex-opening/gop30.mp4", gop30.read_bytes())
    yield "memory://vindex-opening/gop30.mp4"
    fs.rm("/vindex-opening", recursive=True)


def test_a_span_runs_from_keyframe_to_keyframe_around_the_frames_asked(gop30: Path, scratch: Path) -> None:
    # Segment 1 of 150..300 needs frames 125..325, so its span runs from the keyframe at or
    # before 125 - margin to the one at 330.
    with open_media(str(gop30), frames=(125, 325), needs_path=True) as media:
        span = media.span
        assert media.kind == "span" and span is not None and media.path == span.path
        assert span.first == media.first_frame == (125 - REORDER_MARGIN_FRAMES) // 30 * 30 == 90
        assert (span.frames, span.video_frames) == (330 - 90, 360)
        assert span.times[0] == pytest.approx(90 / 25) and span.times[-1] == pytest.approx(329 / 25)
        assert np.all(np.diff(span.times) > 0)
        assert Path(span.path).stat().st_size < gop30.stat().st_size * 0.75
    assert not Path(span.path).exists() and not any(scratch.iterdir())
    # The first segment needs frames up to 175 and a span that starts at 0 and ends at 180.
    with open_media(str(gop30), frames=(0, 175), needs_path=True) as media:
        assert media.span is not None and (media.span.first, media.span.frames) == (0, 180)
    # To the end (the last segment): up to the last frame.
    with open_media(str(gop30), frames=(275, None)) as media:
        assert media.span is not None and (media.span.first, media.span.frames) == (240, 120)


def test_no_span_where_it_would_be_the_whole_video(gop30: Path) -> None:
    with open_media(str(gop30), frames=(0, None), needs_path=True) as media:
        assert (media.kind, media.span, media.path, media.first_frame) == ("local", None, str(gop30), 0)
    with open_container(str(gop30)) as container:
        assert cut_span(container, 10, 350) is None


def test_no_span_where_the_container_does_not_index_every_frame(tmp_path: Path) -> None:
    # Matroska indexes keyframes only (cues).
    source, path = tmp_path / "clip.mp4", tmp_path / "clip.mkv"
    synthetic.write_clip(source, synthetic.simple_spec([60, 60], "cut"), gop=30)
    synthetic.remux(source, path)
    with open_media(str(path), frames=(50, 100), needs_path=True) as media:
        assert (media.kind, media.span) == ("local", None)


def test_a_span_that_cannot_be_cut_falls_back_to_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "random.mp4"
    synthetic.write_random_bytes(path, 20000, seed=1)
    with open_media(str(path), frames=(50, 100), needs_path=True) as media:
        assert (media.kind, media.path) == ("local", str(path))


def test_a_remote_object_is_staged_for_a_path_and_read_in_ranges_otherwise(
    gop30: Path, remote: str, scratch: Path
) -> None:
    with open_media(remote, needs_path=True) as media:
        assert media.kind == "staged" and media.path is not None
        assert Path(media.path).read_bytes() == gop30.read_bytes()
    assert not any(scratch.iterdir())
    with open_media(remote) as media:
        assert media.kind == "ranged" and media.path is None
        assert media.target is media.file and media.file.read(16) == gop30.read_bytes()[:16]
    with open_media(remote, frames=(125, 325), needs_path=True) as media:
        assert media.kind == "span" and media.span is not None and media.span.first == 90
    assert not any(scratch.iterdir())
    assert sorted(MEDIA_KINDS) == ["local", "ranged", "span", "staged"]


def test_a_local_name_that_is_not_utf8_gets_a_link_for_decoders_that_want_one(
    gop30: Path, tmp_path: Path, scratch: Path
) -> None:
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.mp4"
    os.link(gop30, raw)
    uri = "file://" + str(tmp_path) + "/caf%E9.mp4"  # as listing names it
    with open_media(uri) as media:  # PyAV takes the original name
        assert media.kind == "local" and os.fsencode(media.path or "") == raw
    with open_media(uri, needs_path=True) as media:
        assert media.kind == "local" and media.path is not None and is_utf8(media.path)
        assert Path(media.path).read_bytes() == gop30.read_bytes()
        link = media.path
    assert not os.path.lexists(link) and not any(scratch.iterdir())


def test_a_missing_object_is_reported_by_the_whole_file_rule(tmp_path: Path, remote: str) -> None:
    with pytest.raises(FileNotFoundError):
        with open_media("memory://vindex-opening/gone.mp4", frames=(0, 10), needs_path=True):
            pass
    with pytest.raises(FileNotFoundError):
        with open_container(str(tmp_path / "gone.mp4")):
            pass
