"""Reading an index from Python: each table as Arrow or pandas, and nearest keyframes.

``open_index(url)`` is the entry point of the Python API::

    import pipeline

    index = pipeline.open_index("./vindex-index")
    shots = index.table("shots")            # pyarrow.Table
    videos = index.to_pandas("videos")      # pandas.DataFrame
    nearest = index.similar(image="query.jpg", k=5)
    before = index.as_of("20261126T070000Z-1a2b3c")   # as it was when that run finished
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.config import StorageConfig
from pipeline.errors import IndexError_
from pipeline.index.schemas import SCHEMAS
from pipeline.index.snapshot import Snapshot
from pipeline.sources.storage import delta_options, fsspec_options

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class IndexReader(Snapshot):
    """An existing index, read-only: tables as Arrow or pandas, similarity search."""

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(SCHEMAS)

    def table(self, name: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """The table ``name`` as Arrow (embeddings as fixed-size lists of float32).

        ``columns`` projects and ``filter`` (a ``pyarrow.compute`` expression) selects rows
        while reading, so only what is asked for is read from the Parquet files.
        """
        return self.read(name, columns=columns, filter=filter)

    def to_arrow(self, name: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
        """Same as :meth:`table`."""
        return self.table(name, columns=columns, filter=filter)

    def to_pandas(self, name: str, columns: list[str] | None = None, filter: Any = None) -> pd.DataFrame:
        """The table ``name`` as a pandas DataFrame."""
        return self.table(name, columns=columns, filter=filter).to_pandas()

    def as_of(self, run_id: str) -> "IndexReader":
        """This index as it was when run ``run_id`` finished (Delta time travel).

        Raises :class:`~pipeline.errors.IndexError_` for an unknown or unfinished run.
        """
        return dataclasses.replace(self, versions=self.pinned_at_run(run_id))

    def similar(
        self,
        *,
        image: str | os.PathLike[str] | None = None,
        keyframe: tuple[str, int] | None = None,
        k: int = 10,
        exact: bool = False,
        level: str = "keyframe",
    ) -> pa.Table:
        """The ``k`` keyframes (``level="shot"``: shots) nearest to an image file or to a keyframe
        ``(video_id, frame)``; from the ANN index `vindex compact` keeps above 50k rows, unless ``exact``."""
        from pipeline.index.similarity import similar

        return similar(
            self,
            image=image,
            keyframe=keyframe,
            k=k,
            fs_options=fsspec_options(self.uri, StorageConfig()),
            exact=exact,
            level=level,
        )


def open_index(url: str, storage_options: dict[str, str] | None = None) -> IndexReader:
    """Open the index at ``url`` (a local path or an fsspec-style URL such as ``s3://...``).

    ``storage_options`` are Delta Lake's object-store options; by default they come from the
    environment as for ``vindex run`` (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ...).
    Raises :class:`~pipeline.errors.IndexError_` when there is no index at ``url``.
    """
    if storage_options is None:
        storage_options = delta_options(url, StorageConfig())
    reader = IndexReader(url, storage_options)
    try:
        found = reader.exists("videos")
    except OSError as exc:
        raise IndexError_(f"cannot open index {url}: {exc}") from exc
    if not found:
        raise IndexError_(f"{url} has no 'videos' table: is it a vindex index? (run `vindex run` first)")
    return reader


__all__ = ["IndexReader", "open_index"]
