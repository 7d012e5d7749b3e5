"""The incremental diff: a listing against what the index holds, and what a run must do.

The listing and the index's ``videos`` rows are joined on ``video_id`` and read back a batch
at a time; each batch is classified with Arrow compute, and what the run must do goes to
spills (:class:`~pipeline.sources.spill.Spill`) that it reads back in batches. So a run's
memory does not grow with the corpus: a listing and an index within the listing spill's
memory bound (:data:`~pipeline.sources.spill.MEMORY_ROWS` rows) are joined whole, in memory,
in URI order; larger ones are split by ``video_id`` into partitions of
:data:`PARTITION_ROWS` rows on disk and joined a partition at a time (in URI order within
each). Both feed the same classification.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.ipc as ipc

from pipeline.digests import Digests
from pipeline.errors import EmptySourceError
from pipeline.index.schemas import COUNT_KEYS, LISTING_COLUMNS, VIDEOS
from pipeline.sources.listing import LISTED, ListingScope, VideoObject
from pipeline.sources.spill import Spill, rebatched, spill_writes

log = logging.getLogger(__name__)

#: What a run reads of each indexed video to decide what to do with it.
KNOWN_COLUMNS = [*LISTING_COLUMNS, "status", "config_digest", "derived_digest"]
KNOWN = pa.schema([VIDEOS.field(name) for name in KNOWN_COLUMNS])
#: A listed video beside its indexed row (``k_`` columns; all null where either is missing).
JOINED = pa.schema([*LISTED, *(f.with_name("k_" + f.name) for f in KNOWN)])
#: Rows of each side in one partition of a join too large to hold (see :func:`_joined_by_partition`):
#: joined in memory, 20,000 rows hold about 60 MB at their peak (measured: a 100,000-video
#: diff peaked 95 MB lower with partitions of 20,000 rows than in one of 100,000).
PARTITION_ROWS = 20_000
#: Partitions one split of a join makes at most.
MAX_FANOUT = 64
#: Compression of the partition files: at a million videos, LZ4 wrote 122 MB where none wrote
#: 323 MB (zstd: 67 MB), for 0.9 s more CPU (zstd: 3.8 s).
PARTITION_COMPRESSION = "lz4"
#: Joined rows per batch read back from the join.
JOIN_BATCH_ROWS = 65_536

@dataclass
class Plan:
    """What a run must do, held whole (the small runs of tests and tools; a run streams
    :class:`RunPlan`)."""

    todo: list[VideoObject]
    deleted: list[dict[str, Any]]
    counts: dict[str, int]
    #: Video ids whose outputs are current but whose scenes must be derived again.
    rederive: list[str] = field(default_factory=list)


@dataclass
class RunPlan:
    """What a run must do, each part in URI order (within each partition of a large join), held in spills: ``todo`` (new and changed
    videos, :data:`LISTED` rows), ``rederive`` (videos whose scenes alone must be derived
    again, :data:`LISTED` rows), ``deleted`` (indexed videos the listing covers and did not
    find, :data:`KNOWN` rows), and the counts."""

    todo: Spill
    rederive: Spill
    deleted: Spill
    counts: dict[str, int]


def diff_against_index(
    listed: list[VideoObject],
    known: list[dict[str, Any]],
    scope: ListingScope,
    digests: Digests,
    full: bool,
    *,
    allow_empty_source: bool = False,
    rederive_scenes: bool = False,
) -> Plan:
    """:func:`plan_run` of a listing and index rows held as lists, held whole."""
    listing = Spill(LISTED, None, "listed")
    listing.append(pa.Table.from_pylist([{**v.to_row(), "location": v.location} for v in listed], schema=LISTED))
    plan = plan_run(
        listing, pa.Table.from_pylist(known, schema=KNOWN), scope, digests, full, None,
        allow_empty_source=allow_empty_source, rederive_scenes=rederive_scenes,
    )  # fmt: skip
    return Plan(
        [VideoObject.from_row(row) for row in plan.todo.to_pylist()],
        plan.deleted.to_pylist(),
        plan.counts,
        [row["video_id"] for row in plan.rederive.to_pylist()],
    )


def plan_run(
    listed: Spill,
    known: pa.Table | pads.Dataset,
    scope: ListingScope,
    digests: Digests,
    full: bool,
    folder: str | None,
    *,
    allow_empty_source: bool = False,
    rederive_scenes: bool = False,
) -> RunPlan:
    """Decide what to (re)index: new, changed, failed last time or indexed with other settings
    (settings that change only scenes: derive them again, without decoding).

    ``listed`` holds :data:`LISTED` rows, ``known`` the index's ``videos`` rows (read once: the
    dataset of one table version is one snapshot); the plan's spills go to ``folder`` (None:
    memory). A video listed twice (or indexed twice) counts once.

    A video is marked deleted only if this listing's ``scope`` covers its URI and the listing
    did not find it. A listing that found nothing where the index holds videos it covers
    deletes nothing and raises :class:`EmptySourceError`, unless ``allow_empty_source``.
    ``rederive_scenes`` derives the scenes of every current video again, settings changed or not.
    """
    plan = RunPlan(
        Spill(LISTED, folder, "todo"),
        Spill(LISTED, folder, "rederive"),
        Spill(KNOWN, folder, "deleted"),
        dict.fromkeys(COUNT_KEYS, 0),
    )
    previous: str | None = None
    for batch in _joined(listed, known, folder):
        previous = _classify(batch, previous, plan, scope, digests, full, rederive_scenes)
    for spill in (plan.todo, plan.rederive, plan.deleted):
        spill.close()
    plan.counts["deleted"] = plan.deleted.num_rows
    if plan.deleted.num_rows and not plan.counts["listed"] and not allow_empty_source:
        example = next(plan.deleted.batches(1)).column("uri")[0].as_py()
        raise EmptySourceError(
            f"the listing found no videos, but the index holds {plan.deleted.num_rows} videos it covers "
            f"(e.g. {example}); nothing was deleted. If the folder is an unmounted mount "
            "point or the filters changed, fix that; if the videos were really removed, run again "
            "with --allow-empty-source to mark them deleted"
        )
    return plan


def _classify(
    batch: pa.RecordBatch,
    previous: str | None,
    plan: RunPlan,
    scope: ListingScope,
    digests: Digests,
    full: bool,
    rederive_scenes: bool,
) -> str | None:
    """Count one batch of joined rows (rows of one URI adjacent) and add its rows to the plan's parts;
    returns the batch's last URI (``previous``: the last of the batch before)."""
    if not batch.num_rows:
        return previous
    counts = plan.counts
    key = pc.coalesce(batch.column("uri"), batch.column("k_uri"))
    # Rows of one URI are adjacent: the first stands for them all.
    repeated = pc.equal(key, pa.concat_arrays([pa.array([previous], pa.string()), key.slice(0, len(key) - 1)]))
    repeated = pc.fill_null(repeated, False)
    if pc.any(repeated).as_py():
        for uri in key.filter(repeated).to_pylist():
            log.warning("%s is listed or indexed more than once (two objects have that URI); indexing it once", uri)
        batch = batch.filter(pc.invert(repeated))
    last: str | None = key[-1].as_py()

    def col(name: str) -> Any:
        return batch.column(name)

    def same(a: Any, b: Any) -> Any:
        """Equal, a null equal to nothing."""
        return pc.fill_null(pc.equal(a, b), False)

    listed = pc.is_valid(col("uri"))
    indexed = pc.is_valid(col("k_uri"))
    # An indexed video marked deleted is new again.
    present = pc.and_(indexed, pc.invert(same(col("k_status"), "deleted")))
    has_etag = pc.is_valid(col("etag"))
    same_object = pc.and_(
        same(col("size_bytes"), col("k_size_bytes")),
        pc.or_(
            pc.and_(has_etag, same(col("etag"), col("k_etag"))),
            pc.and_(
                pc.invert(has_etag),
                pc.or_(same(col("mtime"), col("k_mtime")), pc.and_(pc.is_null(col("mtime")), pc.is_null(col("k_mtime")))),
            ),
        ),
    )
    outputs_current = pc.and_(
        pc.and_(present, same_object),
        pc.and_(same(col("k_status"), "ok"), same(col("k_config_digest"), digests.outputs)),
    )
    if full:
        outputs_current = pc.and_(outputs_current, pa.scalar(False))
    derived_current = same(col("k_derived_digest"), digests.derived)
    if rederive_scenes:
        derived_current = pc.and_(derived_current, pa.scalar(False))
    listed_present = pc.and_(listed, present)
    unchanged = pc.and_(pc.and_(listed, outputs_current), derived_current)
    rederive = pc.and_(pc.and_(listed, outputs_current), pc.invert(derived_current))
    todo = pc.and_(listed, pc.invert(outputs_current))
    counts["listed"] += _count(listed)
    counts["new"] += _count(pc.and_(listed, pc.invert(present)))
    counts["changed"] += _count(pc.and_(listed_present, pc.invert(unchanged)))
    counts["unchanged"] += _count(unchanged)
    listing_part = batch.select(LISTED.names)
    plan.todo.append(listing_part.filter(todo))
    plan.rederive.append(listing_part.filter(rederive))
    gone = batch.filter(pc.and_(pc.invert(listed), present))
    if gone.num_rows:
        # Few rows (what vanished since the last run): the scope's rules are Python's.
        ids, uris = gone.column("k_video_id").to_pylist(), gone.column("k_uri").to_pylist()
        covered = pa.array([scope.owns(i) and scope.covers(u) for i, u in zip(ids, uris)], pa.bool_())
        known_part = gone.select(["k_" + name for name in KNOWN_COLUMNS]).rename_columns(KNOWN_COLUMNS)
        plan.deleted.append(known_part.filter(covered))
    return last


def _count(mask: Any) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _joined(listed: Spill, known: pa.Table | pads.Dataset, folder: str | None) -> Iterator[pa.RecordBatch]:
    """The full outer join of ``listed`` and ``known`` on ``video_id``, as :data:`JOINED`
    batches, rows of one URI adjacent: in memory (in URI order) when both are small, else
    partition by partition (:func:`_joined_by_partition`)."""
    if folder is None:  # nothing may go to disk: held whole
        small = known if isinstance(known, pa.Table) else known.to_table(columns=KNOWN_COLUMNS)
    else:
        small = None if listed.on_disk else _at_most(known, listed.memory_rows)
        if small is None:
            yield from _joined_by_partition(listed, known, folder)
            return
    yield from _joined_in_memory(listed.table(), small.select(KNOWN_COLUMNS))


def _at_most(known: pa.Table | pads.Dataset, rows: int) -> pa.Table | None:
    """``known``'s listing columns, when it has at most ``rows`` rows; None otherwise."""
    if isinstance(known, pa.Table):
        return known if known.num_rows <= rows else None
    batches, held = [], 0
    for batch in _scan(known):
        held += batch.num_rows
        if held > rows:
            return None
        batches.append(batch)
    return pa.Table.from_batches(batches, KNOWN) if batches else KNOWN.empty_table()


def _scan(known: pa.Table | pads.Dataset) -> Iterator[pa.RecordBatch]:
    """``known``'s listing columns a batch at a time (one file read ahead, not pyarrow's
    default of several: the diff's memory is what it holds at once)."""
    if isinstance(known, pa.Table):
        yield from known.select(KNOWN_COLUMNS).cast(KNOWN).to_batches(max_chunksize=JOIN_BATCH_ROWS)
        return
    for batch in known.to_batches(
        columns=KNOWN_COLUMNS, batch_size=JOIN_BATCH_ROWS, batch_readahead=1, fragment_readahead=1
    ):
        yield batch.cast(KNOWN) if batch.schema != KNOWN else batch


def _joined_in_memory(listed_table: pa.Table, known: pa.Table) -> Iterator[pa.RecordBatch]:
    """The join held in memory, in URI order."""
    known = known.cast(KNOWN).rename_columns(["k_" + name for name in KNOWN_COLUMNS])
    joined = listed_table.join(known, "video_id", "k_video_id", join_type="full outer", coalesce_keys=False)
    joined = joined.select(JOINED.names).cast(JOINED)
    order = pc.sort_indices(pc.coalesce(joined.column("uri"), joined.column("k_uri")))
    yield from joined.take(order).to_batches(max_chunksize=JOIN_BATCH_ROWS)


def _joined_by_partition(listed: Spill, known: pa.Table | pads.Dataset, folder: str) -> Iterator[pa.RecordBatch]:
    """The join of a listing or an index too large to hold: both are split by ``video_id``
    into partitions of at most about :data:`PARTITION_ROWS` rows (ids are uuid5 hashes:
    uniform), written to files in ``folder``, and joined in memory one partition at a time
    (each in URI order). Memory: one partition of each side, whatever the corpus.

    A split makes :data:`MAX_FANOUT` partitions at most (so that each piece written stays
    large enough to be cheap); a partition still more than twice too large (the fan-out was
    capped, or the ids fall unevenly) is split again, by the next bits of the ids. A million
    videos make one split of 50 partitions; a hundred million, two levels (64, then 40 each).

    (DuckDB's join and sort, tried first, held about 220 MB beyond a 128 MB memory limit on a
    100,000-video diff, and failed with "out of memory" under a 64 MB limit.)
    """
    known_rows = known.num_rows if isinstance(known, pa.Table) else known.count_rows()
    rows = max(listed.num_rows, known_rows)
    yield from _joined_in_range(listed.batches(JOIN_BATCH_ROWS), _scan(known), rows, 0, 2**32, folder, "part")


def _joined_in_range(
    listed: Iterator[pa.RecordBatch], known: Iterator[pa.RecordBatch], rows: int, low: int, high: int, folder: str,
    name: str,
) -> Iterator[pa.RecordBatch]:
    """The join of the rows of ``listed`` and ``known`` (at most ``rows`` on either side), whose
    ids' partition values (:func:`partition_value`) lie in ``[low, high)``: split into
    partitions of that range, each joined in memory or split again."""
    parts = max(1, min(MAX_FANOUT, -(-rows // PARTITION_ROWS), high - low))
    with _Partitions(os.path.join(folder, name + "-listed.arrows"), LISTED, low, high, parts) as listed_parts, \
            _Partitions(os.path.join(folder, name + "-known.arrows"), KNOWN, low, high, parts) as known_parts:  # fmt: skip
        for batch in listed:
            listed_parts.write(batch)
        for batch in known:
            known_parts.write(batch)
        listed_parts.close_writer()
        known_parts.close_writer()
        for part in range(parts):
            part_rows = max(listed_parts.rows[part], known_parts.rows[part])
            part_low, part_high = listed_parts.bounds(part)
            if part_rows <= 2 * PARTITION_ROWS or parts == 1:
                yield from _joined_in_memory(
                    pa.Table.from_batches(listed_parts.read(part), LISTED),
                    pa.Table.from_batches(known_parts.read(part), KNOWN),
                )
            else:
                yield from _joined_in_range(
                    rebatched(listed_parts.read(part), JOIN_BATCH_ROWS, LISTED),
                    rebatched(known_parts.read(part), JOIN_BATCH_ROWS, KNOWN),
                    part_rows, part_low, part_high, folder, f"{name}-{part}",
                )  # fmt: skip


class _Partitions:
    """Rows of ``schema`` split into ``parts`` partitions of the ids' partition values in
    ``[low, high)``, in one Arrow IPC file (whose batches can be read back one by one): each
    batch written is cut into one record batch per partition, and each partition remembers
    its record batches."""

    def __init__(self, path: str, schema: pa.Schema, low: int, high: int, parts: int) -> None:
        self.path, self.schema, self.low, self.high, self.parts = path, schema, low, high, parts
        self.rows = [0] * parts
        self._batches: list[list[int]] = [[] for _ in range(parts)]
        self._written = 0
        with spill_writes(path):
            self._sink = pa.OSFile(path, "wb")
            options = ipc.IpcWriteOptions(compression=PARTITION_COMPRESSION)
            self._writer: Any = ipc.new_file(self._sink, schema, options=options)
        self._source: Any = None
        self._reader: Any = None

    def __enter__(self) -> _Partitions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_writer()
        if self._source is not None:
            self._source.close()
        os.remove(self.path)

    def bounds(self, part: int) -> tuple[int, int]:
        """The partition values of partition ``part``: ``[low, high)``."""
        span = self.high - self.low
        return self.low + -(-part * span // self.parts), self.low + -(-(part + 1) * span // self.parts)

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        values = partition_value(batch.column("video_id"))
        part = ((values - np.uint64(self.low)) * np.uint64(self.parts) // np.uint64(self.high - self.low)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        batch = batch.take(pa.array(order))
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for index in np.flatnonzero(np.diff(bounds)):
            start, stop = int(bounds[index]), int(bounds[index + 1])
            with spill_writes(self.path):
                self._writer.write_batch(batch.slice(start, stop - start))
            self._batches[index].append(self._written)
            self.rows[index] += stop - start
            self._written += 1

    def close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with spill_writes(self.path):
                writer.close()
                self._sink.close()

    def read(self, part: int) -> Iterator[pa.RecordBatch]:
        """Partition ``part``'s rows (after :meth:`close_writer`), a piece at a time."""
        if self._reader is None:
            self._source = pa.OSFile(self.path)
            self._reader = ipc.open_file(self._source)
        for index in self._batches[part]:
            yield self._reader.get_batch(index)


#: Value of each hexadecimal digit's byte (others: 0).
_HEX = np.zeros(256, np.uint64)
for _digit in "0123456789abcdef":
    _HEX[ord(_digit)] = _HEX[ord(_digit.upper())] = int(_digit, 16)
_HEX_BYTES = np.frombuffer(b"0123456789abcdefABCDEF", np.uint8)
_SHIFTS = np.arange(28, -1, -4, dtype=np.uint64)


def partition_value(video_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each id's partition value, in ``[0, 2**32)``: its first 32 bits (8 hexadecimal digits,
    uniform for uuid5 ids); for an id without them (not a uuid), a checksum of it."""
    ids = video_ids.combine_chunks() if isinstance(video_ids, pa.ChunkedArray) else video_ids
    prefixes = pc.utf8_slice_codeunits(ids, 0, 8)
    if ids.null_count == 0 and pc.all(pc.equal(pc.utf8_length(prefixes), 8)).as_py() is not False:
        fixed = prefixes.cast(pa.binary()).cast(pa.binary(8))
        digits = np.frombuffer(fixed.buffers()[1], np.uint8, count=8 * len(fixed), offset=8 * fixed.offset).reshape(-1, 8)
        if np.isin(digits, _HEX_BYTES).all():
            values: np.ndarray = (_HEX[digits] << _SHIFTS).sum(axis=1, dtype=np.uint64)
            return values
    return np.array([_value_of_one(i) for i in ids.to_pylist()], np.uint64)


def _value_of_one(video_id: str | None) -> int:
    head = (video_id or "")[:8]
    if len(head) == 8 and all(c in "0123456789abcdefABCDEF" for c in head):
        return int(head, 16)
    return zlib.crc32((video_id or "").encode())


__all__ = ["JOINED", "KNOWN", "KNOWN_COLUMNS", "Plan", "RunPlan", "diff_against_index", "plan_run"]
