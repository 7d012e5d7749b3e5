"""Rows spilled to disk past a memory bound, read back as they were written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from pipeline.errors import ConfigError, IndexError_, SpillReadError, SpillWriteError
from pipeline.sources.spill import Spill

SCHEMA = pa.schema([("n", pa.int64()), ("name", pa.string())])


def _rows(start: int, stop: int) -> pa.Table:
    return pa.table({"n": list(range(start, stop)), "name": [f"v{i}" for i in range(start, stop)]}, schema=SCHEMA)


def test_a_small_spill_stays_in_memory(tmp_path: Path) -> None:
    spill = Spill(SCHEMA, str(tmp_path), "small", memory_rows=10)
    spill.append(_rows(0, 4))
    spill.append(_rows(4, 10))
    spill.close()
    assert not spill.on_disk and list(tmp_path.iterdir()) == []
    assert spill.num_rows == 10
    assert [b.num_rows for b in spill.batches(4)] == [4, 4, 2]  # batches joined and cut to size
    assert [r["n"] for r in spill.to_pylist()] == list(range(10))


def test_past_its_bound_a_spill_moves_to_disk_and_reads_back_in_order(tmp_path: Path) -> None:
    spill = Spill(SCHEMA, str(tmp_path), "large", memory_rows=10)
    for start in range(0, 95, 5):
        spill.append(_rows(start, start + 5).to_batches()[0])
    spill.close()
    assert spill.on_disk and spill.path == str(tmp_path / "large.arrows") and Path(spill.path).exists()
    assert spill.num_rows == 95
    assert pa.Table.from_batches(list(spill.batches(7))).equals(_rows(0, 95))
    assert [b.num_rows for b in spill.batches(40)] == [40, 40, 15]
    assert spill.table().equals(_rows(0, 95))
    with pytest.raises(RuntimeError, match="closed"):
        spill.append(_rows(95, 96))


def test_without_a_folder_a_spill_never_touches_the_disk() -> None:
    spill = Spill(SCHEMA, None, "held", memory_rows=1)
    spill.append(_rows(0, 50))
    assert not spill.close().on_disk
    assert spill.table().equals(_rows(0, 50))


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free space there, or point TMPDIR at a folder on a larger disk"),
        (errno.EDQUOT, "free space there, or point TMPDIR at a folder on a larger disk"),
        (errno.EROFS, "point TMPDIR at a folder this user can write to"),
        (errno.EACCES, "point TMPDIR at a folder this user can write to"),
    ],
)
def test_a_spill_that_cannot_write_its_file_names_the_folder_and_the_fix(
    code: int, fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(ipc, "new_file", refused)
    spill = Spill(SCHEMA, str(tmp_path), "listed", memory_rows=1)
    spill.append(_rows(0, 1))  # within its bound: nothing written yet

    with pytest.raises(SpillWriteError) as caught:
        spill.append(_rows(1, 2))

    message = str(caught.value)
    assert repr(str(tmp_path)) in message and "'listed.arrows'" in message
    assert os.strerror(code) in message and fix in message
    assert isinstance(caught.value, ConfigError) and caught.value.__cause__ is not None


@pytest.mark.parametrize("damage", ["removed", "cut short"])
def test_a_spill_file_that_cannot_be_read_back_names_the_file_and_is_not_an_os_error(damage: str, tmp_path: Path) -> None:
    spill = Spill(SCHEMA, str(tmp_path), "listed", memory_rows=1)
    spill.append(_rows(0, 50))
    spill.close()
    assert spill.path is not None
    if damage == "removed":  # a temporary-folder cleaner took it while the run held it
        os.remove(spill.path)
    else:
        with open(spill.path, "r+b") as file:
            file.truncate(os.path.getsize(spill.path) // 2)

    with pytest.raises(SpillReadError) as caught:
        spill.table()

    message = str(caught.value)
    assert repr(spill.path) in message and "could not be read back" in message and "TMPDIR" in message
    # A configuration error of the machine's, not an OSError a caller would take for the index's.
    assert isinstance(caught.value, ConfigError) and not isinstance(caught.value, (OSError, IndexError_))
    assert caught.value.__cause__ is not None


def test_a_spill_file_cut_short_is_closed_when_it_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is not what was written fails to open as Arrow; its handle is closed all the same."""
    opened: list[pa.OSFile] = []
    real_os_file = pa.OSFile
    monkeypatch.setattr(pa, "OSFile", lambda *args: opened.append(real_os_file(*args)) or opened[-1])
    spill = Spill(SCHEMA, str(tmp_path), "listed", memory_rows=1)
    spill.append(_rows(0, 50))
    spill.close()
    assert spill.path is not None
    with open(spill.path, "r+b") as file:
        file.truncate(os.path.getsize(spill.path) // 2)

    with pytest.raises(SpillReadError):
        spill.table()

    assert opened and all(f.closed for f in opened)
