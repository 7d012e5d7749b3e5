"""Approximate nearest-neighbour (ANN) indexes of the keyframe and shot embeddings, kept with the index.

Exact search reads every embedding (58.9 s a query at 1M keyframes, docs/scale.md). From
:data:`MIN_ROWS` keyframe rows, ``vindex compact`` also writes a faiss inverted-file
index (k-means lists over the vectors stored as float16: scores within about 1e-3 of
exact) beside the tables, and ``vindex similar`` asks it instead, in milliseconds
(figures and the choice of library in docs/similar.md). The ``shots`` table's embeddings get
the same, in ``INDEX/_similar/shot/`` (a :class:`Level` each). Layout, under ``INDEX/_similar/``::

    keyframe/CURRENT.json            the pointer: which build is current (written last)
    keyframe/<build>/vectors.faiss   the faiss index; row i of it is row i of rows.parquet
    keyframe/<build>/rows.parquet    video_id, run_id, shot_index, scene_index, frame, time_s
    keyframe/<build>/covered.parquet the (video_id, run_id) pairs it holds rows of
    keyframe/<build>/files.parquet   the ``keyframes`` data files it read

A build reads every row of the ``keyframes`` files at one table version. A (video, run)
pair's keyframes are appended in one commit, so the build holds each pair whole or not at
all. It writes its own folder, then replaces the pointer (one object put on object storage;
a rename on a local disk), so a crash at any moment leaves the previous build or the new one
in force, never half of one. The build before the current one is kept (a reader that read
the old pointer a moment ago still finds its files); older ones are deleted.

Answers are never stale. At query time the current markers are read (``videos``: one small
column pair), and:

* rows of the build whose marker is not current (a video indexed again or removed since,
  rows a killed run left) are masked out of the search (a faiss id selector);
* the data files written since the build (a run's commits; a compaction's rewrites, whose
  rows the build holds already) are read, their rows of current markers the build does not
  hold are scored exactly, and merged with the build's candidates by score. Only the new
  files are opened, so this costs what the runs since the build wrote, not the table.

A pointer, rows file or faiss file that cannot be read or does not agree with the others
(a half-copied folder, a file from another build) makes the search fall back to exact,
with a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import posixpath
import tempfile
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import AnnIndexError, IndexWriteError
from pipeline.index.snapshot import Snapshot as IndexSnapshot
from pipeline.index.snapshot import _joined_keys, _row_key, delta_dataset
from pipeline.sources.reading import is_local
from pipeline.models.spec import EMBEDDING_DIM

log = logging.getLogger(__name__)

#: The folder under the index root holding ANN indexes, one subfolder per level.
FOLDER = "_similar"
POINTER = "CURRENT.json"
VECTORS = "vectors.faiss"
ROWS = "rows.parquet"
COVERED = "covered.parquet"
FILES = "files.parquet"
FORMAT = 1
#: Below this many keyframe rows exact search is kept and no ANN index is built. Exact search
#: costs about 52 us a row (5.2 s at 100k keyframes, docs/scale.md): 2.6 s here, past what an
#: interactive command should take; a build costs about a second per 1,000 rows at this size
#: (benchmarks/ann.py), paid back after some 20 queries. Smaller indexes keep one path less.
MIN_ROWS = 50_000


@dataclass(frozen=True)
class Level:
    """What an ANN index is of: a table's embeddings, and the columns a match carries."""

    name: str
    table: str
    #: What a match carries (``video_id`` first); ``rows.parquet`` holds these and ``run_id``.
    match_columns: tuple[str, ...]
    #: Ties of score rank by ``video_id``, then this column.
    order: str

    @property
    def row_columns(self) -> tuple[str, ...]:
        return (*self.match_columns, "run_id")


LEVELS = {
    "keyframe": Level("keyframe", "keyframes", ("video_id", "shot_index", "scene_index", "frame", "time_s"), "frame"),
    # A shot's embedding is the normalised mean of its frames' (null in rows indexed before it was kept).
    "shot": Level("shot", "shots", ("video_id", "shot_index", "start_frame", "end_frame", "start_s", "end_s"), "shot_index"),
}
#: Inverted lists per sqrt(rows): 1M rows make 1,000 lists of about 1,000 rows. (4 * sqrt(N),
#: the other end of the usual rule, makes the k-means of a build four times dearer.)
LISTS_PER_SQRT_ROWS = 1
#: Lists probed per query: recall@10 0.99 at 1M synthetic keyframe-like vectors (docs/similar.md).
NPROBE = 32
#: Training sample for the k-means of the lists: this many vectors per list, at most.
TRAIN_PER_LIST = 40
#: Rows read per record batch while building.
BUILD_BATCH_ROWS = 8192


def _fs(uri: str, fs_options: dict[str, Any] | None) -> tuple[Any, str]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(uri, **(fs_options or {}))
    return fs, root.rstrip("/")


def level_root(index_uri: str, level: str = "keyframe") -> str:
    return posixpath.join(index_uri.rstrip("/"), FOLDER, level)


def _level(name: str) -> Level:
    if name not in LEVELS:
        raise ValueError(f"no ANN level {name!r}; levels are {', '.join(LEVELS)}")
    return LEVELS[name]


@dataclass(frozen=True)
class BuildInfo:
    """What the pointer says of the current build."""

    build: str
    rows: int
    covered: int
    table_version: int
    vectors_bytes: int
    created_at: str
    nprobe: int

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **self.__dict__}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BuildInfo":
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"pointer format {data.get('format')!r}, expected {FORMAT}")
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


# --- building --------------------------------------------------------------------------------


def build(
    index: IndexSnapshot, fs_options: dict[str, Any] | None = None, min_rows: int | None = None, level: str = "keyframe"
) -> BuildInfo | None:
    """Build the ANN index of ``index``'s keyframes (``level="keyframe"``) or shots
    (``"shot"``) and make it current; ``None`` (and nothing written) when the table has fewer
    than ``min_rows`` rows (:data:`MIN_ROWS`). Storage failures raise
    :class:`~pipeline.errors.IndexWriteError`.

    Below the threshold an existing ANN index is left in place: the search masks its rows
    that are no longer current and scans the rest exactly, so answers stay right.
    """
    from deltalake.exceptions import DeltaError

    try:
        return _build(index, fs_options, MIN_ROWS if min_rows is None else min_rows, _level(level))
    except (OSError, DeltaError) as exc:
        raise IndexWriteError(f"cannot write the ANN index of {index.uri}: {exc}") from exc


def _build(index: IndexSnapshot, fs_options: dict[str, Any] | None, min_rows: int, level: Level) -> BuildInfo | None:
    import faiss

    # Every row of the table's files at one version: a (video, run) pair's keyframes are
    # appended in one commit, so each pair is in the build whole or not at all. Rows whose
    # marker is not current (yet, or any more) are masked at query time, not left out here.
    table = index._delta(level.table)
    version = int(table.version())
    files = pa.table({"file": [posixpath.basename(uri) for uri in table.file_uris()]})
    dataset = delta_dataset(table, index.storage_options)
    total = dataset.count_rows()
    if total < max(min_rows, 1):
        log.info("similar: %d %s rows, under the %d for an ANN index: exact search stays", total, level.table, min_rows)
        return None
    lists = max(1, min(int(LISTS_PER_SQRT_ROWS * np.sqrt(total)), total // TRAIN_PER_LIST))
    with tempfile.TemporaryDirectory(prefix="vindex-ann-") as scratch:
        # One pass over the table: the vectors go to a float16 scratch file (2.5 KB a row), the
        # k-means trains on a spread sample of it, then every row is added from it.
        spill = np.lib.format.open_memmap(os.path.join(scratch, "v.npy"), "w+", np.float16, (total, EMBEDDING_DIM))
        kept: list[pa.RecordBatch] = []
        count = 0
        for batch in dataset.to_batches(columns=[*level.row_columns, "embedding"], batch_size=BUILD_BATCH_ROWS):
            lengths = pc.list_value_length(batch.column("embedding"))
            complete = pc.fill_null(pc.equal(lengths, EMBEDDING_DIM), False)
            if not pc.all(complete).as_py():
                batch = batch.filter(complete)
            if batch.num_rows == 0:
                continue
            matrix = batch.column("embedding").flatten().to_numpy(zero_copy_only=False).reshape(-1, EMBEDDING_DIM)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            spill[count : count + batch.num_rows] = matrix / np.where(norms > 0, norms, 1)
            kept.append(batch.drop_columns(["embedding"]))
            count += batch.num_rows
        if count < max(min_rows, 1) or not kept:
            return None
        rows = pa.Table.from_batches(kept).combine_chunks()
        covered = rows.group_by(["video_id", "run_id"]).aggregate([]).select(["video_id", "run_id"])
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(count, size=min(count, TRAIN_PER_LIST * lists), replace=False))
        quantiser = faiss.IndexFlatIP(EMBEDDING_DIM)
        ann = faiss.IndexIVFScalarQuantizer(
            quantiser, EMBEDDING_DIM, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        ann.train(np.ascontiguousarray(spill[sample], dtype=np.float32))
        for start in range(0, count, BUILD_BATCH_ROWS):
            ann.add(np.ascontiguousarray(spill[start : start + BUILD_BATCH_ROWS], dtype=np.float32))
        del spill
        local_vectors = os.path.join(scratch, VECTORS)
        faiss.write_index(ann, local_vectors)
        info = BuildInfo(
            build=dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ-") + uuid.uuid4().hex[:8],
            rows=count,
            covered=covered.num_rows,
            table_version=version,
            vectors_bytes=os.path.getsize(local_vectors),
            created_at=dt.datetime.now(dt.timezone.utc).isoformat(),
            nprobe=min(NPROBE, lists),
        )
        _publish(index.uri, level, fs_options, info, local_vectors, {ROWS: rows, COVERED: covered, FILES: files})
    log.info("similar: ANN index %s of %d %s rows (%d lists) written", info.build, count, level.table, lists)
    return info


def _publish(
    index_uri: str,
    level: Level,
    fs_options: dict[str, Any] | None,
    info: BuildInfo,
    local_vectors: str,
    tables: dict[str, pa.Table],
) -> None:
    """Write the build's folder, then the pointer (last), then delete builds older than the previous."""
    fs, root = _fs(level_root(index_uri, level.name), fs_options)
    folder = f"{root}/{info.build}"
    fs.makedirs(folder, exist_ok=True)
    fs.put_file(local_vectors, f"{folder}/{VECTORS}")
    for name, content in tables.items():
        with fs.open(f"{folder}/{name}", "wb") as out:
            pq.write_table(content, out)
    previous = _read_pointer(fs, root)
    _write_pointer(fs, root, info.to_json())
    # Builds are named by time: only those older than the previous one go, so a build another
    # compaction is writing at this moment (newer) is left alone.
    oldest_kept = min(info.build, previous.build) if previous is not None else info.build
    for path in fs.ls(root, detail=False):
        name = posixpath.basename(path.rstrip("/"))
        if name != POINTER and not name.startswith(".") and name < oldest_kept:
            fs.rm(path, recursive=True)
            log.info("similar: deleted the superseded ANN build %s", name)


def _write_pointer(fs: Any, root: str, text: str) -> None:
    """Replace the pointer in one step: a rename on a local disk; one put on object storage."""
    target = f"{root}/{POINTER}"
    if is_local(fs):
        partial = f"{root}/.{POINTER}.{uuid.uuid4().hex}"
        with open(partial, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    else:
        fs.pipe_file(target, text.encode())


def _read_pointer(fs: Any, root: str) -> BuildInfo | None:
    try:
        return BuildInfo.from_json(fs.cat_file(f"{root}/{POINTER}").decode())
    except FileNotFoundError:
        return None


# --- searching -------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A build in memory: the faiss index, its rows and the markers it covers."""

    info: BuildInfo
    level: Level
    ann: Any
    rows: pa.Table
    #: For each row, the position of its marker in ``covered``.
    row_marker: np.ndarray
    covered_keys: pa.Array
    #: The data files of the level's table the build read (names in the table folder).
    files: frozenset[str]
    #: The ``videos`` table and the level's, brought up to date at each search.
    tables: dict[str, Any] = field(default_factory=dict)
    state: "SearchState | None" = None


_LOADED: dict[tuple[str, str], Loaded] = {}  # (index uri, level) -> the build in memory


def load(index_uri: str, fs_options: dict[str, Any] | None = None, level: str = "keyframe") -> Loaded:
    """The current build of ``level`` (kept in memory per process); raises :class:`AnnIndexError`."""
    import faiss

    of = _level(level)
    fs, root = _fs(level_root(index_uri, of.name), fs_options)
    try:
        info = _read_pointer(fs, root)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnnIndexError(f"its pointer is unreadable ({exc})") from exc
    if info is None:
        raise AnnIndexError("none built (`vindex compact` builds one above the size threshold)", absent=True)
    cached = _LOADED.get((index_uri, of.name))
    if cached is not None and cached.info.build == info.build:
        return cached
    folder = f"{root}/{info.build}"
    try:
        size = fs.size(f"{folder}/{VECTORS}")
        if size != info.vectors_bytes:
            raise AnnIndexError(f"{VECTORS} holds {size} bytes, the pointer says {info.vectors_bytes}")
        if is_local(fs):
            ann = faiss.read_index(f"{folder}/{VECTORS}")
        else:
            with tempfile.TemporaryDirectory(prefix="vindex-ann-") as scratch:
                local = os.path.join(scratch, VECTORS)
                fs.get_file(f"{folder}/{VECTORS}", local)
                ann = faiss.read_index(local)
        with fs.open(f"{folder}/{ROWS}", "rb") as handle:
            rows = pq.read_table(handle)
        with fs.open(f"{folder}/{COVERED}", "rb") as handle:
            covered = pq.read_table(handle)
        with fs.open(f"{folder}/{FILES}", "rb") as handle:
            files = frozenset(pq.read_table(handle).column("file").to_pylist())
    except AnnIndexError:
        raise
    except (OSError, RuntimeError, ValueError, pa.ArrowException) as exc:
        raise AnnIndexError(f"build {info.build} is unreadable ({exc})") from exc
    if not (ann.ntotal == rows.num_rows == info.rows and covered.num_rows == info.covered and ann.d == EMBEDDING_DIM):
        raise AnnIndexError(
            f"build {info.build} is inconsistent: {ann.ntotal} vectors, {rows.num_rows} rows, pointer says {info.rows}"
        )
    covered_keys = _joined_keys(covered)
    row_marker = pc.index_in(_joined_keys(rows.select(["video_id", "run_id"])), value_set=covered_keys)
    if row_marker.null_count:
        raise AnnIndexError(f"build {info.build} is inconsistent: rows of markers it does not cover")
    loaded = Loaded(info, of, ann, rows, row_marker.to_numpy(zero_copy_only=False).astype(np.int64), covered_keys, files)
    _LOADED[(index_uri, of.name)] = loaded  # replaces a superseded build of the same level
    return loaded


#: Rows written since the build are kept in memory between searches (as float16) up to this
#: many (320 MB); past it they are read at each search. `vindex compact` brings them back to 0.
RECENT_IN_MEMORY_ROWS = 128_000


@dataclass(frozen=True)
class SearchState:
    """What a search needs besides the build, at one version of ``videos`` and of the level's
    table; kept between searches until either moves on."""

    versions: tuple[int, int]
    #: The current markers, with the videos' URIs.
    markers: pa.Table
    #: The build's rows still current, as a bitmap for faiss, or None when all are.
    valid_bits: np.ndarray | None
    stale_rows: int
    #: Rows written since the build, of current markers the build does not hold: in memory
    #: (``recent_rows`` and their unit vectors), or as a dataset to read at each search.
    recent_rows: pa.Table | None
    recent_vectors: np.ndarray | None
    recent_dataset: Any


def _search_state(index: IndexSnapshot, loaded: Loaded) -> SearchState:
    """The current :class:`SearchState`: reused while neither table has a new version (the Delta
    logs are read incrementally), made again otherwise."""
    tables = loaded.tables
    for name in ("videos", loaded.level.table):  # markers first: rows are committed before the marker naming them
        if name in tables:
            tables[name].update_incremental()
        else:
            tables[name] = index._delta(name)
    versions = (int(tables["videos"].version()), int(tables[loaded.level.table].version()))
    cached = loaded.state
    if cached is not None and cached.versions == versions:
        return cached
    markers = delta_dataset(tables["videos"], index.storage_options).to_table(columns=["video_id", "run_id", "uri"])
    current = _joined_keys(markers.select(["video_id", "run_id"]))
    still = pc.is_in(loaded.covered_keys, value_set=current).to_numpy(zero_copy_only=False)
    valid = still[loaded.row_marker]
    stale = int(valid.size - np.count_nonzero(valid))
    bits = np.packbits(valid, bitorder="little") if stale else None
    recent = _recent_rows(tables[loaded.level.table], loaded, current, index.storage_options)
    rows = vectors = None
    if recent is not None and recent.count_rows() <= RECENT_IN_MEMORY_ROWS:
        table = recent.to_table(columns=[*loaded.level.match_columns, "embedding"])
        complete = pc.fill_null(pc.equal(pc.list_value_length(table.column("embedding")), EMBEDDING_DIM), False)
        table = table.filter(complete)
        matrix = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        matrix = matrix.reshape(-1, EMBEDDING_DIM)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors = (matrix / np.where(norms > 0, norms, 1)).astype(np.float16)
        rows, recent = table.drop_columns(["embedding"]), None
    state = SearchState(versions, markers, bits, stale, rows, vectors, recent)
    loaded.state = state
    return state


def current_markers(index: IndexSnapshot, loaded: Loaded) -> pa.Table:
    """The current ``videos`` markers (``video_id, run_id, uri``), as searches keep them."""
    return _search_state(index, loaded).markers


@dataclass(frozen=True)
class AnnAnswer:
    """The build's candidates, those of the rows written since it, and what is left to read."""

    #: Candidate rows (the level's match columns plus score), at most 2k.
    candidates: pa.Table
    #: Rows written since the build too many to keep in memory: a dataset to score exactly, or None.
    recent_dataset: Any
    #: Rows written since the build scored here (from memory).
    recent_scored: int
    #: Build rows masked out: their marker has moved on.
    stale_rows: int
    #: The current ``videos`` markers, with the videos' URIs.
    markers: pa.Table


def search(index: IndexSnapshot, loaded: Loaded, query: np.ndarray, k: int, nprobe: int | None = None) -> AnnAnswer:
    """The ``k`` best current rows of the build and of the rows written since it (kept in
    memory) for the unit vector ``query``."""
    import faiss

    state = _search_state(index, loaded)
    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe or loaded.info.nprobe
    if state.valid_bits is not None:
        params.sel = faiss.IDSelectorBitmap(loaded.ann.ntotal, faiss.swig_ptr(state.valid_bits))
    scores, ids = loaded.ann.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    found = ids[0] >= 0
    picked = loaded.rows.take(pa.array(ids[0][found])).select(list(loaded.level.match_columns))
    parts = [picked.append_column("score", pa.array(scores[0][found], pa.float32()))]
    scored = 0
    if state.recent_rows is not None and state.recent_vectors is not None and state.recent_rows.num_rows:
        recent_scores = (state.recent_vectors.astype(np.float32) @ query).astype(np.float32)
        scored = len(recent_scores)
        keep = np.argsort(-recent_scores)[:k]
        parts.append(state.recent_rows.take(pa.array(keep)).append_column("score", pa.array(recent_scores[keep], pa.float32())))
    candidates = pa.concat_tables(parts)
    return AnnAnswer(candidates, state.recent_dataset, scored, state.stale_rows, state.markers)


def _recent_rows(table: Any, loaded: Loaded, current: pa.Array, storage_options: dict[str, str] | None) -> Any:
    """The rows the build does not hold whose markers are current: a dataset over the
    data files written since the build (runs' commits, and compactions' rewrites, whose rows
    the build may hold already: those are filtered out by marker), or None."""
    import pyarrow.dataset as pads

    uncovered = current.filter(pc.invert(pc.is_in(current, value_set=loaded.covered_keys)))
    if len(uncovered) == 0:
        return None
    # The file list first (from the Delta log, no file opened): most searches find none new.
    if all(posixpath.basename(uri) in loaded.files for uri in table.file_uris()):
        return None
    dataset = delta_dataset(table, storage_options)
    fragments = [f for f in dataset.get_fragments() if posixpath.basename(f.path) not in loaded.files]
    since = pads.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    return since.filter(_row_key().isin(uncovered))


def stored_embedding(loaded: Loaded, markers: pa.Table, video_id: str, frame: int) -> np.ndarray | None:
    """The vector the build holds for keyframe ``(video_id, frame)`` if its row is current
    (float16 precision), else ``None``."""
    rows = loaded.rows
    where = np.flatnonzero(
        pc.and_(pc.equal(rows.column("video_id"), video_id), pc.equal(rows.column("frame"), frame))
        .to_numpy(zero_copy_only=False)
    )
    mine = markers.filter(pc.equal(markers.column("video_id"), video_id)).select(["video_id", "run_id"])
    current = set(_joined_keys(mine).to_pylist())
    for row in where.tolist():
        key = loaded.covered_keys[int(loaded.row_marker[row])].as_py()
        if key in current:
            if not getattr(loaded.ann, "direct_map", None) or loaded.ann.direct_map.no():
                loaded.ann.make_direct_map()
            return np.asarray(loaded.ann.reconstruct(int(row)), np.float32)
    return None


__all__ = ["LEVELS", "AnnAnswer", "Level", "BuildInfo", "FOLDER", "MIN_ROWS", "Loaded", "build", "load", "search"]
