"""Nearest keyframes by cosine similarity of their stored embeddings.

Exact search: the ``keyframes`` table is scanned in record batches with only the columns
needed (never the thumbnails), and a running top-k is kept, so memory stays the same
whatever the size of the index. Above :data:`pipeline.index.ann.MIN_ROWS` keyframes,
``vindex compact`` keeps an approximate nearest-neighbour index beside the tables, which
answers instead (:mod:`pipeline.index.ann`). A query image is embedded the way indexing embeds a
sampled frame: resized to the decode size of the index's configuration
(:func:`pipeline.algorithms.segments.decode_size`), then :func:`pipeline.models.inference.embed_frames`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.algorithms.attention import normalise
from pipeline.config import Config, config_from_dict, upgrade_stored
from pipeline.errors import AnnIndexError, ConfigError, SimilarError, WeightsNotFoundError
from pipeline.index.snapshot import Snapshot
from pipeline.models.spec import EMBEDDING_DIM

log = logging.getLogger(__name__)

#: Rows per record batch of the scan: bounds the working memory (about 5 KB per row).
SCAN_BATCH_ROWS = 4096
#: Result columns, in order.
RESULT = pa.schema(
    [
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("uri", pa.string()),
        ("video_id", pa.string()),
        ("shot_index", pa.int32()),
        ("scene_index", pa.int32()),
        ("frame", pa.int64()),
        ("time_s", pa.float64()),
    ]
)
#: Result columns of a search of shots (``level="shot"``: their embeddings, the mean of their frames').
SHOT_RESULT = pa.schema(
    [
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("uri", pa.string()),
        ("video_id", pa.string()),
        ("shot_index", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
    ]
)
RESULTS = {"keyframe": RESULT, "shot": SHOT_RESULT}


def _ranking(order: str) -> list[tuple[str, str]]:
    return [("score", "descending"), ("video_id", "ascending"), (order, "ascending")]


def _level(level: str) -> Any:
    from pipeline.index.ann import LEVELS

    if level not in LEVELS:
        raise SimilarError(f"a search is of {' or '.join(LEVELS)}, got {level!r}")
    return LEVELS[level]


def parse_keyframe(text: str) -> tuple[str, int]:
    """``"VIDEO_ID:FRAME"`` -> ``(video_id, frame)``."""
    video_id, sep, frame = text.rpartition(":")
    if not sep or not video_id or not frame.strip().isdigit():
        raise SimilarError(f"a keyframe is written VIDEO_ID:FRAME (e.g. 1b4e...:42), got {text!r}")
    return video_id, int(frame)


def _normalised(vector: np.ndarray) -> np.ndarray:
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape != (EMBEDDING_DIM,):
        raise SimilarError(f"a query embedding has {EMBEDDING_DIM} values, got {query.shape[0]}")
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0.0:
        raise SimilarError("the query embedding is zero or not finite")
    return normalise(query)


def batch_scores(batch: pa.RecordBatch, query: np.ndarray) -> tuple[pa.RecordBatch, np.ndarray]:
    """Cosine similarity of each row's ``embedding`` to the unit vector ``query``.

    Rows without a full embedding are dropped; returns the kept rows (without the
    embedding) and their scores.
    """
    embeddings = batch.column("embedding")
    complete = pc.fill_null(pc.equal(pc.list_value_length(embeddings), EMBEDDING_DIM), False)
    if not pc.all(complete).as_py():
        batch = batch.filter(complete)
        embeddings = batch.column("embedding")
    matrix = embeddings.flatten().to_numpy(zero_copy_only=False).reshape(-1, EMBEDDING_DIM)
    scores = normalise(matrix) @ query
    return batch.drop_columns(["embedding"]), scores.astype(np.float32)


def top_k(batches: Iterable[pa.RecordBatch], query: np.ndarray, k: int, order: str = "frame") -> pa.Table:
    """The ``k`` rows of ``batches`` whose embeddings are nearest ``query``, best first.

    Only the best ``k`` rows so far are kept between batches. Ties rank by ``video_id``,
    then ``order``, so results are deterministic. Returns the batches' columns (without
    ``embedding``) plus ``score``.
    """
    if k < 1:
        raise SimilarError(f"k must be at least 1, got {k}")
    unit = _normalised(query)
    best: pa.Table | None = None
    for batch in batches:
        if batch.num_rows == 0:
            continue
        rows, scores = batch_scores(batch, unit)
        if len(scores) > k:
            keep = np.argpartition(-scores, k - 1)[:k]
            rows, scores = rows.take(pa.array(keep)), scores[keep]
        candidates = pa.Table.from_batches([rows.append_column("score", pa.array(scores, pa.float32()))])
        merged = candidates if best is None else pa.concat_tables([best, candidates])
        best = merged.sort_by(_ranking(order)).slice(0, k).combine_chunks()
    if best is None:
        return pa.table({"score": pa.array([], pa.float32())})
    return best


def keyframe_embedding(index: Snapshot, video_id: str, frame: int) -> np.ndarray:
    """The stored embedding of keyframe ``(video_id, frame)``."""
    dataset = index.dataset("keyframes")
    found = dataset.to_table(
        columns=["embedding"], filter=(pc.field("video_id") == video_id) & (pc.field("frame") == frame)
    )
    if found.num_rows:
        return np.asarray(found.column("embedding")[0].as_py(), np.float32)
    frames = sorted(
        dataset.to_table(columns=["frame"], filter=pc.field("video_id") == video_id).column("frame").to_pylist()
    )
    if not frames:
        raise SimilarError(f"no keyframes of a video with id {video_id!r} in {index.uri}")
    shown = ", ".join(str(f) for f in frames[:20]) + (", ..." if len(frames) > 20 else "")
    raise SimilarError(f"video {video_id} has no keyframe at frame {frame}; its keyframes are at frames {shown}")


def index_config(index: Snapshot) -> Config:
    """The configuration of the index's latest run (the decode size and precision its
    embeddings were computed with); defaults when no run recorded one."""
    runs = index.read("runs", columns=["started_at", "config"])
    if runs.num_rows == 0:
        return Config()
    latest = runs.sort_by([("started_at", "descending")]).column("config")[0].as_py()
    try:
        return config_from_dict(upgrade_stored(json.loads(latest) if latest else None))
    except (ValueError, ConfigError) as exc:
        log.warning("the latest run's configuration is not usable here (%s); using the defaults", exc)
        return Config()


def image_embedding(path: str | os.PathLike[str], config: Config) -> np.ndarray:
    """Embed an image file as indexing embeds a sampled frame.

    The image is turned upright (EXIF orientation), resized to the decode size indexing
    would give a video of its shape, and passed through the same network, preprocessing
    and precision.
    """
    import fsspec
    from PIL import Image, ImageOps, UnidentifiedImageError

    from pipeline.algorithms.segments import decode_size
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import embed_frames, pick_device

    try:
        with fsspec.open(os.fspath(path), "rb") as handle:
            image = Image.open(handle)
            image.load()
    except FileNotFoundError as exc:
        raise SimilarError(f"no image at {os.fspath(path)}") from exc
    except UnidentifiedImageError as exc:
        raise SimilarError(f"{os.fspath(path)} is not an image in a format Pillow reads") from exc
    except OSError as exc:
        raise SimilarError(f"cannot read the image {os.fspath(path)}: {exc}") from exc
    upright = ImageOps.exif_transpose(image).convert("RGB")
    size = decode_size(upright.width, upright.height, config.decode.width, config.decode.height)
    pixels = np.array(upright.resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)  # writable, for torch
    device = pick_device(config.inference.device)
    try:
        model = load_efficientnet_lite0(device, folded=True)
    except WeightsNotFoundError as exc:
        raise ConfigError(str(exc)) from exc
    embedding = embed_frames(model, pixels[None], batch_size=1, device=device, precision=config.inference.precision)
    return np.asarray(embedding[0], np.float32)


def _exact_rows(
    index: Snapshot, unit: np.ndarray, k: int, dataset: Any = None, level: str = "keyframe"
) -> tuple[pa.Table, int]:
    """Exact top-k over the current keyframes or shots (or over ``dataset``), and how many rows were scored."""
    of = _level(level)
    dataset = index.dataset(of.table) if dataset is None else dataset
    scanner = dataset.scanner(
        columns=[*of.match_columns, "embedding"],
        batch_size=SCAN_BATCH_ROWS,
        # Little read-ahead: the scan is bounded by memory, not by I/O latency.
        batch_readahead=2,
        fragment_readahead=1,
    )
    scanned = 0

    def counted() -> Iterable[pa.RecordBatch]:
        nonlocal scanned
        for batch in scanner.to_batches():
            scanned += batch.num_rows
            yield batch

    return top_k(counted(), unit, k, of.order), scanned


def _approximate_rows(
    index: Snapshot, unit: np.ndarray, k: int, fs_options: dict[str, Any] | None, level: str = "keyframe"
) -> tuple[pa.Table, SearchPath, pa.Table]:
    """Top-k from the ANN index merged with an exact scan of the rows committed since its
    build, and the ``videos`` markers with their URIs; raises
    :class:`~pipeline.errors.AnnIndexError` where there is none to use."""
    from pipeline.index import ann

    of = _level(level)
    loaded = ann.load(index.uri, fs_options, level)
    answer = ann.search(index, loaded, unit, k)
    found = [answer.candidates.select([*of.match_columns, "score"])]
    scanned = answer.recent_scored
    if answer.recent_dataset is not None:
        recent, read = _exact_rows(index, unit, k, answer.recent_dataset, level)
        scanned += read
        if recent.num_rows:
            found.append(recent.select([*of.match_columns, "score"]))
    merged = pa.concat_tables(found).sort_by(_ranking(of.order)).slice(0, k)
    path = SearchPath("approximate", loaded.info.build, loaded.info.rows, answer.stale_rows, scanned)
    return merged, path, answer.markers


def search(
    index: Snapshot,
    query: np.ndarray,
    k: int = 10,
    *,
    fs_options: dict[str, Any] | None = None,
    exact: bool = False,
    level: str = "keyframe",
) -> pa.Table:
    """The ``k`` keyframes (``level="shot"``: shots) nearest to the embedding ``query``, with
    their videos' URIs (columns: :data:`RESULT`, or :data:`SHOT_RESULT`).

    The ANN index kept with the index answers where there is one (see :mod:`pipeline.index.ann`),
    the rows committed since its build searched exactly beside it; otherwise (none built, a
    pinned older version, ``exact``, or an unreadable one: with a warning) every row is scored.
    Which path answered is logged and kept in the result's schema metadata (``search``).
    """
    if k < 1:
        raise SimilarError(f"k must be at least 1, got {k}")
    unit = _normalised(query)
    of = _level(level)
    schema = RESULTS[of.name]
    best: pa.Table | None = None
    videos: pa.Table | None = None
    if not exact and index.versions is None:
        try:
            best, path, videos = _approximate_rows(index, unit, k, fs_options, level)
        except AnnIndexError as exc:
            if exc.absent:
                log.info("similar: no ANN index (%s); searching exactly", exc)
            else:
                log.warning("similar: the ANN index of %s cannot be used, searching exactly: %s", index.uri, exc)
    if best is None:
        best, scanned = _exact_rows(index, unit, k, level=level)
        path = SearchPath("exact", None, 0, 0, scanned)
    log.info("similar: %s (%s)", path.describe(), of.table)
    if best.num_rows == 0:
        return schema.empty_table().replace_schema_metadata({"search": path.to_json()})
    ids = best.column("video_id").unique()
    where = pc.field("video_id").isin(ids)
    videos = index.dataset("videos").to_table(columns=["video_id", "uri"], filter=where) if videos is None else videos.filter(where)
    uri_of = dict(zip(videos.column("video_id").to_pylist(), videos.column("uri").to_pylist()))
    return pa.table(
        {
            "rank": pa.array(range(1, best.num_rows + 1), pa.int32()),
            "score": best.column("score"),
            "uri": pa.array([uri_of.get(v) for v in best.column("video_id").to_pylist()], pa.string()),
            **{name: best.column(name) for name in of.match_columns},
        },
        schema=schema.with_metadata({"search": path.to_json()}),
    )


@dataclass(frozen=True)
class SearchPath:
    """Which path answered a search: ``exact`` (every current row scored) or ``approximate``
    (the ANN build's rows, less ``stale_rows`` masked out, plus ``scanned_exactly`` rows
    committed since the build)."""

    kind: str
    build: str | None
    ann_rows: int
    stale_rows: int
    scanned_exactly: int

    def describe(self) -> str:
        if self.kind == "exact":
            return f"exact search, {self.scanned_exactly} rows scored"
        return (
            f"approximate search: ANN build {self.build} of {self.ann_rows} rows ({self.stale_rows} no longer "
            f"current, masked), {self.scanned_exactly} rows committed since scored exactly"
        )

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def search_path(result: pa.Table) -> SearchPath | None:
    """The :class:`SearchPath` recorded in a result of :func:`search`."""
    raw = (result.schema.metadata or {}).get(b"search")
    return SearchPath(**json.loads(raw)) if raw else None


def similar(
    index: Snapshot,
    *,
    image: str | os.PathLike[str] | None = None,
    keyframe: tuple[str, int] | None = None,
    k: int = 10,
    fs_options: dict[str, Any] | None = None,
    exact: bool = False,
    level: str = "keyframe",
) -> pa.Table:
    """The ``k`` keyframes of ``index`` nearest to an image file or to one of its keyframes
    (``level="shot"``: the ``k`` shots, by their embeddings, columns :data:`SHOT_RESULT`).

    Give exactly one of ``image`` (a path or fsspec URL) and ``keyframe``
    (``(video_id, frame)``). Returns one row per match, best first: ``rank``, ``score``
    (cosine similarity), ``uri``, ``video_id``, ``shot_index``, ``scene_index``, ``frame``,
    ``time_s``. A keyframe is its own best match, with a score of 1. ``fs_options`` are the
    fsspec options of the index's storage (for its ANN index); ``exact`` scores every row.
    """
    if k < 1:
        raise SimilarError(f"k must be at least 1, got {k}")
    if keyframe is not None and image is None:
        query = None if exact else _ann_keyframe_embedding(index, *keyframe, fs_options)
        if query is None:
            query = keyframe_embedding(index, *keyframe)
    elif image is not None and keyframe is None:
        # index_config reads the runs table, so a missing index fails before the model loads.
        query = image_embedding(image, index_config(index))
    else:
        raise SimilarError("give exactly one query: an image or a keyframe")
    return search(index, query, k, fs_options=fs_options, exact=exact, level=level)


def _ann_keyframe_embedding(index: Snapshot, video_id: str, frame: int, fs_options: dict[str, Any] | None) -> np.ndarray | None:
    """The keyframe's vector as the ANN index holds it, where it is there and current: a read
    of the ``keyframes`` table for one row costs a file's worth of reading at 1M keyframes."""
    from pipeline.index import ann

    if index.versions is not None:
        return None
    try:
        loaded = ann.load(index.uri, fs_options)
    except AnnIndexError:
        return None  # search() says why, once
    return ann.stored_embedding(loaded, ann.current_markers(index, loaded), video_id, frame)


def format_matches(table: pa.Table, fmt: str = "table") -> str:
    """Matches for a terminal: score to 4 decimals, time to 2."""
    from pipeline.index.query import format_result

    if fmt != "table":
        return format_result(table, fmt)
    if "start_s" in table.column_names:  # shots
        shots = pa.table(
            {
                "rank": table.column("rank"),
                "score": [f"{s:.4f}" for s in table.column("score").to_pylist()],
                "uri": table.column("uri"),
                "shot": table.column("shot_index"),
                "start_s": [f"{t:.2f}" for t in table.column("start_s").to_pylist()],
                "end_s": [f"{t:.2f}" for t in table.column("end_s").to_pylist()],
                "video_id": table.column("video_id"),
            }
        )
        return format_result(shots, fmt, max_width=200)
    shown = pa.table(
        {
            "rank": table.column("rank"),
            "score": [f"{s:.4f}" for s in table.column("score").to_pylist()],
            "uri": table.column("uri"),
            "shot": table.column("shot_index"),
            "time_s": [f"{t:.2f}" for t in table.column("time_s").to_pylist()],
            "frame": table.column("frame"),
            "video_id": table.column("video_id"),
        }
    )
    return format_result(shown, fmt, max_width=200)


__all__ = [
    "RESULT",
    "RESULTS",
    "SHOT_RESULT",
    "format_matches",
    "image_embedding",
    "index_config",
    "keyframe_embedding",
    "parse_keyframe",
    "search",
    "search_path",
    "similar",
    "top_k",
]
