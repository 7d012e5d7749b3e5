"""A run's work folder (its listing and plan, spilled there) is gone on every way out of the
run, without Ray: an index refused, an error while indexing, a finished run."""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.execution import runner
from pipeline.execution.runner import run_index
from pipeline.index.store import Index


def private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary folder of the test's own, where the run makes its work folder."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def one_video_source(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.mp4").write_bytes(b"x")
    return source


def work_folders(temp: Path) -> list[str]:
    return sorted(p.name for p in temp.glob("vindex-run-*"))


def frames(error: BaseException) -> list[str]:
    """The functions the error's traceback (still held, as a caller that reports it holds it) passes through."""
    return [frame.name for frame in traceback.extract_tb(error.__traceback__)]


def test_a_run_refused_an_unusable_index_leaves_no_work_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error reaches the caller with the folder already gone, even while the caller holds
    the error (and with it the run's frames)."""
    temp = private_temp(tmp_path, monkeypatch)
    source = one_video_source(tmp_path)
    index_path = tmp_path / "idx"
    index_path.write_text("a file where the index should be")
    during: list[list[str]] = []
    real_claim = runner.claim_index
    monkeypatch.setattr(runner, "claim_index", lambda *a, **k: during.append(work_folders(temp)) or real_claim(*a, **k))

    with pytest.raises(ConfigError, match=r"index '.*idx' is not usable") as caught:
        run_index(str(source), str(index_path), Config(), show_progress=False)

    assert [len(names) for names in during] == [1]  # the listing was spilled there before the index was opened
    assert work_folders(temp) == [] and "run_index" in frames(caught.value)


def test_a_run_that_fails_while_indexing_leaves_no_work_folder_and_records_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = private_temp(tmp_path, monkeypatch)
    source = one_video_source(tmp_path)
    during: list[list[str]] = []

    def failing(rows: list[dict[str, object]], *rest: object) -> None:
        during.append(work_folders(temp))
        raise RuntimeError("a worker blew up")

    monkeypatch.setattr(runner, "_process", failing)
    with pytest.raises(RuntimeError, match="a worker blew up") as caught:
        run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)

    assert [len(names) for names in during] == [1]
    assert work_folders(temp) == [] and "run_index" in frames(caught.value)
    (run,) = Index(str(tmp_path / "idx")).read("runs").to_pylist()
    assert run["status"] == "failed"


def test_a_finished_run_leaves_no_work_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = private_temp(tmp_path, monkeypatch)
    source = one_video_source(tmp_path)
    during: list[list[str]] = []
    monkeypatch.setattr(runner, "_process", lambda rows, *rest: during.append(work_folders(temp)))

    summary = run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)

    assert [len(names) for names in during] == [1] and summary.counts["new"] == 1
    assert work_folders(temp) == []
