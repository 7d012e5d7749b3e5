"""The one writer of an index's Delta tables: a table created where missing with its schema,
rows appended, rows replaced or deleted by a predicate; each commit one Delta transaction,
retried while other writers' commits conflict with it. The run tables
(:mod:`pipeline.index.store`) and the ``clips`` table (:mod:`pipeline.clips.run`) are both
written through it.

Predicates are SQL text (what deltalake takes); values enter them only through
:func:`sql_string`, which quotes and escapes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.errors import IndexError_, IndexWriteError
from pipeline.index.schemas import table_uri
from pipeline.index.snapshot import delta_dataset

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Attempts at a commit that conflicts with another run's, with exponential backoff.
COMMIT_ATTEMPTS = 8
COMMIT_BACKOFF_S = 0.2

#: Test seam: ``TABLE[:N]`` makes the process exit abruptly (``os._exit``, no clean-up) right
#: after its N-th commit (default 1st) to TABLE, to test that a kill at any point between
#: commits leaves the index consistent. ``TABLE`` may also be ``orphans:TABLE`` (after
#: collecting a table's orphans).
EXIT_AFTER_COMMIT_ENV = "VINDEX_TEST_EXIT_AFTER_COMMIT"
#: Exit status of a process stopped by that seam.
TEST_EXIT_STATUS = 86


def new_run_id(kind: str = "") -> str:
    """A sortable id for a run that writes rows: UTC time plus a random suffix, after
    ``kind-`` where one is given (``clips-20261206T230500Z-1a2b3c``)."""
    now = dt.datetime.now(dt.timezone.utc)
    return (f"{kind}-" if kind else "") + now.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal: single-quoted, its quotes doubled."""
    if not isinstance(value, str):
        raise TypeError(f"a predicate value must be a str, got {type(value).__name__}")
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    """``column IN ('a', 'b')`` with every value quoted by :func:`sql_string`."""
    return f"{column} IN (" + ", ".join(sql_string(v) for v in values) + ")"


def retry_on_conflict(action: Callable[[], T], exhausted: Callable[[BaseException], Exception], what: str) -> T:
    """``action()``, run again with exponential backoff and jitter while its Delta commit fails
    the conflict check because another writer committed first; ``exhausted(last error)`` is
    raised after :data:`COMMIT_ATTEMPTS` attempts."""
    from deltalake.exceptions import CommitFailedError

    from pipeline.retry import retry

    def note(exc: BaseException, retry_number: int, delay_s: float) -> None:
        log.info("%s conflicted with another writer's commit; retrying in %.1f s", what, delay_s)

    try:
        return retry(
            action,
            attempts=COMMIT_ATTEMPTS,
            backoff_s=COMMIT_BACKOFF_S,
            retryable=lambda exc: isinstance(exc, CommitFailedError),
            on_retry=note,
        )
    except CommitFailedError as exc:
        raise exhausted(exc) from exc


class TableWriter:
    """Table ``name`` of the index at ``index_uri``, written.

    With ``keep_open`` the writer keeps the table object and brings it up to date before each
    use by reading only the log entries committed since (a fresh load replays the log from the
    last checkpoint: 26 ms of a 0.35 s commit, five times a commit, at 2,000 videos); a table
    that another thread writes too (the run heartbeat's ``runs``) is opened afresh each time.
    """

    def __init__(
        self,
        index_uri: str,
        name: str,
        schema: pa.Schema,
        storage_options: dict[str, str] | None = None,
        *,
        keep_open: bool = True,
    ) -> None:
        self.index_uri = index_uri
        self.name = name
        self.schema = schema
        self.storage_options = storage_options
        self.keep_open = keep_open
        self._open: Any = None

    @property
    def uri(self) -> str:
        return table_uri(self.index_uri, self.name)

    def exists(self) -> bool:
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options))

    def create(self) -> bool:
        """Create the table, empty, with its schema where there is none; whether it did.

        Writers starting on a new index at once (shards) race to create each table: the one
        whose first commit lands second fails, and the table is there, which is what it wanted.
        """
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError

        try:
            if self.exists():
                return False
            try:
                DeltaTable.create(self.uri, schema=self.schema, mode="ignore", storage_options=self.storage_options)
            except DeltaError:
                if not self.exists():
                    raise
                log.info("table %s: created by another writer at the same moment", self.name)
                return False
            return True
        except (OSError, DeltaError) as exc:
            raise IndexError_(f"cannot create table {self.name!r} in index {self.index_uri}: {exc}") from exc

    def add_missing_columns(self, columns: Iterable[str]) -> list[str]:
        """Add ``columns`` (of :attr:`schema`) that the table lacks, as nullable; which were added."""
        from deltalake.schema import Field

        table = self.table()
        have = set(pa.schema(table.schema().to_arrow()).names)
        missing = [c for c in columns if c not in have]
        if missing:
            table.alter.add_columns([Field.from_arrow(self.schema.field(c)) for c in missing])
            log.info("table %s: added columns %s", self.name, ", ".join(missing))
        return missing

    def table(self) -> Any:
        """The ``DeltaTable`` at its latest version."""
        from deltalake import DeltaTable

        if not self.keep_open:
            return DeltaTable(self.uri, storage_options=self.storage_options)
        if self._open is None:
            self._open = DeltaTable(self.uri, storage_options=self.storage_options)
        else:
            self._open.update_incremental()
        return self._open

    def dataset(self) -> pads.Dataset:
        """Every row at the latest version, as the writer sees it."""
        return delta_dataset(self.table(), self.storage_options)

    def append(self, table: pa.Table) -> None:
        """Add ``table``'s rows (nothing is committed for none)."""
        from deltalake import write_deltalake

        if table.num_rows:
            self._transact("write to", lambda: write_deltalake(self._target(), table, mode="append", **self._options()))

    def replace_where(self, table: pa.Table, predicate: str) -> None:
        """One transaction: delete the rows matching ``predicate``, add ``table``'s."""
        from deltalake import write_deltalake

        self._transact(
            "write to",
            lambda: write_deltalake(self._target(), table, mode="overwrite", predicate=predicate, **self._options()),
        )

    def overwrite(self, table: pa.Table) -> None:
        """Every row of the table replaced by ``table``'s, in one transaction (a table derived
        whole from the others, as the duplicate groups)."""
        from deltalake import write_deltalake

        self._transact("write to", lambda: write_deltalake(self._target(), table, mode="overwrite", **self._options()))

    def replace(self, table: pa.Table, key: str) -> None:
        """Rows of ``table`` instead of the table's rows with the same ``key`` values (one
        transaction; nothing is committed for no rows)."""
        if table.num_rows:
            self.replace_where(table, sql_in(key, table.column(key).to_pylist()))

    def swap(self, table: pa.Table, key: str, columns: list[str]) -> pa.Table:
        """:meth:`replace`, returning ``columns`` of the rows it replaced.

        They are read from the very version the commit is made on: a commit whose keys
        another writer's commit touched since that version fails Delta's conflict check, and
        is retried on a fresh read. So no row is replaced unseen, however close two writers of
        the same keys come.
        """
        from deltalake import write_deltalake

        keys = table.column(key)
        predicate = sql_in(key, keys.to_pylist())

        def read_then_write() -> pa.Table:
            base = self.table()  # one version for both the read and the write
            replaced = delta_dataset(base, self.storage_options).to_table(columns=columns, filter=pc.field(key).isin(keys))
            write_deltalake(base, table, mode="overwrite", predicate=predicate)
            return replaced

        if not table.num_rows:
            return self.schema.empty_table().select(columns)
        return self._transact("write to", read_then_write)

    def delete_where(self, predicate: str) -> None:
        """Delete the rows matching ``predicate``: an overwrite that adds nothing. (deltalake's
        own ``delete()`` rewrites string columns as string_view, which pyarrow cannot filter.)"""
        self.replace_where(self.schema.empty_table(), predicate)

    def _target(self) -> Any:
        # deltalake takes storage options with a URI only; a table object has its own.
        return self.table() if self.keep_open else self.uri

    def _options(self) -> dict[str, Any]:
        return {} if self.keep_open else {"storage_options": self.storage_options}

    def _transact(self, what: str, action: Callable[[], T]) -> T:
        """Run one Delta transaction, retried while other writers' commits conflict with it.
        Storage failures (disk full, read-only, denied) raise IndexWriteError."""
        from deltalake.exceptions import DeltaError

        def exhausted(exc: BaseException) -> IndexWriteError:
            return IndexWriteError(
                f"could not commit to {self.name!r} after {COMMIT_ATTEMPTS} attempts: other runs keep "
                f"writing to {self.index_uri} ({first_line(exc)}); run again when they finish"
            )

        try:
            result = retry_on_conflict(action, exhausted, f"commit to {self.name}")
        except (DeltaError, OSError) as exc:
            raise IndexWriteError(f"cannot {what} table {self.name!r} of {self.index_uri}: {first_line(exc)}") from exc
        after_commit(self.name)
        return result


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def after_commit(table: str) -> None:
    """The test seam of :data:`EXIT_AFTER_COMMIT_ENV`: exit abruptly after the chosen commit."""
    wanted = os.environ.get(EXIT_AFTER_COMMIT_ENV)
    if not wanted:
        return
    target, _, nth = wanted.rpartition(":") if wanted.rpartition(":")[2].isdigit() else (wanted, "", "1")
    if target != table:
        return
    _COMMITS_SEEN[table] = _COMMITS_SEEN.get(table, 0) + 1
    if _COMMITS_SEEN[table] == int(nth):
        logging.shutdown()
        os._exit(TEST_EXIT_STATUS)


_COMMITS_SEEN: dict[str, int] = {}


__all__ = [
    "COMMIT_ATTEMPTS",
    "COMMIT_BACKOFF_S",
    "EXIT_AFTER_COMMIT_ENV",
    "TEST_EXIT_STATUS",
    "TableWriter",
    "after_commit",
    "first_line",
    "new_run_id",
    "retry_on_conflict",
    "sql_in",
    "sql_string",
]
