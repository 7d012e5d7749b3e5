"""Whose files are these: an index location is vindex's only where vindex made it.

A user's ``vindex run videos --index .`` must never put a table inside ``videos/``, and no
compaction may then delete ``videos/holiday.mp4``. So:

* :func:`claim_index` runs before a run creates any table. It refuses an index that lies
  inside the source or holds it (a run would list its own tables, or a compaction could
  reach the videos), and a table folder that exists but holds files a Delta table does not
  write. It then writes the marker file :data:`MARKER` at the index's root.
* :func:`check_table_folder` is the per-table half of that check (also used by tables made
  later, such as ``clips``).
* :func:`is_table_data_file` names the only files compaction may delete: the data files
  Delta Lake writers name ``part-NNNNN-<uuid>-cNNN[.codec].parquet`` at a table's root.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import re
from collections.abc import Iterable
from typing import Any

from pipeline.errors import ConfigError, IndexError_
from pipeline.sources.reading import is_local

log = logging.getLogger(__name__)

#: The file at an index's root that says vindex made this location an index.
MARKER = "_vindex_index.json"
#: What the marker says of itself.
MARKER_FORMAT = "vindex-index"
#: A Delta table's transaction log folder; every file under it belongs to the table.
DELTA_LOG = "_delta_log"
#: Data files as Delta Lake writers name them (delta-rs, Spark): part-00000-<uuid>-c000.snappy.parquet.
_DATA_FILE = re.compile(
    r"part-\d{5}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-c\d{3}(\.[a-z0-9]+)?\.parquet"
)
#: Deletion vectors a Delta writer may add beside the data files.
_DELETION_VECTOR = re.compile(r"deletion_vector_[0-9a-f-]+\.bin")
#: Foreign files named in a refusal, at most.
_SHOWN = 3


def is_table_data_file(relative: str) -> bool:
    """Whether ``relative`` (a path inside a table folder) is a data file a Delta writer made."""
    return "/" not in relative and _DATA_FILE.fullmatch(relative) is not None


def _is_table_file(relative: str) -> bool:
    if relative == DELTA_LOG or relative.startswith(DELTA_LOG + "/"):
        return True
    return is_table_data_file(relative) or ("/" not in relative and _DELETION_VECTOR.fullmatch(relative) is not None)


def _fs(uri: str, fs_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **(fs_options or {}))
    return fs, root.rstrip("/")


def _relative_files(fs: Any, root: str) -> list[str]:
    """Every file under ``root``, relative to it (posix separators), sorted."""
    if not fs.exists(root):
        return []
    prefix = root.rstrip("/") + "/"
    return sorted(p[len(prefix):] if p.startswith(prefix) else p for p in fs.find(root))


def foreign_files(table_folder: str, fs_options: dict[str, Any] | None = None) -> list[str]:
    """The files under ``table_folder`` that no Delta table writes (relative paths, sorted)."""
    fs, root = _fs(table_folder, fs_options)
    return [p for p in _relative_files(fs, root) if not _is_table_file(p)]


def check_table_folder(table_folder: str, name: str, fs_options: dict[str, Any] | None = None) -> None:
    """Refuse to create or maintain table ``name`` in a folder holding files a table did not write.

    An absent or empty folder, or one holding only a Delta table's files, passes.
    """
    stray = foreign_files(table_folder, fs_options)
    if stray:
        shown = ", ".join(stray[:_SHOWN]) + (f" and {len(stray) - _SHOWN} more" if len(stray) > _SHOWN else "")
        raise ConfigError(
            f"{table_folder} holds files that are not a vindex table's ({shown}): vindex will not create, "
            f"compact or delete anything in it. Choose an index location of its own (a new or empty folder, "
            f"e.g. --index {posixpath.join(_parent(table_folder), 'vindex-index')})"
        )


def _parent(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0] if "/" in uri.rstrip("/") else "."


def _inside(inner: str, outer: str) -> bool:
    """Whether normalised URI ``inner`` is ``outer`` or lies under it at a path-segment boundary."""
    outer = outer.rstrip("/")
    return inner == outer or inner.startswith(outer + "/")


def _source_root(source: str) -> str:
    """The fixed part of a source (a folder, a file, or a glob's folder), as a normalised URI."""
    from pipeline.sources.listing import normalise_uri

    for i, char in enumerate(source):
        if char in "*?[":
            fixed = source[:i].rsplit("/", 1)[0]
            return normalise_uri(fixed or ".")
    return normalise_uri(source)


def check_apart(source: str, index_uri: str) -> None:
    """Refuse an index inside the source, or a source inside the index."""
    from pipeline.sources.listing import normalise_uri

    source_root, index_root = _source_root(source), normalise_uri(index_uri)
    if _inside(index_root, source_root):
        raise ConfigError(
            f"the index {index_uri} lies inside the source {source}: a run would list the index's own files "
            f"as input and put tables among your videos. Choose an index outside the source, e.g. "
            f"--index {posixpath.join(_parent(source_root.removeprefix('file://')), 'vindex-index')}"
        )
    if _inside(source_root, index_root):
        raise ConfigError(
            f"the source {source} lies inside the index {index_uri}: vindex's tables and maintenance would "
            "share a folder with your videos. Keep the videos outside the index folder (move them, or choose "
            "another --index)"
        )


def has_marker(index_uri: str, fs_options: dict[str, Any] | None = None) -> bool:
    fs, root = _fs(index_uri, fs_options)
    return bool(fs.exists(f"{root}/{MARKER}"))


def claim_index(
    index_uri: str, table_names: Iterable[str], fs_options: dict[str, Any] | None = None, *, source: str | None = None
) -> None:
    """Make ``index_uri`` an index before any table is created there, or refuse (ConfigError).

    Refused: an index inside ``source`` or a source inside it; a table folder that exists
    with files a Delta table does not write. Accepted, and marked with :data:`MARKER`: a new
    or empty location, a location whose table folders are absent, and an index an earlier
    vindex made before the marker existed (its table folders hold only tables' files).
    """
    if source is not None:
        check_apart(source, index_uri)
    fs, root = _fs(index_uri, fs_options)
    marker = f"{root}/{MARKER}"
    try:
        marked = fs.exists(marker)
        for name in table_names:
            # A marked index's tables were made by vindex: only a folder that is not a table yet
            # is listed (listing every table's files at each run's start costs O(files): about
            # 7,000 a table at 100k videos until a vacuum, a LIST request per 1,000 on S3).
            if marked and fs.exists(f"{root}/{name}/{DELTA_LOG}"):
                continue
            check_table_folder(index_uri.rstrip("/") + "/" + name, name, fs_options)
        if marked:
            return
        if is_local(fs):  # object stores have no folders (and s3fs's makedirs creates a bucket)
            fs.makedirs(root, exist_ok=True)
        with fs.open(marker, "w") as out:
            json.dump(
                {"format": MARKER_FORMAT, "version": 1, "created_at": dt.datetime.now(dt.timezone.utc).isoformat()},
                out,
            )
    except OSError as exc:
        raise IndexError_(f"cannot mark {index_uri} as a vindex index ({exc}): is the location writable?") from exc
    log.info("marked %s as a vindex index (%s)", index_uri, MARKER)


__all__ = [
    "MARKER",
    "check_apart",
    "check_table_folder",
    "claim_index",
    "foreign_files",
    "has_marker",
    "is_table_data_file",
]
