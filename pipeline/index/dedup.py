"""Near-duplicate shots and videos across an index (``vindex dedup``), from the stored signals.

Two shots of different videos are duplicates when they show the same footage: re-encoded at
another bitrate or size, cropped a little, brightened or darkened, mirrored, a little faster or
slower, with a logo or subtitles burned in, or cut out of a longer video. Nothing is decoded:
the shots' stored embeddings and luma layouts are compared (:func:`pair_similarity`).

How (figures in docs/dedup.md):

1. candidates: each shot not yet grouped asks for its :data:`CANDIDATES` nearest shots by
   embedding cosine, exactly (faiss flat inner product) up to :data:`EXACT_MAX_ROWS` shots,
   above that from a faiss inverted-file index over the vectors reduced to
   :data:`REDUCED_DIM` dimensions (PCA); the search, and the scores of step 2, run in this
   process or, with a :class:`Spread` (``vindex dedup --ray``), in Ray tasks over parts of
   whole blocks, with the same results;
2. a candidate pair of shots of different videos whose :func:`pair_similarity` is at least the
   threshold is a duplicate pair, and so is one that scores at least the threshold less
   :data:`SEQUENCE_SLACK` where the shots just before both, or just after both, are a
   duplicate pair by their own score (:func:`sequence_similarity`: the footage runs on in the
   same order in both videos, so a shot cut differently in the copy still finds its original);
3. groups: every member of a group is a duplicate of the group's representative, its best
   copy (most pixels, then first indexed). Shots not yet grouped first join the earlier group
   whose representative they are most like; the rest are grouped among themselves: taken best
   copies first, a shot that duplicates no representative chosen before it becomes one, and
   each other shot joins the representative it is most like. So a chain of look-alikes, each
   like the next, never makes one group, and group ids and representatives stay put as shots
   join;
4. videos: a video is a duplicate of the video whose footage makes up the largest share of its
   shots' duration (a shot counted at most as long as the footage it is grouped with), when
   that share is at least :data:`VIDEO_SHARE`; video groups are the
   connected components of those relations, the longest video their representative.

Every current shot and video has one row in the ``duplicates`` table (a shot with no duplicate
is a group of one, its own representative), so a later run knows which shots it has seen: a run
after new videos are indexed compares only the new shots (and those of videos indexed again)
with the index, and rewrites the groups they changed. Rows of videos since re-indexed or removed
are dropped; a group that loses its representative elects another. ``full=True`` recomputes
everything, as does a run with another threshold than the rows hold.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import IndexError_
from pipeline.index.schemas import DUPLICATES, DUPLICATES_TABLE, table_uri
from pipeline.index.snapshot import Snapshot
from pipeline.algorithms.frame_stats import LAYOUT_FEATURES, LAYOUT_GRID
from pipeline.models.spec import EMBEDDING_DIM

log = logging.getLogger(__name__)

#: Default threshold of :func:`sequence_similarity` for two shots to be duplicates. Chosen on
#: the generated corpus of benchmarks/dedup_quality.py (docs/dedup.md): precision 0.989, recall
#: 0.906 over every alteration; 0.93 lets in other takes of a place, 0.95 loses burned-in logos.
DEFAULT_THRESHOLD = 0.94
#: How far below the layout correlation the embedding cosine may be in :func:`pair_similarity`:
#: a pair reaches threshold T where its layouts correlate at T or more and its embeddings' cosine
#: is at least T - this.
EMBEDDING_SLACK = 0.08
#: How far below the threshold a pair may score and still be a duplicate pair when the shots
#: just before both, or just after both, reach the threshold by themselves (the footage runs on
#: in the same order in both videos). On benchmarks/dedup_quality.py at 0.94, the pairs so
#: supported score 0.71 and up when they are duplicates and 0.47 at most when they are not;
#: this is set between (docs/dedup.md).
SEQUENCE_SLACK = 0.34
#: Nearest shots asked for per shot. A shot with more copies than this still joins all of them
#: through the copies' own neighbours.
CANDIDATES = 16
#: Up to this many shots the candidates are exact (a flat inner-product search).
EXACT_MAX_ROWS = 50_000
#: Dimensions the vectors are reduced to (PCA) for the inverted-file search above that.
REDUCED_DIM = 128
#: Shots searched for at once (exact search: a block of 1,024 x 50,000 cosines, 200 MB).
QUERY_BATCH = 1024
#: Lists probed per shot in the inverted-file search (1 list per sqrt(rows)).
NPROBE = 16
#: A video is a duplicate of another when at least this share of its shots' duration is footage of it.
VIDEO_SHARE = 0.5
#: A luma layout whose spread (norm less its mean, 0-255 scale) is below this is flat (a black
#: or evenly lit picture): it says nothing, and the pair is compared by its embeddings alone.
FLAT_LAYOUT = 1.0
#: Rows of the shots table read per record batch.
BATCH_ROWS = 8192
#: Namespace of group ids: uuid5 of the representative's level, video, shot and index run.
GROUP_NAMESPACE = uuid.UUID("6c1f3c1e-6d53-4a53-9f60-0d5a0b1d7e21")

SHOT_COLUMNS = ["video_id", "run_id", "shot_index", "start_s", "end_s", "embedding", "luma_layout"]


@dataclass
class Shots:
    """The current shots of an index as arrays, row ``i`` of each being shot ``i``."""

    video_id: np.ndarray  # object (str)
    video_run_id: np.ndarray  # object (str): the index run whose shots row this is
    shot_index: np.ndarray  # int64
    duration_s: np.ndarray  # float64
    pixels: np.ndarray  # int64: the video's width * height
    embedding: np.ndarray  # float16 [n, EMBEDDING_DIM], unit rows (zeros: no embedding)
    #: float16 [n, LAYOUT_FEATURES]: the luma layout less its mean, unit rows (zeros: none, or flat)
    layout: np.ndarray

    def __len__(self) -> int:
        return len(self.video_id)

    @property
    def has_embedding(self) -> np.ndarray:
        return np.asarray(np.abs(self.embedding).max(axis=1) > 0) if len(self) else np.zeros(0, bool)

    def keys(self) -> list[tuple[str, int]]:
        return list(zip(self.video_id.tolist(), self.shot_index.tolist()))

    @classmethod
    def for_scores(cls, embedding: np.ndarray, layout: np.ndarray, neighbours: tuple[np.ndarray, np.ndarray]) -> Shots:
        """Shots holding only what :func:`sequence_similarity` reads (the embeddings, the
        layouts, the neighbours), the other columns empty: what a worker scoring pairs gets."""
        empty = np.zeros(0, np.int64)
        shots = cls(np.zeros(0, object), np.zeros(0, object), empty, np.zeros(0), empty, embedding, layout)
        shots.__dict__["neighbours"] = neighbours  # the cached_property's value, given
        return shots

    @cached_property
    def video_number(self) -> np.ndarray:
        """int64 [n]: each shot's video as a number (its rank among the video ids), the same
        for shots of the same video: compared and shipped to workers cheaper than the ids."""
        if not len(self):
            return np.zeros(0, np.int64)
        _, video = np.unique(self.video_id.astype(str), return_inverse=True)
        return np.asarray(video, np.int64).reshape(-1)

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        """int64 [n] twice: the row of the same video's shot just before each shot (by
        ``shot_index``) and of the one just after, -1 where there is none."""
        n = len(self)
        before, after = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        if n < 2:
            return before, after
        video = self.video_number
        order = np.lexsort((self.shot_index, video))
        same = video[order[1:]] == video[order[:-1]]
        before[order[1:][same]] = order[:-1][same]
        after[order[:-1][same]] = order[1:][same]
        return before, after


def shots_from_arrays(
    video_id: list[str],
    shot_index: list[int],
    embedding: np.ndarray,
    *,
    video_run_id: list[str] | None = None,
    duration_s: np.ndarray | None = None,
    pixels: np.ndarray | None = None,
    layout: np.ndarray | None = None,
) -> Shots:
    """:class:`Shots` from plain arrays: embeddings normalised to unit length, luma layouts
    (:data:`~pipeline.algorithms.frame_stats.LAYOUT_FEATURES` values, zeros for none) less their
    mean and normalised."""
    n = len(video_id)
    vectors = np.asarray(embedding, np.float32).reshape(n, -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    layouts = np.zeros((n, LAYOUT_FEATURES), np.float32) if layout is None else np.asarray(layout, np.float32).reshape(n, -1)
    layouts = layouts - layouts.mean(axis=1, keepdims=True)
    spread = np.linalg.norm(layouts, axis=1, keepdims=True)
    return Shots(
        video_id=np.asarray(video_id, dtype=object),
        video_run_id=np.asarray(video_run_id if video_run_id is not None else [""] * n, dtype=object),
        shot_index=np.asarray(shot_index, np.int64),
        duration_s=np.ones(n) if duration_s is None else np.asarray(duration_s, np.float64),
        pixels=np.ones(n, np.int64) if pixels is None else np.asarray(pixels, np.int64),
        embedding=(vectors / np.where(norms > 0, norms, 1)).astype(np.float16),
        layout=np.where(spread > FLAT_LAYOUT, layouts / np.where(spread > 0, spread, 1), 0).astype(np.float16),
    )


def read_shots(index: Snapshot) -> Shots:
    """The index's current shots (those its ``videos`` rows name, of ``ok`` videos)."""
    videos = index.read("videos", columns=["video_id", "status", "width", "height"]).to_pylist()
    pixels_of = {v["video_id"]: (v["width"] or 0) * (v["height"] or 0) for v in videos if v["status"] == "ok"}
    dataset = index.dataset("shots")
    total = dataset.count_rows()
    embedding = np.zeros((total, EMBEDDING_DIM), np.float16)
    layout = np.zeros((total, LAYOUT_FEATURES), np.float32)
    columns: dict[str, list[Any]] = {"video_id": [], "run_id": [], "shot_index": [], "duration_s": []}
    count = 0
    for batch in dataset.to_batches(columns=SHOT_COLUMNS, batch_size=BATCH_ROWS):
        keep = pc.is_in(batch.column("video_id"), pa.array(list(pixels_of), pa.string()))
        batch = batch.filter(keep)
        n = batch.num_rows
        if not n:
            continue
        columns["video_id"] += batch.column("video_id").to_pylist()
        columns["run_id"] += batch.column("run_id").to_pylist()
        columns["shot_index"] += batch.column("shot_index").to_pylist()
        columns["duration_s"] += pc.subtract(batch.column("end_s"), batch.column("start_s")).to_pylist()
        embedding[count : count + n] = _matrix(batch.column("embedding"), EMBEDDING_DIM)
        layout[count : count + n] = _matrix(batch.column("luma_layout"), LAYOUT_FEATURES)
        count += n
    return shots_from_arrays(
        columns["video_id"],
        columns["shot_index"],
        embedding[:count],
        video_run_id=columns["run_id"],
        duration_s=np.nan_to_num(np.asarray(columns["duration_s"], np.float64)),
        pixels=np.asarray([pixels_of[v] for v in columns["video_id"]], np.int64),
        layout=layout[:count],
    )


def _matrix(column: Any, width: int) -> np.ndarray:
    """A list column as a float32 matrix; rows that are null or of another length are zeros."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    out = np.zeros((len(lengths), width), np.float32)
    good = lengths == width
    if width and good.any():
        values = pc.filter(column, pa.array(good)).flatten().to_numpy(zero_copy_only=False)
        out[good] = np.asarray(values, np.float32).reshape(-1, width)
    return out


# --- similarity and candidates ----------------------------------------------------------------


def pair_similarity(shots: Shots, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Similarity of shots ``left[i]`` and ``right[i]``: their luma layouts' correlation (the
    better of the layout and its mirror image), capped by their embeddings' cosine plus
    :data:`EMBEDDING_SLACK`; the embeddings' cosine alone where either shot has no layout.

    The embedding says what is shown and holds through every change a copy goes through, but it
    cannot tell two takes of one place apart (0.93-0.98 between other takes in the benchmark
    corpus, as high as between copies); the layout says where light and dark lie in the picture,
    which another take or framing changes and a copy keeps (docs/dedup.md).
    """
    if len(left) == 0:
        return np.zeros(0, np.float32)
    a = shots.embedding[left].astype(np.float32)
    b = shots.embedding[right].astype(np.float32)
    cosine: np.ndarray = np.einsum("ij,ij->i", a, b)
    la = shots.layout[left].astype(np.float32)
    lb = shots.layout[right].astype(np.float32)
    rows, cols = LAYOUT_GRID
    mirrored = lb.reshape(-1, rows, cols)[:, :, ::-1].reshape(len(lb), -1)
    correlation = np.maximum(np.einsum("ij,ij->i", la, lb), np.einsum("ij,ij->i", la, mirrored))
    both = (np.abs(la).max(axis=1) > 0) & (np.abs(lb).max(axis=1) > 0) if len(la) else np.zeros(0, bool)
    combined: np.ndarray = np.where(both, np.minimum(correlation, cosine + EMBEDDING_SLACK), cosine)
    return combined.astype(np.float32)


def sequence_similarity(
    shots: Shots, left: np.ndarray, right: np.ndarray, threshold: float, slack: float = SEQUENCE_SLACK
) -> np.ndarray:
    """:func:`pair_similarity` of shots ``left[i]`` and ``right[i]``, raised to ``threshold``
    where it is at least ``threshold - slack`` and the shots just before both, or just after
    both, score ``threshold`` or more by themselves (float64: a raised score is ``threshold``
    itself).

    A copy keeps the order of its footage. Where vindex cut a shot differently in the copy and
    in the original (one shot of the copy showing part of one of the original's, whose picture
    moves, or two of them), the parts' layouts differ from the whole's, but the shots around
    them still match their counterparts one for one. Other takes of a place rarely line up
    so, shot after shot (docs/dedup.md).
    """
    score = pair_similarity(shots, left, right).astype(np.float64)
    near = np.flatnonzero((score >= threshold - slack) & (score < threshold))
    if slack <= 0 or len(near) == 0:
        return score
    supported = np.zeros(len(near), bool)
    for side in shots.neighbours:
        a, b = side[left[near]], side[right[near]]
        both = np.flatnonzero((a >= 0) & (b >= 0) & ~supported)
        if len(both):
            supported[both] = pair_similarity(shots, a[both], b[both]) >= threshold
    score[near[supported]] = threshold
    return score


def batched_similarity(
    shots: Shots,
    left: np.ndarray,
    right: np.ndarray,
    measure: Callable[[Shots, np.ndarray, np.ndarray], np.ndarray] = pair_similarity,
    batch_rows: int | None = None,
) -> np.ndarray:
    """``measure`` over many pairs, ``batch_rows`` (default :data:`BATCH_ROWS`) at a time (each
    pair's vectors are gathered: 5 KB). A pair's score depends only on its batch, so scores
    split at multiples of ``batch_rows`` are those of one pass."""
    if len(left) == 0:
        return np.zeros(0, np.float32)
    batch_rows = batch_rows or BATCH_ROWS
    return np.concatenate([
        measure(shots, left[start : start + batch_rows], right[start : start + batch_rows])
        for start in range(0, len(left), batch_rows)
    ])


@dataclass(frozen=True)
class Pairs:
    """Candidate pairs ``(left[i], right[i])`` of shot rows, ``left`` a queried shot."""

    left: np.ndarray
    right: np.ndarray

    def __len__(self) -> int:
        return len(self.left)


@dataclass(frozen=True)
class CandidateSearch:
    """What every block of a candidate search needs: the rows with an embedding (the searched
    shots), how many neighbours each query asks for (itself included), the cosine floor, and
    the index searched: a faiss index, the same serialised (``faiss.serialize_index``: uint8,
    for another process), or None for the exact search over ``usable``."""

    usable: np.ndarray  # int64
    k: int
    floor: float | None
    index: Any
    #: Queries searched at once (:data:`QUERY_BATCH`): a block's results depend only on its
    #: rows, so a search split at multiples of this finds exactly what one pass finds.
    query_rows: int

    def portable(self) -> CandidateSearch:
        """The same search with its faiss index serialised (the exact search as it is)."""
        import faiss

        if self.index is None or isinstance(self.index, np.ndarray):
            return self
        return replace(self, index=faiss.serialize_index(self.index))


class Spread(Protocol):
    """Runs the candidate search and the pair scores over parts of their queries and pairs,
    elsewhere than in this process (``pipeline.execution.dedup_spread``: on Ray's workers), with
    the same results as :func:`search_blocks` and :func:`batched_similarity` give in one pass."""

    def candidate_pairs(self, shots: Shots, search: CandidateSearch, queries: np.ndarray) -> Pairs: ...

    def sequence_similarity(self, shots: Shots, left: np.ndarray, right: np.ndarray, threshold: float) -> np.ndarray: ...

    def close(self) -> None:
        """Release what the spread holds for the shots (the run is over)."""


def candidate_pairs(
    shots: Shots,
    queries: np.ndarray,
    k: int = CANDIDATES,
    exact_max_rows: int = EXACT_MAX_ROWS,
    floor: float | None = None,
    spread: Spread | None = None,
) -> Pairs:
    """The ``k`` nearest shots (embedding cosine) of each shot in ``queries`` among all shots,
    other videos' only, those whose cosine is under ``floor`` left out: exact (blocked matrix
    products) up to ``exact_max_rows`` shots, else the neighbours found by a faiss inverted-file
    index over PCA-reduced vectors, their cosines then taken on the full vectors (PCA centres
    the vectors, so a reduced cosine says little about the full one where shots share a common
    direction, as real embeddings do). The index is built here; the search runs here, or over
    ``spread``'s workers."""
    usable = np.flatnonzero(shots.has_embedding)
    queries = np.intersect1d(queries, usable)
    if len(queries) == 0 or len(usable) < 2:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    k = min(k + 1, len(usable))
    if len(usable) <= exact_max_rows:
        search = CandidateSearch(usable, k, floor, None, QUERY_BATCH)
    else:
        search = CandidateSearch(usable, k, floor, _reduced_index(shots.embedding, usable), QUERY_BATCH)
    if spread is not None:
        return spread.candidate_pairs(shots, search, queries)
    return search_blocks(search, shots.embedding, shots.video_number, queries)


def search_blocks(search: CandidateSearch, embedding: np.ndarray, video: np.ndarray, queries: np.ndarray) -> Pairs:
    """The candidate pairs of ``queries`` (rows with an embedding, sorted), searched
    ``search.query_rows`` at a time: ``embedding`` is every shot's (float16), ``video`` every
    shot's video as a number (:attr:`Shots.video_number`)."""
    usable, k = search.usable, search.k
    if search.index is None:
        base = np.ascontiguousarray(embedding[usable], dtype=np.float32)

        def find(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            scores = vectors @ base.T
            found = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(usable) else np.tile(np.arange(len(usable)), (len(vectors), 1))
            return np.take_along_axis(scores, found, axis=1), found
    else:
        import faiss

        index = faiss.deserialize_index(search.index) if isinstance(search.index, np.ndarray) else search.index

        def find(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            _, found = index.search(vectors, k)
            neighbours = np.asarray(embedding[usable[np.maximum(found, 0)]], dtype=np.float32)
            return np.einsum("qd,qkd->qk", vectors, neighbours), found

    left, right = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, len(queries), search.query_rows):
        rows = queries[start : start + search.query_rows]
        scores, found = find(np.ascontiguousarray(embedding[rows], dtype=np.float32))
        # Each query's neighbours in row order, not in the order the search returned them:
        # faiss orders neighbours at equal reduced distance by its own threads' merge, so a
        # worker process with one thread and the driver with two listed them differently.
        order = np.argsort(found, axis=1, kind="stable")
        scores, found = np.take_along_axis(scores, order, axis=1), np.take_along_axis(found, order, axis=1)
        ok = found >= 0
        if search.floor is not None:
            ok &= scores >= search.floor
        q = np.repeat(rows, k).reshape(len(rows), k)[ok]
        r = usable[found[ok]]
        other_video = video[q] != video[r]
        left.append(q[other_video])
        right.append(r[other_video])
    return Pairs(np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64))


def whole_blocks(count: int, block: int, parts: int) -> list[slice]:
    """``range(count)`` cut into at most ``parts`` slices of near-equal numbers of whole
    ``block``-sized blocks, in order (the last block may be short), none empty."""
    blocks = -(-count // block)
    parts = max(1, min(parts, blocks))
    bounds = [round(i * blocks / parts) * block for i in range(parts + 1)]
    return [slice(a, min(b, count)) for a, b in zip(bounds, bounds[1:]) if a < min(b, count)]


def _reduced_index(vectors: np.ndarray, rows: np.ndarray) -> Any:
    """A faiss index of ``vectors[rows]`` (unit rows, any float type; id i is ``rows[i]``'s):
    PCA to :data:`REDUCED_DIM` and normalised again (reduced cosines), then inverted lists (one
    per sqrt(rows)) searched by inner product, :data:`NPROBE` lists a query. Fed in batches, so
    no float32 copy of every vector is made (5 GB at 1M shots)."""
    import faiss

    n = len(rows)
    lists = max(1, min(int(np.sqrt(n)), n // 40))
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(n, max(40 * lists, 20_000)), replace=False))
    pca = faiss.PCAMatrix(vectors.shape[1], REDUCED_DIM)
    quantiser = faiss.IndexFlatIP(REDUCED_DIM)
    ivf = faiss.IndexIVFFlat(quantiser, REDUCED_DIM, lists, faiss.METRIC_INNER_PRODUCT)
    index = faiss.IndexPreTransform(ivf)
    index.prepend_transform(faiss.NormalizationTransform(REDUCED_DIM, 2.0))
    index.prepend_transform(pca)
    index.train(np.ascontiguousarray(vectors[rows[sample]], dtype=np.float32))
    for start in range(0, n, BATCH_ROWS):
        index.add(np.ascontiguousarray(vectors[rows[start : start + BATCH_ROWS]], dtype=np.float32))
    ivf.nprobe = min(NPROBE, lists)
    return index


# --- groups -----------------------------------------------------------------------------------


class _Components:
    """Union-find over row numbers."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Grouping:
    """Shot groups: per shot row its group id, the group's representative row, and the groups
    this computation created or changed."""

    group_of: np.ndarray  # object (str)
    representative: dict[str, int]  # group id -> row
    changed: set[str] = field(default_factory=set)

    def members(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for row, group in enumerate(self.group_of.tolist()):
            out.setdefault(group, []).append(row)
        return out


def group_id_for(level: str, video_id: str, unit: int | None, video_run_id: str) -> str:
    return str(uuid.uuid5(GROUP_NAMESPACE, f"{level}:{video_id}:{unit if unit is not None else ''}:{video_run_id}"))


def _quality_key(shots: Shots, row: int) -> tuple[Any, ...]:
    """Orders a group's copies, the best first: most pixels, then first indexed (index run ids
    are time-ordered), then longest, then by video and shot for a fixed choice."""
    return (-int(shots.pixels[row]), shots.video_run_id[row], -float(shots.duration_s[row]), shots.video_id[row], int(shots.shot_index[row]))


def _best(shots: Shots, rows: list[int]) -> int:
    """The group's best copy (see :func:`_quality_key`)."""
    return min(rows, key=lambda r: _quality_key(shots, r))


def group_shots(
    shots: Shots,
    threshold: float,
    earlier: Mapping[tuple[str, int, str], tuple[str, bool]] | None = None,
    *,
    k: int = CANDIDATES,
    exact_max_rows: int = EXACT_MAX_ROWS,
    similarity: Callable[[Shots, np.ndarray, np.ndarray], np.ndarray] | None = None,
    spread: Spread | None = None,
) -> Grouping:
    """Group the duplicate shots of ``shots``: every member of a group is a duplicate of its
    representative (similarity at least ``threshold``), so a chain of look-alikes, each like
    the next, never makes one group.

    ``earlier`` maps ``(video_id, shot_index, video_run_id)`` to the ``(group_id,
    is_representative)`` an earlier run gave it; those shots keep their groups and are not
    compared with each other again. Every other shot is compared with all shots: it joins the
    earlier group whose representative it is most like, if any reaches ``threshold``; the
    rest are grouped among themselves: taken best copies first, a shot that duplicates no
    representative chosen before it becomes one, and every other shot joins the representative
    it is most like. ``similarity`` scores pairs (default :func:`sequence_similarity` at
    ``threshold``). With ``spread``, the candidate search and the default pair scores run on
    its workers (the same groups); the index is built and the groups made here.
    """
    earlier = earlier or {}
    measure = similarity or partial(sequence_similarity, threshold=threshold)

    def score(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        if spread is not None and similarity is None:
            return spread.sequence_similarity(shots, left, right, threshold)
        return batched_similarity(shots, left, right, measure)

    n = len(shots)
    keys = list(zip(shots.video_id.tolist(), shots.shot_index.tolist(), shots.video_run_id.tolist()))
    group_of = np.empty(n, dtype=object)
    representative: dict[str, int] = {}
    members: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        if key in earlier:
            group, is_rep = earlier[key]
            group_of[row] = group
            members.setdefault(group, []).append(row)
            if is_rep:
                representative[group] = row
    changed: set[str] = set()
    for group, rows in members.items():
        if group not in representative:  # its representative has gone (re-indexed or removed)
            representative[group] = _best(shots, rows)
            changed.add(group)
    queries = np.flatnonzero(group_of == None)  # noqa: E711 - elementwise over an object array
    # A pair scores at most its cosine plus the slack, and counts from the threshold less the
    # sequence slack: pairs further below are never scored.
    floor = threshold - SEQUENCE_SLACK - EMBEDDING_SLACK - 1e-3 if similarity is None else None
    pairs = candidate_pairs(shots, queries, k=k, exact_max_rows=exact_max_rows, floor=floor, spread=spread)
    # 1. new shots join earlier groups, each the one whose representative it is most like.
    if members:
        joining: dict[int, set[str]] = {}
        for a, b in zip(pairs.left.tolist(), pairs.right.tolist()):
            if group_of[b] is not None:
                joining.setdefault(a, set()).add(group_of[b])
        asks = [(a, g) for a, groups in sorted(joining.items()) for g in sorted(groups)]
        if asks:
            left = np.array([a for a, _ in asks])
            right = np.array([representative[g] for _, g in asks])
            best: dict[int, tuple[float, str]] = {}
            for (a, group), value, rep in zip(asks, score(left, right).tolist(), right.tolist()):
                if value >= threshold and shots.video_id[a] != shots.video_id[rep] and value > best.get(a, (-1.0, ""))[0]:
                    best[a] = (value, group)
            for a, (_, group) in best.items():
                group_of[a] = group
                members[group].append(a)
                changed.add(group)
    # 2. the others among themselves: best copies first, a shot that duplicates no representative
    #    chosen before it becomes one; then each other shot joins the representative it is most like.
    fresh = [r for r in queries.tolist() if group_of[r] is None]
    if fresh:
        is_fresh = np.zeros(n, bool)
        is_fresh[fresh] = True
        between = is_fresh[pairs.left] & is_fresh[pairs.right]
        left, right = pairs.left[between], pairs.right[between]
        values = score(left, right)
        good = values >= threshold
        neighbours: dict[int, dict[int, float]] = {}
        for a, b, value in zip(left[good].tolist(), right[good].tolist(), values[good].tolist()):
            neighbours.setdefault(a, {})[b] = max(value, neighbours.get(a, {}).get(b, value))
            neighbours.setdefault(b, {})[a] = max(value, neighbours.get(b, {}).get(a, value))
        leaders: set[int] = set()
        for row in sorted(fresh, key=lambda r: _quality_key(shots, r)):
            if not any(other in leaders and shots.video_id[other] != shots.video_id[row] for other in neighbours.get(row, {})):
                leaders.add(row)
                group = group_id_for("shot", shots.video_id[row], int(shots.shot_index[row]), shots.video_run_id[row])
                group_of[row] = group
                representative[group] = row
                changed.add(group)
        for row in fresh:
            if row in leaders:
                continue
            options = [(value, other) for other, value in neighbours.get(row, {}).items()
                       if other in leaders and shots.video_id[other] != shots.video_id[row]]
            best_value, leader = max(options, key=lambda o: (o[0], -o[1]))
            group_of[row] = group_of[leader]
    return Grouping(group_of, representative, changed)


# --- videos -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoGroup:
    group_id: str
    video_id: str
    video_run_id: str
    share: float  # of the video's shot duration that is footage of the representative
    is_representative: bool
    size: int


def group_videos(shots: Shots, grouping: Grouping, video_share: float = VIDEO_SHARE) -> list[VideoGroup]:
    """Video groups from shot groups: a video is a duplicate of the video whose footage is the
    largest share of its shots' duration, when that share is at least ``video_share``; a shot
    counts at most as long as that video's longest shot in its group."""
    videos = sorted(set(shots.video_id.tolist()))
    position = {v: i for i, v in enumerate(videos)}
    total = np.zeros(len(videos))
    np.add.at(total, [position[v] for v in shots.video_id.tolist()], shots.duration_s)
    run_of = dict(zip(shots.video_id.tolist(), shots.video_run_id.tolist()))
    pixels_of = dict(zip(shots.video_id.tolist(), shots.pixels.tolist()))
    # Per group of two or more shots, per video in it: the longest of its shots there.
    videos_in: dict[str, dict[str, float]] = {}
    for group, rows in grouping.members().items():
        if len(rows) > 1:
            longest = videos_in.setdefault(group, {})
            for r in rows:
                longest[shots.video_id[r]] = max(longest.get(shots.video_id[r], 0.0), float(shots.duration_s[r]))
    # Per video, per other video: the duration of its shots grouped with that video's footage,
    # each counted at most as long as that footage (a shot cut longer in one video, over two
    # shots of footage from two sources, shows no more of either than its shot there holds).
    shared: dict[str, dict[str, float]] = {v: {} for v in videos}
    for video, group, duration in zip(shots.video_id.tolist(), grouping.group_of.tolist(), shots.duration_s.tolist()):
        for other, held in videos_in.get(group, {}).items():
            if other != video:
                shared[video][other] = shared[video].get(other, 0.0) + min(duration, held)
    shares = {
        v: {o: (d / total[position[v]] if total[position[v]] > 0 else 0.0) for o, d in found.items()}
        for v, found in shared.items()
    }
    components = _Components(len(videos))
    for video, found in shares.items():
        if found:
            other, share = max(found.items(), key=lambda item: (item[1], item[0]))
            if share >= video_share:
                components.union(position[video], position[other])
    members: dict[int, list[str]] = {}
    for video in videos:
        members.setdefault(components.find(position[video]), []).append(video)
    out = []
    for group_videos_ in members.values():
        rep = min(group_videos_, key=lambda v: (-total[position[v]], -pixels_of[v], v))
        group = group_id_for("video", rep, None, run_of[rep])
        for video in group_videos_:
            share = 1.0 if video == rep else shares[video].get(rep, 0.0)
            out.append(VideoGroup(group, video, run_of[video], share, video == rep, len(group_videos_)))
    return out


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DedupSummary:
    run_id: str
    shots: int
    compared: int  # shots compared with the index in this run (new, or of videos indexed again)
    shot_groups: int  # groups of two or more shots
    duplicate_shots: int  # shots in such groups that are not the representative
    video_groups: int
    duplicate_videos: int
    full: bool
    seconds: float


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("dedup-%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def read_duplicates(index: Snapshot) -> pa.Table:
    """The index's ``duplicates`` table (empty with its schema where `vindex dedup` never ran)."""
    if not index.exists(DUPLICATES_TABLE):
        return DUPLICATES.empty_table()
    return index.read(DUPLICATES_TABLE)


def write_duplicates(index: Snapshot, table: pa.Table) -> None:
    """Replace the ``duplicates`` table's rows with ``table``, in one Delta commit (created on
    the first run)."""
    from pipeline.index.writer import TableWriter

    writer = TableWriter(index.uri, DUPLICATES_TABLE, DUPLICATES, index.storage_options, keep_open=False)
    writer.create()
    writer.overwrite(table.cast(DUPLICATES))


def _earlier_shot_groups(rows: pa.Table, threshold: float) -> dict[tuple[str, int, str], tuple[str, bool]] | None:
    """Shot groups of the table's rows, or None where they were made with another threshold."""
    shot_rows = rows.filter(pc.equal(rows.column("level"), "shot")).to_pylist()
    if any(abs(float(r["threshold"]) - threshold) > 1e-6 for r in shot_rows):
        return None
    return {(r["video_id"], r["shot_index"], r["video_run_id"]): (r["group_id"], bool(r["is_representative"])) for r in shot_rows}


def dedup_index(
    index: Snapshot,
    threshold: float = DEFAULT_THRESHOLD,
    *,
    full: bool = False,
    exact_max_rows: int = EXACT_MAX_ROWS,
    fs_options: dict[str, Any] | None = None,
    spread_for: Callable[[Shots], Spread] | None = None,
) -> DedupSummary:
    """Group the index's duplicate shots and videos and commit them to its ``duplicates`` table;
    only shots not yet in the table are compared, unless ``full``. ``spread_for`` makes, for
    the shots read, where the candidate search and the pair scores run
    (``pipeline.execution.dedup_spread.ray_spread``: on Ray's workers), with the same groups;
    it is closed after the grouping."""
    import time

    from pipeline.index.location import check_table_folder

    if not 0.0 < threshold <= 1.0:
        raise IndexError_(f"--threshold must be in (0, 1], got {threshold}")
    started = time.perf_counter()
    check_table_folder(table_uri(index.uri, DUPLICATES_TABLE), DUPLICATES_TABLE, dict(fs_options or {}))
    run_id = new_run_id()
    shots = read_shots(index)
    before = read_duplicates(index)
    earlier = None if full else _earlier_shot_groups(before, threshold)
    if earlier is None and before.num_rows and not full:
        log.info("dedup: the table's groups were made with another threshold: everything is compared again")
    spread = spread_for(shots) if spread_for is not None else None
    try:
        grouping = group_shots(shots, threshold, earlier or {}, exact_max_rows=exact_max_rows, spread=spread)
    finally:
        if spread is not None:
            spread.close()
    videos = group_videos(shots, grouping)
    table = duplicates_rows(shots, grouping, videos, before if earlier else None, threshold, run_id)
    write_duplicates(index, table)
    sizes = {g: len(rows) for g, rows in grouping.members().items()}
    return DedupSummary(
        run_id=run_id,
        shots=len(shots),
        compared=len(shots) - sum(1 for k in zip(shots.video_id, shots.shot_index, shots.video_run_id) if k in (earlier or {})),
        shot_groups=sum(1 for s in sizes.values() if s > 1),
        duplicate_shots=sum(s - 1 for s in sizes.values() if s > 1),
        video_groups=len({v.group_id for v in videos if v.size > 1}),
        duplicate_videos=sum(1 for v in videos if v.size > 1 and not v.is_representative),
        full=earlier is None,
        seconds=time.perf_counter() - started,
    )


def duplicates_rows(
    shots: Shots,
    grouping: Grouping,
    videos: list[VideoGroup],
    before: pa.Table | None,
    threshold: float,
    run_id: str,
) -> pa.Table:
    """The table's rows: every shot's and video's. Rows of groups this run did not change are
    kept as they were (their ``run_id`` names the run that wrote them); the others are written
    with similarities to their representative."""
    kept: dict[tuple[str, int], dict[str, Any]] = {}
    if before is not None:
        for row in before.filter(pc.equal(before.column("level"), "shot")).to_pylist():
            kept[(row["video_id"], row["shot_index"])] = row
    old_rows: list[dict[str, Any]] = []
    written: dict[str, list[Any]] = {"member": [], "rep": [], "group": [], "size": []}
    for group, member_rows in grouping.members().items():
        if group not in grouping.changed:
            reused = [kept.get((shots.video_id[r], int(shots.shot_index[r]))) for r in member_rows]
            if all(old is not None and old["group_id"] == group and old["group_size"] == len(member_rows) for old in reused):
                old_rows.extend(old for old in reused if old is not None)
                continue
        written["member"] += member_rows
        written["rep"] += [grouping.representative[group]] * len(member_rows)
        written["group"] += [group] * len(member_rows)
        written["size"] += [len(member_rows)] * len(member_rows)
    member = np.asarray(written["member"], np.int64)
    rep = np.asarray(written["rep"], np.int64)
    similarity = np.ones(len(member), np.float32)
    others = member != rep
    measure = partial(sequence_similarity, threshold=threshold)
    similarity[others] = np.minimum(batched_similarity(shots, rep[others], member[others], measure), 1.0)
    count = len(member)
    fresh = pa.table(
        {
            "group_id": written["group"],
            "level": ["shot"] * count,
            "video_id": shots.video_id[member].tolist() if count else [],
            "shot_index": shots.shot_index[member],
            "similarity": similarity,
            "is_representative": ~others,
            "group_size": written["size"],
            "video_run_id": shots.video_run_id[member].tolist() if count else [],
            "threshold": np.full(count, threshold, np.float32),
            "run_id": [run_id] * count,
        },
        schema=DUPLICATES,
    )
    video_rows = [
        {
            "group_id": video.group_id, "level": "video", "video_id": video.video_id, "shot_index": None,
            "similarity": video.share, "is_representative": video.is_representative, "group_size": video.size,
            "video_run_id": video.video_run_id, "threshold": threshold, "run_id": run_id,
        }
        for video in videos
    ]
    table = pa.concat_tables([
        fresh, pa.Table.from_pylist(old_rows, schema=DUPLICATES), pa.Table.from_pylist(video_rows, schema=DUPLICATES)
    ])
    return table.sort_by(
        [("level", "ascending"), ("group_id", "ascending"), ("video_id", "ascending"), ("shot_index", "ascending")]
    )


__all__ = [
    "CANDIDATES",
    "CandidateSearch",
    "EMBEDDING_SLACK",
    "DEFAULT_THRESHOLD",
    "EXACT_MAX_ROWS",
    "SEQUENCE_SLACK",
    "VIDEO_SHARE",
    "DedupSummary",
    "Grouping",
    "Pairs",
    "Shots",
    "Spread",
    "VideoGroup",
    "batched_similarity",
    "candidate_pairs",
    "current_duplicates",
    "describe_groups",
    "dedup_index",
    "duplicates_rows",
    "group_shots",
    "group_videos",
    "group_id_for",
    "pair_similarity",
    "read_duplicates",
    "read_shots",
    "search_blocks",
    "sequence_similarity",
    "shots_from_arrays",
    "unique_shots",
    "whole_blocks",
    "write_duplicates",
]


# --- readers ----------------------------------------------------------------------------------


def current_duplicates(index: Snapshot, level: str = "shot") -> pa.Table:
    """The ``duplicates`` rows of ``level`` that describe the index's current shots or videos
    (rows of videos indexed again or removed since the last `vindex dedup` left out)."""
    from pipeline.errors import ConfigError

    if not index.exists(DUPLICATES_TABLE):
        raise ConfigError(f"{index.uri} has no duplicates table: run `vindex dedup {index.uri}` first")
    rows = index.read(DUPLICATES_TABLE, filter=pc.field("level") == level)
    markers = index.read("videos", columns=["video_id", "run_id"], filter=pc.field("status") == "ok")
    current = markers.rename_columns(["video_id", "video_run_id"])
    return rows.join(current, ["video_id", "video_run_id"], join_type="inner")


def unique_shots(index: Snapshot, units: pa.Table) -> pa.Table:
    """The rows of ``units`` (shots: ``video_id``, ``shot_index``, ``run_id``) that are not a
    duplicate of another shot: their group's representative, or in no group of the table yet."""
    rows = current_duplicates(index, "shot")
    duplicates = rows.filter(pc.invert(rows.column("is_representative"))).select(["video_id", "shot_index", "video_run_id"])
    dropped = duplicates.rename_columns(["video_id", "shot_index", "run_id"]).append_column(
        "_duplicate", pa.array(np.ones(duplicates.num_rows, bool))
    )
    joined = units.join(dropped, ["video_id", "shot_index", "run_id"], join_type="left outer")
    kept = joined.filter(pc.is_null(joined.column("_duplicate"))).drop_columns(["_duplicate"])
    return kept.select(units.column_names).sort_by([("video_id", "ascending"), ("shot_index", "ascending")])


def describe_groups(index: Snapshot, level: str, limit: int) -> list[str]:
    """Lines naming the largest ``limit`` groups of ``level`` with more than one member."""
    rows = current_duplicates(index, level)
    uris = dict(
        zip(*index.read("videos", columns=["video_id", "uri"]).to_pydict().values())
    )
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows.filter(pc.greater(rows.column("group_size"), 1)).to_pylist():
        groups.setdefault(row["group_id"], []).append(row)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]["group_id"]))
    lines = []
    for members in ordered[:limit]:
        members.sort(key=lambda r: (not r["is_representative"], -(r["similarity"] or 0), r["video_id"], r["shot_index"] or 0))

        def name(r: dict[str, Any]) -> str:
            where = uris.get(r["video_id"], r["video_id"])
            return where if level == "video" else f"{where} shot {r['shot_index']}"

        lines.append(f"group {members[0]['group_id'][:8]} ({len(members)} {level}s): {name(members[0])}")
        for r in members[1:]:
            lines.append(f"    {r['similarity']:.3f}  {name(r)}")
    if len(ordered) > limit:
        lines.append(f"... and {len(ordered) - limit} more groups (the duplicates table holds them all)")
    return lines
