"""A run's work folder (its listing and plan, spilled there) is gone on every way out of the
run, without Ray: an index refused, an error while indexing, a finished run; a full disk
under it is reported as its own fault, not the index's."""

from __future__ import annotations

import errno
import os
import tempfile
import traceback
from pathlib import Path

import pyarrow.ipc as ipc
import pytest

from pipeline.cli import EXIT_USAGE, main
from pipeline.config import Config
from pipeline.errors import ConfigError, SpillReadError, SpillWriteError
from pipeline.execution import runner
from pipeline.execution.runner import run_index
from pipeline.index.store import Index
from pipeline.sources import spill


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


class FullDisk:
    """An Arrow IPC file writer on a disk with no room left: every write fails with ENOSPC."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def write_table(self, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    write_batch = write_table

    def close(self) -> None:
        pass


def spill_to_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spill of the run goes to a file, however few its rows."""
    monkeypatch.setattr(spill, "MEMORY_ROWS", 0)


def spilling_one_video(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A private temporary folder and a one-video source, every spill of the run on disk:
    (the temporary folder, the source)."""
    temp = private_temp(tmp_path, monkeypatch)
    source = one_video_source(tmp_path)
    spill_to_disk(monkeypatch)
    return temp, source


def fill_the_disk_when_planning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing is spilled; then the temporary folder's disk is full while the plan is made."""
    real_plan_run = runner.plan_run

    def plan_run(*args: object, **kwargs: object) -> object:
        monkeypatch.setattr(ipc, "new_file", FullDisk)
        return real_plan_run(*args, **kwargs)

    monkeypatch.setattr(runner, "plan_run", plan_run)


def test_a_full_disk_while_planning_is_blamed_on_the_temporary_folder_not_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, source = spilling_one_video(tmp_path, monkeypatch)
    fill_the_disk_when_planning(monkeypatch)

    with pytest.raises(SpillWriteError) as caught:
        run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)

    message = str(caught.value)
    assert isinstance(caught.value, ConfigError) and "not usable" not in message
    assert f"'{temp}{os.sep}vindex-run-" in message  # the folder, by name
    assert "No space left on device" in message and "TMPDIR" in message and "free space" in message
    assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
    assert work_folders(temp) == []


def test_a_full_disk_while_spilling_the_listing_is_a_spill_write_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, source = spilling_one_video(tmp_path, monkeypatch)
    monkeypatch.setattr(ipc, "new_file", FullDisk)

    with pytest.raises(SpillWriteError, match=r"vindex-run-.*No space left on device.*TMPDIR") as caught:
        run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)

    assert "listed.arrows" in str(caught.value) and work_folders(temp) == []


def test_a_listing_removed_from_the_temporary_folder_while_planning_is_not_blamed_on_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp, source = spilling_one_video(tmp_path, monkeypatch)
    real_plan_run = runner.plan_run

    def plan_run(listed: spill.Spill, *args: object, **kwargs: object) -> object:
        assert listed.path is not None
        os.remove(listed.path)  # a temporary-folder cleaner, between the listing and the plan
        return real_plan_run(listed, *args, **kwargs)

    monkeypatch.setattr(runner, "plan_run", plan_run)
    with pytest.raises(SpillReadError) as caught:
        run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)

    message = str(caught.value)
    assert "not usable" not in message and "listed.arrows" in message and "could not be read back" in message
    assert work_folders(temp) == []


def test_the_command_line_reports_a_full_temporary_folder_as_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, source = spilling_one_video(tmp_path, monkeypatch)
    fill_the_disk_when_planning(monkeypatch)

    status = main(["run", str(source), "--index", str(tmp_path / "idx"), "--quiet"])

    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "vindex: configuration error: the run's temporary folder" in err and "TMPDIR" in err
    assert "not usable" not in err


def test_a_work_folder_that_cannot_be_made_is_a_spill_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = private_temp(tmp_path, monkeypatch)
    source = one_video_source(tmp_path)

    def full(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", full)
    with pytest.raises(SpillWriteError) as caught:
        run_index(str(source), str(tmp_path / "idx"), Config(), show_progress=False)

    message = str(caught.value)
    assert f"{str(temp)!r}" in message and "'vindex-run-*'" in message
    assert "No space left on device" in message and "free space there" in message
    assert not (tmp_path / "idx").exists()  # nothing was done to the index
