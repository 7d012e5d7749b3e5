"""The incremental diff: a listing against what the index holds, and what a run must do.

The listing and the index's ``videos`` rows are joined on ``video_id`` and read back in URI
order, a batch at a time; each batch is classified with Arrow compute, and what the run must
do goes to spills (:class:`~pipeline.sources.spill.Spill`) that it reads back in batches. So
a run's memory does not grow with the corpus: a listing and an index that fit in memory
(the listing spill's memory bound, :data:`~pipeline.sources.spill.MEMORY_ROWS` rows) are joined by Arrow there; larger ones by
DuckDB, which sorts and joins within :data:`DUCKDB_MEMORY_LIMIT` and spills the rest to the
run's temporary folder. Both joins feed the same classification.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.digests import Digests
from pipeline.errors import EmptySourceError
from pipeline.index.schemas import LISTING_COLUMNS, VIDEOS
from pipeline.sources.listing import LISTED, ListingScope, VideoObject
from pipeline.sources.spill import Spill

log = logging.getLogger(__name__)

#: What a run reads of each indexed video to decide what to do with it.
KNOWN_COLUMNS = [*LISTING_COLUMNS, "status", "config_digest", "derived_digest"]
KNOWN = pa.schema([VIDEOS.field(name) for name in KNOWN_COLUMNS])
#: A listed video beside its indexed row (``k_`` columns; all null where either is missing).
JOINED = pa.schema([*LISTED, *(f.with_name("k_" + f.name) for f in KNOWN)])
#: What DuckDB may hold of a large diff before it spills to disk.
DUCKDB_MEMORY_LIMIT = "192MB"
#: DuckDB's threads at most: each holds buffers of its own within the memory limit.
DUCKDB_THREADS = 4
#: Joined rows per batch read back from the join.
JOIN_BATCH_ROWS = 65_536

_JOIN_SQL = f"""
SELECT {", ".join(f"l.{name}" for name in LISTED.names)},
       {", ".join(f"k.{name} AS k_{name}" for name in KNOWN_COLUMNS)}
FROM listed AS l FULL OUTER JOIN known AS k ON l.video_id = k.video_id
ORDER BY coalesce(l.uri, k.uri)
"""


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
    """What a run must do, each part in URI order, held in spills: ``todo`` (new and changed
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
        dict(listed=0, new=0, changed=0, unchanged=0, deleted=0, ok=0, failed=0, frames=0),
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
    """Count one batch of joined rows (in URI order) and add its rows to the plan's parts;
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
    """The full outer join of ``listed`` and ``known`` on ``video_id``, in URI order, as
    :data:`JOINED` batches: by Arrow in memory when both are small, else by DuckDB."""
    if folder is None:  # nothing may go to disk: held whole
        small = known if isinstance(known, pa.Table) else known.to_table(columns=KNOWN_COLUMNS)
    else:
        small = None if listed.on_disk else _at_most(known, listed.memory_rows)
        if small is None:
            yield from _joined_by_duckdb(listed, known, folder)
            return
    yield from _joined_in_memory(listed.source(), small.select(KNOWN_COLUMNS))


def _at_most(known: pads.Dataset, rows: int) -> pa.Table | None:
    """``known``'s listing columns, when it has at most ``rows`` rows; None otherwise."""
    batches, held = [], 0
    for batch in known.to_batches(columns=KNOWN_COLUMNS):
        held += batch.num_rows
        if held > rows:
            return None
        batches.append(batch)
    return pa.Table.from_batches(batches, KNOWN).cast(KNOWN) if batches else KNOWN.empty_table()


def _joined_in_memory(listed: Any, known: pa.Table) -> Iterator[pa.RecordBatch]:
    listed_table = listed if isinstance(listed, pa.Table) else listed.to_table()
    known = known.cast(KNOWN).rename_columns(["k_" + name for name in KNOWN_COLUMNS])
    joined = listed_table.join(known, "video_id", "k_video_id", join_type="full outer", coalesce_keys=False)
    joined = joined.select(JOINED.names).cast(JOINED)
    order = pc.sort_indices(pc.coalesce(joined.column("uri"), joined.column("k_uri")))
    yield from joined.take(order).to_batches(max_chunksize=JOIN_BATCH_ROWS)


def _joined_by_duckdb(listed: Spill, known: pa.Table | pads.Dataset, folder: str) -> Iterator[pa.RecordBatch]:
    import duckdb

    settings: dict[str, Any] = {
        "enable_external_access": False,  # it reads the Arrow objects handed to it, nothing else
        "memory_limit": DUCKDB_MEMORY_LIMIT,
        "threads": min(DUCKDB_THREADS, os.cpu_count() or 1),
        "temp_directory": folder,
    }
    connection = duckdb.connect(config=settings)
    try:
        connection.register("listed", listed.source())
        connection.register("known", known)
        reader = connection.sql(_JOIN_SQL).to_arrow_reader(JOIN_BATCH_ROWS)
        for batch in reader:
            yield batch.cast(JOINED)
    finally:
        connection.close()


__all__ = ["JOINED", "KNOWN", "KNOWN_COLUMNS", "Plan", "RunPlan", "diff_against_index", "plan_run"]
