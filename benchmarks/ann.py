"""Approximate nearest-neighbour search over keyframe embeddings: faiss, hnswlib and usearch
compared at 10k, 100k and 1M vectors of 1,280 dimensions, against exact search.

    python benchmarks/ann.py                          # 10k and 100k, every method
    python benchmarks/ann.py --sizes 1000000 --methods faiss-ivf-fp16 faiss-ivf-sq8

For each size and method: build time, the index's size (in memory as serialised, and so on
disk), query latency (median and p99 over the queries, one thread and all threads) and
recall@10 against exact search (float32 dot products over every vector).

How the vectors are made (isotropic Gaussian vectors are far easier and far harder than
real ones at once, so they say little): the frames of the committed real footage
(``benchmarks/scenes_set/*.mp4``, every 2nd frame) are embedded with the project's own
network (:func:`pipeline.models.inference.embed_frames`, EfficientNet-Lite0, decode size of
the default configuration), about 3,100 real vectors. Their principal directions and
spreads give the shape of the noise. Each block of 1,000 synthetic vectors is 100 "shots":
a shot's centre is a real vector moved towards another real vector (a random fraction up
to 0.5) plus noise shaped by the real spreads; its 10 keyframes are the centre plus smaller
shaped noise and a little isotropic noise; all are L2-normalised. So vectors come in tight
groups (keyframes of a shot), groups near each other (shots of similar places) and a
spectrum as anisotropic as real embeddings'. Queries are vectors of the set moved by
keyframe-sized noise (an image close to, not equal to, an indexed keyframe). Everything is
seeded: a block is made again from its number, so 1M vectors never sit in memory as float32.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import CACHE, machine_header

DIM = 1280
SCENES_SET = Path(__file__).resolve().parent / "scenes_set"
BLOCK = 1000
SHOTS_PER_BLOCK = 100
K = 10
#: Noise scales, in units of the real vectors' per-direction spread: a shot's centre moves
#: from its real vector by SHOT_SPREAD, a keyframe from its centre by KEYFRAME_SPREAD.
SHOT_SPREAD = 0.35
KEYFRAME_SPREAD = 0.3
ISOTROPIC = 0.01
#: Principal directions of the real vectors used to shape the noise.
SHAPE_RANK = 256


def real_embeddings() -> np.ndarray:
    """Embeddings of every 2nd frame of the scenes set (cached: about a minute to make)."""
    cache = CACHE / "ann_real_embeddings.npy"
    if cache.exists():
        return np.load(cache)
    import decord

    from pipeline.algorithms.segments import decode_size
    from pipeline.config import Config
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import embed_frames, pick_device

    config = Config()
    device = pick_device("cpu")
    model = load_efficientnet_lite0(device)
    out = []
    for path in sorted(SCENES_SET.glob("*.mp4")):
        probe = decord.VideoReader(str(path))
        height, width = probe[0].shape[:2]
        w, h = decode_size(width, height, config.decode.width, config.decode.height)
        reader = decord.VideoReader(str(path), width=w, height=h)
        frames = reader.get_batch(list(range(0, len(reader), 2))).asnumpy()
        out.append(embed_frames(model, frames, batch_size=64, device=device))
    vectors = np.concatenate(out).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


@dataclass(frozen=True)
class Shape:
    """The real vectors and the principal directions and spreads that shape the noise."""

    real: np.ndarray
    directions: np.ndarray  # [SHAPE_RANK, DIM]
    spreads: np.ndarray  # [SHAPE_RANK]

    @classmethod
    def of(cls, real: np.ndarray) -> "Shape":
        centred = real - real.mean(axis=0)
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        rank = min(SHAPE_RANK, len(singular))
        spreads = singular[:rank] / np.sqrt(len(real) - 1)
        return cls(real, vt[:rank].astype(np.float32), spreads.astype(np.float32))

    def noise(self, rng: np.random.Generator, rows: int, scale: float) -> np.ndarray:
        z = rng.standard_normal((rows, len(self.spreads)), dtype=np.float32) * (self.spreads * scale)
        return z @ self.directions


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def block(shape: Shape, number: int, seed: int = 0) -> np.ndarray:
    """Synthetic vectors ``number * BLOCK`` to ``(number + 1) * BLOCK``, float32, unit length."""
    rng = np.random.default_rng([seed, number])
    real = shape.real
    a = rng.integers(0, len(real), SHOTS_PER_BLOCK)
    b = rng.integers(0, len(real), SHOTS_PER_BLOCK)
    towards = rng.uniform(0.0, 0.5, (SHOTS_PER_BLOCK, 1)).astype(np.float32)
    centres = real[a] + towards * (real[b] - real[a]) + shape.noise(rng, SHOTS_PER_BLOCK, SHOT_SPREAD)
    centres = np.repeat(_unit(centres), BLOCK // SHOTS_PER_BLOCK, axis=0)
    frames = centres + shape.noise(rng, BLOCK, KEYFRAME_SPREAD)
    frames += rng.standard_normal(frames.shape, dtype=np.float32) * (ISOTROPIC / np.sqrt(DIM))
    return _unit(frames).astype(np.float32)


def blocks(shape: Shape, size: int) -> Iterator[np.ndarray]:
    for number in range(size // BLOCK):
        yield block(shape, number)


def queries(shape: Shape, size: int, count: int) -> np.ndarray:
    rng = np.random.default_rng([1, size])
    picks = rng.integers(0, size, count)
    made = {int(n): block(shape, int(n)) for n in np.unique(picks // BLOCK)}
    base = np.stack([made[int(p) // BLOCK][int(p) % BLOCK] for p in picks])
    return _unit(base + shape.noise(rng, count, KEYFRAME_SPREAD)).astype(np.float32)


def exact_top_k(shape: Shape, size: int, query: np.ndarray, k: int = K) -> np.ndarray:
    """Ids of the ``k`` nearest vectors of each query (float32 dot products over all)."""
    best_ids = np.zeros((len(query), 0), np.int64)
    best_scores = np.zeros((len(query), 0), np.float32)
    for number, vectors in enumerate(blocks(shape, size)):
        scores = np.concatenate([best_scores, query @ vectors.T], axis=1)
        ids = np.concatenate([best_ids, np.broadcast_to(np.arange(BLOCK) + number * BLOCK, (len(query), BLOCK))], axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, keep, axis=1)
        best_ids = np.take_along_axis(ids, keep, axis=1)
    return best_ids


# --- methods: each builds from blocks and answers one query at a time ------------------------


class Method:
    name = ""
    #: (label, setting) of the search-time setting, one row each.
    settings: tuple[int, ...] = ()
    setting_label = ""

    def fits(self, size: int) -> bool:
        return True

    def build(self, shape: Shape, size: int, threads: int) -> None:
        raise NotImplementedError

    def nbytes(self) -> int:
        raise NotImplementedError

    def set(self, setting: int) -> None:
        raise NotImplementedError

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def threads(self, count: int) -> None:
        pass

    def release(self) -> None:
        pass


class Exact(Method):
    """Brute force over float32 vectors held in memory (numpy): the baseline latency."""

    name = "exact fp32 (numpy)"
    settings = (0,)
    setting_label = "-"

    def fits(self, size: int) -> bool:
        return size * DIM * 4 <= 2.2e9

    def build(self, shape: Shape, size: int, threads: int) -> None:
        self.matrix = np.concatenate(list(blocks(shape, size)))

    def nbytes(self) -> int:
        return int(self.matrix.nbytes)

    def set(self, setting: int) -> None:
        pass

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        scores = self.matrix @ query
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top])]

    def threads(self, count: int) -> None:
        try:
            from threadpoolctl import threadpool_limits

            self._limit = threadpool_limits(count)
        except ImportError:
            pass

    def release(self) -> None:
        del self.matrix


def lists_for(size: int) -> int:
    """Inverted lists for ``size`` vectors: sqrt(N), the usual rule's low end (4 * sqrt(N) made
    the k-means of a 1M build cost four times as much for a recall the probes buy back)."""
    return max(16, int(np.sqrt(size)) // 16 * 16)


class FaissIVF(Method):
    """faiss inverted file (k-means lists) over scalar-quantised vectors, inner product."""

    setting_label = "nprobe"

    def __init__(self, quantiser: str) -> None:
        self.quantiser = quantiser  # "SQfp16" or "SQ8"
        self.name = f"faiss IVF,{quantiser}"
        self.settings = (8, 16, 32, 64)

    def build(self, shape: Shape, size: int, threads: int) -> None:
        import faiss

        faiss.omp_set_num_threads(threads)
        lists = lists_for(size)
        self.index = faiss.index_factory(DIM, f"IVF{lists},{self.quantiser}", faiss.METRIC_INNER_PRODUCT)
        training = min(size, max(40 * lists, 20_000))
        sample = np.concatenate([block(shape, n) for n in range(training // BLOCK)])
        self.index.train(sample)
        del sample
        for vectors in blocks(shape, size):
            self.index.add(vectors)

    def nbytes(self) -> int:
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    def set(self, setting: int) -> None:
        import faiss

        faiss.extract_index_ivf(self.index).nprobe = setting  # the factory's index, typed as its IVF

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(query[None], k)[1][0]

    def threads(self, count: int) -> None:
        import faiss

        faiss.omp_set_num_threads(count)

    def release(self) -> None:
        del self.index


class Hnswlib(Method):
    """hnswlib graph over float32 vectors (it stores nothing smaller), M=16, ef_construction=128."""

    name = "hnswlib HNSW fp32 M16"
    setting_label = "ef"
    settings = (32, 64, 128)

    def fits(self, size: int) -> bool:
        return size * (DIM * 4 + 16 * 2 * 4 + 64) <= 2.5e9

    def build(self, shape: Shape, size: int, threads: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.init_index(max_elements=size, ef_construction=128, M=16)
        self.index.set_num_threads(threads)
        for number, vectors in enumerate(blocks(shape, size)):
            self.index.add_items(vectors, np.arange(number * BLOCK, (number + 1) * BLOCK))

    def nbytes(self) -> int:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "index.bin")
            self.index.save_index(path)
            return os.path.getsize(path)

    def set(self, setting: int) -> None:
        self.index.set_ef(setting)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.knn_query(query[None], k=k)[0][0]

    def threads(self, count: int) -> None:
        self.index.set_num_threads(count)

    def release(self) -> None:
        del self.index


class Usearch(Method):
    """usearch graph over int8 or fp16 vectors, connectivity 16, expansion_add 128, cosine."""

    setting_label = "ef"
    settings = (32, 64, 128)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.name = f"usearch HNSW {dtype} M16"

    def build(self, shape: Shape, size: int, threads: int) -> None:
        from usearch.index import Index

        self._threads = threads
        self.index = Index(ndim=DIM, metric="cos", dtype=self.dtype, connectivity=16, expansion_add=128)
        for number, vectors in enumerate(blocks(shape, size)):
            self.index.add(np.arange(number * BLOCK, (number + 1) * BLOCK), vectors, threads=threads)

    def nbytes(self) -> int:
        return int(self.index.serialized_length)

    def set(self, setting: int) -> None:
        # Settable: usearch declares the property's setter apart from its getter, which type
        # checkers read as a read-only property.
        self.index.expansion_search = setting  # type: ignore[misc]

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(self.index.search(query, k, threads=self._threads).keys)

    def threads(self, count: int) -> None:
        self._threads = count

    def release(self) -> None:
        del self.index


METHODS: dict[str, Callable[[], Method]] = {
    "exact": Exact,
    "faiss-ivf-fp16": lambda: FaissIVF("SQfp16"),
    "faiss-ivf-sq8": lambda: FaissIVF("SQ8"),
    "hnswlib": Hnswlib,
    "usearch-i8": lambda: Usearch("i8"),
    "usearch-f16": lambda: Usearch("f16"),
}


def _latencies_ms(method: Method, query: np.ndarray) -> tuple[list[float], np.ndarray]:
    found = np.zeros((len(query), K), np.int64)
    times = []
    for i, q in enumerate(query):
        start = time.perf_counter()
        found[i] = method.search(q, K)
        times.append((time.perf_counter() - start) * 1000)
    return times, found


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist())]))


# --- end to end: a Delta index of N keyframes, `vindex compact`'s build, `similar`'s answers --


def end_to_end(shape: Shape, size: int, queries_count: int, folder: Path, keep_build: bool = False) -> None:
    """Index ``size`` synthetic keyframes (10 per video) in a Delta index, build its ANN index as
    ``vindex compact`` does, then time :func:`pipeline.index.similarity.search` once loaded,
    before and after a run adds 100 videos, against exact search."""
    import datetime as dt

    from pipeline.index import ann
    from pipeline.index.schemas import to_table
    from pipeline.index.similarity import search, search_path
    from pipeline.index.store import Index

    now = dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc)
    index = Index(str(folder / f"index_{size}"))
    per_video = 10

    def commit(first_block: int, blocks_count: int, run_id: str) -> None:
        videos, keyframes = [], []
        for number in range(first_block, first_block + blocks_count):
            vectors = block(shape, number)
            for row, vector in enumerate(vectors):
                video_id = f"{number * BLOCK // per_video + row // per_video:08d}"
                if row % per_video == 0:
                    videos.append({"video_id": video_id, "uri": f"s3://corpus/{video_id}.mp4", "status": "ok",
                                   "run_id": run_id, "indexed_at": now})
                keyframes.append({"video_id": video_id, "shot_index": row % per_video, "scene_index": 0,
                                  "frame": 25 * (row % per_video), "time_s": float(row % per_video), "score": 1.0,
                                  "embedding": vector, "thumbnail": b"\xff\xd8", "run_id": run_id})
        index.commit_videos({"videos": to_table("videos", videos), "keyframes": to_table("keyframes", keyframes)})

    commit_blocks = 50
    if not index.exists():
        index.ensure()
        start = time.perf_counter()
        for first in range(0, size // BLOCK, commit_blocks):
            commit(first, min(commit_blocks, size // BLOCK - first), "r-bulk")
        print(f"# index of {size} keyframes written in {time.perf_counter() - start:.0f} s", flush=True)
    start = time.perf_counter()
    if keep_build and (Path(index.uri) / ann.FOLDER).exists():
        info, build_s = None, None
    else:
        shutil.rmtree(Path(index.uri) / ann.FOLDER, ignore_errors=True)
        info = ann.build(index, min_rows=1)
        build_s = time.perf_counter() - start
    ann._LOADED.clear()
    start = time.perf_counter()
    info = ann.load(index.uri).info
    load_s = time.perf_counter() - start
    query = queries(shape, size, queries_count)
    exact_count = min(2, queries_count)
    truth = []
    exact_ms = []
    for q in query[:exact_count]:
        begin = time.perf_counter()
        truth.append(search(index, q, K, exact=True))
        exact_ms.append((time.perf_counter() - begin) * 1000)

    def timed(label: str, truth: list[Any]) -> None:
        times, results = [], []
        for q in query:
            begin = time.perf_counter()
            results.append(search(index, q, K))
            times.append((time.perf_counter() - begin) * 1000)
        path = search_path(results[0])
        recall = statistics.mean(
            len(set(zip(r.column("video_id").to_pylist(), r.column("frame").to_pylist()))
                & set(zip(t.column("video_id").to_pylist(), t.column("frame").to_pylist()))) / K
            for r, t in zip(results, truth)
        ) if truth else None
        print(
            f"{size:>9} {label:<34} {times[0]:>8.1f} {statistics.median(times):>8.1f} {_p99(times):>8.1f} "
            f"{path.scanned_exactly if path else -1:>9} {'-' if recall is None else f'{recall:.3f}':>9}",
            flush=True,
        )

    built = "kept from an earlier run" if build_s is None else f"{build_s:.0f} s"
    print(f"# ANN build (as `vindex compact` makes it): {built}, {info.vectors_bytes / 1e6:.0f} MB; "
          f"load {load_s:.1f} s; exact search {statistics.median(exact_ms) / 1000:.1f} s a query "
          f"(recall below against {exact_count} queries' exact answers)")
    print(f"{'N':>9} {'search (all threads)':<34} {'1st ms':>8} {'med ms':>8} {'p99 ms':>8} {'exact rows':>9} {'recall@10':>9}")
    timed("approximate", truth)
    # 100 new videos (1,000 keyframes) committed after the build; new ids at each invocation.
    commit(size // BLOCK + int(time.time()) % 100_000, 1, f"r-new-{int(time.time())}")
    timed("approximate, after 100 more videos", [])
    from pipeline.index.similarity import similar

    rng = np.random.default_rng(2)
    times = []
    for number in rng.integers(0, size // per_video, 20):
        begin = time.perf_counter()
        found = similar(index, keyframe=(f"{int(number):08d}", 25 * int(number % per_video)), k=K)
        times.append((time.perf_counter() - begin) * 1000)
        assert found.column("video_id")[0].as_py() == f"{int(number):08d}"
    print(f"{size:>9} {'--keyframe query (similar())':<34} {times[0]:>8.1f} {statistics.median(times):>8.1f} {_p99(times):>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--end-to-end", type=int, metavar="N", help="instead: a Delta index of N keyframes, its ANN build and `similar`"
    )
    parser.add_argument("--keep-build", action="store_true", help="--end-to-end: search the ANN build already there")
    parser.add_argument("--folder", type=Path, default=CACHE / "ann", help="where --end-to-end keeps its index")
    args = parser.parse_args()
    all_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    print(machine_header())
    real = real_embeddings()
    shape = Shape.of(real)
    print(
        f"{len(real)} real vectors from {SCENES_SET.name}; synthetic blocks of {BLOCK} "
        f"({SHOTS_PER_BLOCK} shots), shot spread {SHOT_SPREAD}, keyframe spread {KEYFRAME_SPREAD}; "
        f"{args.queries} queries, recall@{K} against exact float32 search; threads 1 and {all_threads}"
    )
    if args.end_to_end:
        args.folder.mkdir(parents=True, exist_ok=True)
        end_to_end(shape, args.end_to_end, args.queries, args.folder, args.keep_build)
        return
    header = (
        f"{'N':>9} {'method':<24} {'setting':>11} {'build s':>8} {'MB':>8} {'1 thr med ms':>12} "
        f"{'p99':>7} {f'{all_threads} thr med':>11} {'p99':>7} {'recall@10':>9}"
    )
    print(header)
    for size in args.sizes:
        query = queries(shape, size, args.queries)
        start = time.perf_counter()
        truth = exact_top_k(shape, size, query)
        print(f"# N={size}: exact ground truth in {time.perf_counter() - start:.1f} s (streamed, 200 queries at once)", flush=True)
        for key in args.methods:
            method = METHODS[key]()
            if not method.fits(size):
                print(f"{size:>9} {method.name:<24} {'-':>11}  does not fit the memory budget of this machine", flush=True)
                continue
            start = time.perf_counter()
            method.build(shape, size, all_threads)
            build_s = time.perf_counter() - start
            size_mb = method.nbytes() / 1e6
            for setting in method.settings:
                method.set(setting)
                method.threads(1)
                one, found = _latencies_ms(method, query)
                method.threads(all_threads)
                many, _ = _latencies_ms(method, query)
                label = f"{method.setting_label}={setting}" if method.setting_label != "-" else "-"
                print(
                    f"{size:>9} {method.name:<24} {label:>11} {build_s:>8.1f} {size_mb:>8.0f} "
                    f"{statistics.median(one):>12.2f} {_p99(one):>7.2f} {statistics.median(many):>11.2f} "
                    f"{_p99(many):>7.2f} {recall_at_k(found, truth):>9.3f}",
                    flush=True,
                )
            method.release()
            del method
            gc.collect()


if __name__ == "__main__":
    main()
