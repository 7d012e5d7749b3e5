"""Rows of one Arrow schema, written a batch at a time and read back in order, in bounded memory.

A run's listing and the plan made from it (what to index, what was deleted) grow with the
corpus; held as Python objects they cost about 450 bytes a video (45 GB at 100 million). A
:class:`Spill` holds its first rows in memory and, past :data:`MEMORY_ROWS`, moves them and
every later row to a file in the run's temporary folder: a small run never touches the disk,
a large one holds one batch at a time.

The file is Arrow IPC, LZ4-compressed, read back a record batch at a time: reading a million
listing rows back held 23 MB more, where the same rows as Parquet (46 MB against 52 on disk)
held 80-140 MB more, whatever the reader's options.

A write to the temporary folder that fails (disk full, over quota, read-only, access denied)
raises :class:`~pipeline.errors.SpillWriteError`, which names the folder and the fix: the
failure is the machine's, not the index's (:func:`spill_writes`). A spill file that cannot be
read back (removed or damaged while the run held it) raises
:class:`~pipeline.errors.SpillReadError` for the same reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from pipeline.errors import SpillReadError, SpillWriteError

#: Rows a spill holds in memory before it moves to disk (about 10 MB of listing rows).
MEMORY_ROWS = 50_000
#: Rows per record batch of a spill on disk, and per batch read back by default.
ROW_GROUP_ROWS = 65_536
#: Compression of a spill on disk.
COMPRESSION = "lz4"


class Spill:
    """Rows of ``schema``, appended in batches: in memory up to ``memory_rows``, then in
    ``folder``/``name``.arrows (never on disk when ``folder`` is None)."""

    def __init__(self, schema: pa.Schema, folder: str | None, name: str, memory_rows: int | None = None) -> None:
        self.schema = schema
        self.num_rows = 0
        self.path: str | None = None
        self._folder = folder
        self._name = name
        #: Rows held in memory at most (:data:`MEMORY_ROWS` unless told).
        self.memory_rows = MEMORY_ROWS if memory_rows is None else memory_rows
        self._held: list[pa.RecordBatch] = []
        self._held_rows = 0
        self._sink: pa.NativeFile | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._closed = False

    def append(self, rows: pa.RecordBatch | pa.Table) -> None:
        """Add ``rows`` (of this spill's schema) after those appended before."""
        if self._closed:
            raise RuntimeError(f"spill {self._name!r} is closed")
        if not rows.num_rows:
            return
        batches = rows.to_batches() if isinstance(rows, pa.Table) else [rows]
        self._held.extend(b.cast(self.schema) if b.schema != self.schema else b for b in batches)
        self._held_rows += rows.num_rows
        self.num_rows += rows.num_rows
        if self._writer is None and self._held_rows > self.memory_rows and self._folder is not None:
            self.path = os.path.join(self._folder, self._name + ".arrows")
            with spill_writes(self.path):
                self._sink = pa.OSFile(self.path, "wb")
                options = ipc.IpcWriteOptions(compression=COMPRESSION)
                self._writer = ipc.new_file(self._sink, self.schema, options=options)
        if self._writer is not None and self._held_rows >= ROW_GROUP_ROWS:
            self._write()

    def close(self) -> Spill:
        """No more rows: what is still held goes to the file (when there is one)."""
        if not self._closed:
            self._closed = True
            if self._writer is not None and self._sink is not None:
                self._write()
                with spill_writes(self.path or self._name):
                    self._writer.close()
                    self._sink.close()
        return self

    def _write(self) -> None:
        if self._writer is not None and self._held:
            with spill_writes(self.path or self._name):
                self._writer.write_table(pa.Table.from_batches(self._held, self.schema), max_chunksize=ROW_GROUP_ROWS)
        self._held, self._held_rows = [], 0

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def batches(self, rows: int = ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
        """The rows in the order appended, in batches of ``rows`` (the last: what is left)."""
        self.close()
        yield from rebatched(self._stored(), rows, self.schema)

    def _stored(self) -> Iterator[pa.RecordBatch]:
        if self.path is None:
            yield from self._held
            return
        with spill_reads(self.path):
            source = pa.OSFile(self.path)
        with source:  # closed even where the file is not what was written
            with spill_reads(self.path):
                reader = ipc.open_file(source)
            for index in range(reader.num_record_batches):
                with spill_reads(self.path):
                    batch = reader.get_batch(index)
                yield batch  # outside: the caller's errors are not the file's

    def table(self) -> pa.Table:
        """Every row as one table (for spills known to be small)."""
        self.close()
        return pa.Table.from_batches(list(self._stored()), self.schema)

    def to_pylist(self) -> list[dict[str, Any]]:
        """Every row as a dict (for small spills: tests, and callers that want a list)."""
        return [row for batch in self.batches() for row in batch.to_pylist()]


def work_folder(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A new folder for a run's spills in the system's temporary folder (``TMPDIR``), removed
    when its ``with`` block ends; one that cannot be made raises
    :class:`~pipeline.errors.SpillWriteError`, as a write into it would."""
    try:
        return tempfile.TemporaryDirectory(prefix=prefix)
    except OSError as exc:  # tempfile.tempdir: the folder it chose (None if none would do)
        folder = tempfile.tempdir or os.environ.get("TMPDIR") or "."
        raise SpillWriteError(spill_write_message(os.path.join(folder, prefix + "*"), exc)) from exc


#: Errors of a temporary folder that lacks room rather than rights.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def spill_writes(path: str) -> Iterator[None]:
    """Writes to the run's temporary file ``path``: an :class:`OSError` they raise becomes a
    :class:`~pipeline.errors.SpillWriteError` that names the folder and what to do."""
    try:
        yield
    except OSError as exc:
        raise SpillWriteError(spill_write_message(path, exc)) from exc


@contextlib.contextmanager
def spill_reads(path: str) -> Iterator[None]:
    """Reads of the run's temporary file ``path``: a file that is gone, unreadable (OSError) or
    not what was written (ArrowInvalid: cut short, overwritten) is the temporary folder's
    failure, not the index's: :class:`~pipeline.errors.SpillReadError`, naming the file."""
    try:
        yield
    except (OSError, pa.ArrowInvalid) as exc:
        raise SpillReadError(spill_read_message(path, exc)) from exc


def spill_read_message(path: str, exc: Exception) -> str:
    """Why the run's temporary file ``path`` could not be read back, and the fix."""
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc).splitlines()[0][:200]
    return (
        f"the run's temporary file {path!r} could not be read back ({reason}): something removed or changed it "
        "while the run held it, or the disk failed; nothing in the index is at fault. Run again, and point TMPDIR "
        "at a folder that nothing else cleans while a run is going"
    )


def spill_write_message(path: str, exc: OSError) -> str:
    """Why ``path`` could not be written, where, and the fix: free space, or another ``TMPDIR``."""
    folder = os.path.dirname(path) or "."
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno in _NO_ROOM:
        fix = "free space there, or point TMPDIR at a folder on a larger disk"
    else:
        fix = "point TMPDIR at a folder this user can write to, on a disk with room for the run's listing"
    return (
        f"the run's temporary folder {folder!r} cannot take its listing or plan "
        f"({reason}, writing {os.path.basename(path)!r}): {fix} (the index is not at fault)"
    )


def rebatched(batches: Iterator[pa.RecordBatch], rows: int, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``batches`` cut or joined into batches of ``rows`` rows (the last: what is left)."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(held, schema).combine_chunks()
            yield table.slice(0, rows).to_batches()[0]
            rest = table.slice(rows)
            held, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(held, schema).combine_chunks().to_batches()[0]


__all__ = ["MEMORY_ROWS", "ROW_GROUP_ROWS", "Spill", "rebatched", "spill_write_message", "spill_writes", "work_folder"]
