"""The index's one table writer (pipeline/index/writer.py): create with the schema, append,
replace by key or predicate with values quoted, delete; each commit retried on conflicts."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.errors import IndexWriteError
from pipeline.index import writer as writer_module
from pipeline.index.writer import TableWriter, new_run_id, sql_in, sql_string

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.int64())])


def _rows(writer: TableWriter) -> list[tuple[str, int]]:
    table = writer.dataset().to_table()
    return sorted(zip(table.column("key").to_pylist(), table.column("value").to_pylist()))


def _table(*rows: tuple[str, int]) -> pa.Table:
    return pa.Table.from_pylist([{"key": k, "value": v} for k, v in rows], schema=SCHEMA)


def test_values_enter_a_predicate_quoted() -> None:
    assert sql_string("plain") == "'plain'"
    assert sql_string("it's") == "'it''s'"
    assert sql_string("') OR (1=1") == "''') OR (1=1'"
    assert sql_in("video_id", ["a", "b'c"]) == "video_id IN ('a', 'b''c')"
    with pytest.raises(TypeError, match="must be a str"):
        sql_string(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("keep_open", [True, False])
def test_create_append_replace_and_delete(tmp_path: Path, keep_open: bool) -> None:
    writer = TableWriter(str(tmp_path / "idx"), "things", SCHEMA, keep_open=keep_open)
    assert not writer.exists()
    assert writer.create() is True
    assert writer.create() is False  # already there: nothing done
    assert pa.schema(writer.table().schema().to_arrow()).names == ["key", "value"]
    writer.append(_table(("a", 1), ("it's", 2), ("o'hara'", 3)))
    writer.append(_table())  # no rows: no commit
    assert writer.table().version() == 1
    # Keys with quotes are replaced exactly: the others stay.
    writer.replace(_table(("it's", 20), ("o'hara'", 30)), "key")
    assert _rows(writer) == [("a", 1), ("it's", 20), ("o'hara'", 30)]
    writer.delete_where(sql_in("key", ["it's"]))
    assert _rows(writer) == [("a", 1), ("o'hara'", 30)]
    # A value written to close the predicate early only ever matches itself.
    writer.replace(_table(("') OR (1=1", 4)), "key")
    assert _rows(writer) == [("') OR (1=1", 4), ("a", 1), ("o'hara'", 30)]
    writer.overwrite(_table(("z", 9)))  # every row replaced, in one commit
    version = writer.table().version()
    assert _rows(writer) == [("z", 9)]
    writer.overwrite(_table())
    assert _rows(writer) == [] and writer.table().version() == version + 1


def test_missing_columns_are_added_as_nullable(tmp_path: Path) -> None:
    TableWriter(str(tmp_path / "idx"), "things", SCHEMA).create()
    wider = SCHEMA.append(pa.field("extra", pa.string()))
    writer = TableWriter(str(tmp_path / "idx"), "things", wider)
    assert writer.add_missing_columns(["value", "extra"]) == ["extra"]
    assert writer.add_missing_columns(["extra"]) == []
    assert pa.schema(writer.table().schema().to_arrow()).names == ["key", "value", "extra"]


def test_a_commit_that_keeps_conflicting_gives_up_naming_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import deltalake
    from deltalake.exceptions import CommitFailedError

    writer = TableWriter(str(tmp_path / "idx"), "things", SCHEMA)
    writer.create()
    calls = []

    def conflicting(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise CommitFailedError("a concurrent transaction wrote first")

    monkeypatch.setattr(writer_module, "COMMIT_BACKOFF_S", 0.0)
    monkeypatch.setattr(deltalake, "write_deltalake", conflicting)
    with pytest.raises(IndexWriteError, match=r"could not commit to 'things' after 8 attempts: other runs keep writing"):
        writer.append(_table(("a", 1)))
    assert len(calls) == writer_module.COMMIT_ATTEMPTS


def test_run_ids_sort_by_time_and_name_their_kind() -> None:
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", new_run_id())
    assert re.fullmatch(r"clips-\d{8}T\d{6}Z-[0-9a-f]{6}", new_run_id("clips"))
    assert new_run_id() != new_run_id()
