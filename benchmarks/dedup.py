"""How long `vindex dedup` takes at 10k, 100k and 1M shots, and what 10M would take.

    python benchmarks/dedup.py                        # 10k and 100k
    python benchmarks/dedup.py --sizes 1000000
    python benchmarks/dedup.py --ray --sizes 100000   # a full run, here and spread over Ray
    python benchmarks/dedup.py --read --sizes 100000  # reading the shots from an index's tables

Times the grouping itself (:func:`pipeline.index.dedup.group_shots`: candidate search, pair
scores, groups) on synthetic shots held in memory as a run holds them, in two runs: a full one
over every shot, and a re-run after 1 % more shots were indexed (the earlier groups kept, only
the new shots compared). Reading the shots table and writing the duplicates table are not in
these figures (docs/dedup.md gives them for the corpus index). Peak memory is the process's.

How the shots are made: embeddings as ``benchmarks/ann.py`` makes keyframe-like vectors
(shaped by the principal directions and spreads of embeddings of the committed real footage):
each shot is a real vector moved towards another real vector plus shaped noise; 5 % of the
shots are copies of another shot in another video (the shot plus smaller shaped noise); luma
layouts are smooth random pictures, a copy's its source's plus noise. Ten shots a video.
Everything is seeded per block of 1,000 shots.

``--ray`` times a full run twice at each size, in this process and with the search and the pair
scores spread over an embedded Ray on this machine's CPUs (``vindex dedup --ray``), and checks
that both make the same groups. CPU seconds are those of the whole process tree (the driver,
Ray's services and workers), read from /proc: on a machine as small as the benchmark's the Ray
path cannot be faster, and what it adds is what it costs.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from benchmarks.ann import SHOT_SPREAD, Shape, real_embeddings
from benchmarks.measure import machine_header

BLOCK = 1000
COPIES_PER_BLOCK = 50
SHOTS_PER_VIDEO = 10
#: A copy's embedding moves from its source's by this much shaped noise (in units of the real
#: vectors' spreads): its cosine to the source is then about that of a re-encoded copy.
COPY_SPREAD = 0.12
#: A copy's layout: its source's plus this much noise (0-255 scale).
COPY_LAYOUT_NOISE = 6.0


def block(shape: Shape, number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shots ``number * BLOCK`` onwards: (unit embeddings float16, layouts float32, source of each
    copy or -1)."""
    from pipeline.algorithms.frame_stats import LAYOUT_GRID

    rng = np.random.default_rng([2, number])
    real = shape.real
    own = BLOCK - COPIES_PER_BLOCK
    a, b = rng.integers(0, len(real), own), rng.integers(0, len(real), own)
    towards = rng.uniform(0.0, 0.5, (own, 1)).astype(np.float32)
    centres = real[a] + towards * (real[b] - real[a]) + shape.noise(rng, own, SHOT_SPREAD)
    sources = rng.choice(own, COPIES_PER_BLOCK, replace=False)
    copies = centres[sources] + shape.noise(rng, COPIES_PER_BLOCK, COPY_SPREAD)
    vectors = np.concatenate([centres, copies])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows, cols = LAYOUT_GRID
    coarse = rng.uniform(0, 255, (own, 3, 4)).astype(np.float32)
    layouts = np.kron(coarse, np.ones((1, 3, 4), np.float32))[:, :rows, :cols].reshape(own, -1)
    layouts = np.concatenate([layouts, layouts[sources] + rng.normal(0, COPY_LAYOUT_NOISE, (COPIES_PER_BLOCK, rows * cols))])
    source = np.concatenate([np.full(own, -1), number * BLOCK + sources])
    return vectors.astype(np.float16), layouts.astype(np.float32), source


def make_shots(shape: Shape, size: int) -> tuple[object, np.ndarray]:
    """``size`` synthetic shots as :class:`pipeline.index.dedup.Shots`, and each copy's source."""
    from pipeline.index.dedup import Shots
    from pipeline.algorithms.frame_stats import LAYOUT_FEATURES
    from pipeline.models.spec import EMBEDDING_DIM

    embedding = np.empty((size, EMBEDDING_DIM), np.float16)
    layout = np.empty((size, LAYOUT_FEATURES), np.float16)
    source = np.empty(size, np.int64)
    for number in range(size // BLOCK):
        vectors, layouts, sources = block(shape, number)
        at = slice(number * BLOCK, (number + 1) * BLOCK)
        embedding[at] = vectors
        centred = layouts - layouts.mean(axis=1, keepdims=True)
        layout[at] = centred / np.linalg.norm(centred, axis=1, keepdims=True)
        source[at] = sources
    video = np.array([f"v{i // SHOTS_PER_VIDEO:07d}" for i in range(size)], dtype=object)
    shots = Shots(
        video_id=video,
        video_run_id=np.array(["20260101T000000Z-r1"] * size, dtype=object),
        shot_index=np.arange(size, dtype=np.int64) % SHOTS_PER_VIDEO,
        duration_s=np.full(size, 4.0),
        pixels=np.full(size, 1280 * 720, np.int64),
        embedding=embedding,
        layout=layout,
    )
    return shots, source


def subset(shots: object, rows: np.ndarray) -> object:
    from pipeline.index.dedup import Shots

    assert isinstance(shots, Shots)
    return Shots(**{name: getattr(shots, name)[rows] for name in shots.__dataclass_fields__})


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def earlier_from_truth(shots: object, source: np.ndarray, rows: int) -> dict[tuple[str, int, str], tuple[str, bool]]:
    """The table a run over the first ``rows`` shots leaves when it finds exactly the copies:
    each copy in its source's group, every other shot a group of one."""
    out = {}
    for row in range(rows):
        root = row if source[row] < 0 else int(source[row])
        key = (shots.video_id[row], int(shots.shot_index[row]), shots.video_run_id[row])  # type: ignore[attr-defined]
        out[key] = (f"g{root}", source[row] < 0)
    return out


@contextlib.contextmanager
def timing(module: object, name: str, clock: Callable[[], float] = time.perf_counter) -> Iterator[list[float]]:
    """``module.name`` replaced, while the block runs, by a wrapper that appends each call's
    seconds (by ``clock``) to the list yielded."""
    original = getattr(module, name)
    seconds: list[float] = []

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        started = clock()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(clock() - started)

    setattr(module, name, timed)
    try:
        yield seconds
    finally:
        setattr(module, name, original)


def measure_rerun(shape: Shape, size: int) -> dict[str, float]:
    """Only a re-run with 1 % new shots (the earlier groups made from the truth, not a run): for
    sizes whose full run takes too long to time twice."""
    from pipeline.index import dedup

    shots, source = make_shots(shape, size)
    new = max(BLOCK, size // 100)
    earlier = earlier_from_truth(shots, source, size - new)
    with timing(dedup, "candidate_pairs") as searched, timing(dedup, "_reduced_index", time.process_time) as built:
        started, cpu = time.perf_counter(), time.process_time()
        again = dedup.group_shots(shots, dedup.DEFAULT_THRESHOLD, earlier)  # type: ignore[arg-type]
        rerun_s, rerun_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    late = np.flatnonzero(source[size - new :] >= 0) + size - new
    joined = float(np.mean(again.group_of[late] == again.group_of[source[late]])) if len(late) else float("nan")
    return {"rerun_s": rerun_s, "rerun_cpu_s": rerun_cpu_s, "rerun_search_s": searched[-1], "joined": joined,
            "new": new, "rss_gb": peak_rss_gb(), "build_cpu_s": built[-1] if built else 0.0}


def tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process and every process below it now."""
    from pipeline.execution.processes import descendants

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [os.getpid(), *descendants(os.getpid())]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def timed_run(shots: object, spread: object = None) -> tuple[object, dict[str, float]]:
    """A full run's groups, and its wall and process-tree CPU seconds in all and per phase: the
    index build, the search beyond it, the pair scores, the rest (grouping)."""
    from pipeline.index import dedup

    with contextlib.ExitStack() as stack:
        built = stack.enter_context(timing(dedup, "_reduced_index"))
        built_cpu = stack.enter_context(timing(dedup, "_reduced_index", tree_cpu_s))
        searched = stack.enter_context(timing(dedup, "candidate_pairs"))
        searched_cpu = stack.enter_context(timing(dedup, "candidate_pairs", tree_cpu_s))
        where, name = (spread, "sequence_similarity") if spread is not None else (dedup, "batched_similarity")
        scored = stack.enter_context(timing(where, name))
        scored_cpu = stack.enter_context(timing(where, name, tree_cpu_s))
        started, cpu = time.perf_counter(), tree_cpu_s()
        grouping = dedup.group_shots(shots, dedup.DEFAULT_THRESHOLD, spread=spread)  # type: ignore[arg-type]
        wall, cpu = time.perf_counter() - started, tree_cpu_s() - cpu
    build, build_cpu = sum(built), sum(built_cpu)
    return grouping, {
        "wall": wall, "cpu": cpu, "build": build, "build_cpu": build_cpu,
        "search": sum(searched) - build, "search_cpu": sum(searched_cpu) - build_cpu,
        "score": sum(scored), "score_cpu": sum(scored_cpu),
        "rest": wall - sum(searched) - sum(scored), "rest_cpu": cpu - sum(searched_cpu) - sum(scored_cpu),
    }


def write_index(folder: str, shots: object) -> None:
    """An index of ``shots`` (videos and shots tables, as a run writes them), committed in
    batches of 1,000 videos."""
    import datetime as dt

    import pyarrow as pa

    from pipeline.index.schemas import SCHEMAS
    from pipeline.index.store import Index

    index = Index(folder)
    index.ensure()
    size = len(shots)  # type: ignore[arg-type]
    rows = 1000 * SHOTS_PER_VIDEO
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for start in range(0, size, rows):
        at = slice(start, min(size, start + rows))
        video = shots.video_id[at]  # type: ignore[attr-defined]
        names = sorted(set(video.tolist()))
        n = len(video)
        embedding = np.asarray(shots.embedding[at], np.float32)  # type: ignore[attr-defined]
        layout = np.asarray(shots.layout[at], np.float32) * 40 + 128  # type: ignore[attr-defined]
        shot_index = shots.shot_index[at]  # type: ignore[attr-defined]
        videos = pa.table({
            "video_id": names, "uri": [f"file:///{v}.mp4" for v in names], "status": ["ok"] * len(names),
            "run_id": ["20260101T000000Z-r1"] * len(names), "indexed_at": [now] * len(names),
            "fps": [25.0] * len(names), "width": [1280] * len(names), "height": [720] * len(names),
        })
        table = pa.table({
            "video_id": video.tolist(), "shot_index": shot_index.astype(np.int32), "start_s": shot_index * 4.0,
            "end_s": shot_index * 4.0 + 4.0, "run_id": ["20260101T000000Z-r1"] * n,
            "embedding": pa.ListArray.from_arrays(np.arange(n + 1, dtype=np.int32) * embedding.shape[1], embedding.ravel()),
            "luma_layout": pa.ListArray.from_arrays(np.arange(n + 1, dtype=np.int32) * layout.shape[1], layout.ravel()),
        })

        def typed(t: pa.Table, name: str) -> pa.Table:
            schema = SCHEMAS[name]
            return pa.table({f.name: t.column(f.name).cast(f.type) if f.name in t.column_names
                             else pa.nulls(t.num_rows, f.type) for f in schema}, schema=schema)

        index.commit_videos({"videos": typed(videos, "videos"), "shots": typed(table, "shots")})


def measure_read(shape: Shape, size: int) -> dict[str, float]:
    """Reading ``size`` shots from an index's tables (:func:`pipeline.index.dedup.read_shots`)."""
    import tempfile

    from pipeline.index.dedup import read_shots
    from pipeline.index.reader import open_index

    shots, _ = make_shots(shape, size)
    with tempfile.TemporaryDirectory() as folder:
        write_index(folder + "/idx", shots)
        index = open_index(folder + "/idx")
        started, cpu = time.perf_counter(), time.process_time()
        read = read_shots(index)
        out = {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu, "rows": len(read)}
        # The table's files are read in their own order: compared shot by shot.
        order = np.lexsort((read.shot_index, read.video_id.astype(str)))
        written = np.lexsort((shots.shot_index, shots.video_id.astype(str)))  # type: ignore[attr-defined]
        out["same"] = float(np.array_equal(read.embedding[order], shots.embedding[written]))  # type: ignore[attr-defined]
    return out


def main_ray(sizes: list[int], repeat: int) -> None:
    """``--ray``: full runs here and on Ray, alternated ``repeat`` times, as a table."""
    from benchmarks.measure import PeakRSS
    from pipeline.config import Config
    from pipeline.execution.dedup_spread import ray_spread

    print("Wall seconds, then CPU seconds of the whole process tree (driver, Ray's services and workers) in brackets.\n")
    print("| shots | path | full run | index build | search, beyond the build | pair scores | grouping and the rest "
          "| same groups | load average (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        shots, _ = make_shots(Shape.of(real_embeddings()), size)
        started, cpu = time.perf_counter(), tree_cpu_s()
        spread = ray_spread(Config(), shots)  # type: ignore[arg-type]
        start_s, start_cpu = time.perf_counter() - started, tree_cpu_s() - cpu
        alone = None
        with PeakRSS(interval_s=1.0) as peak:
            for _ in range(repeat):
                for path in ("this process", f"Ray, {spread.tasks} tasks"):
                    grouping, t = timed_run(shots, spread if path.startswith("Ray") else None)
                    alone = alone or grouping
                    same = grouping.group_of.tolist() == alone.group_of.tolist()  # type: ignore[attr-defined]
                    print(f"| {size:,} | {path} | {t['wall']:.1f} s ({t['cpu']:.1f} s) | {t['build']:.1f} s ({t['build_cpu']:.1f} s) "
                          f"| {t['search']:.1f} s ({t['search_cpu']:.1f} s) | {t['score']:.1f} s ({t['score_cpu']:.1f} s) "
                          f"| {t['rest']:.1f} s ({t['rest_cpu']:.1f} s) | {'yes' if same else 'NO'} | {os.getloadavg()[0]:.1f} |",
                          flush=True)
        spread.close()
        print(f"  (starting the embedded Ray, apart: {start_s:.1f} s wall ({start_cpu:.1f} s CPU); peak memory of the "
              f"process tree (PSS) {peak.peak / 2**30:.1f} GB)", flush=True)
    from pipeline.execution.ray_runtime import stop_embedded_ray

    stop_embedded_ray()


def measure(shape: Shape, size: int) -> dict[str, float]:
    from pipeline.index import dedup

    shots, source = make_shots(shape, size)
    with timing(dedup, "candidate_pairs") as searched:
        started, cpu = time.perf_counter(), time.process_time()
        grouping = dedup.group_shots(shots, dedup.DEFAULT_THRESHOLD)  # type: ignore[arg-type]
        full_s, full_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        search_s = searched[-1]
        copies = np.flatnonzero(source >= 0)
        found = float(np.mean(grouping.group_of[copies] == grouping.group_of[source[copies]]))
        groups = len(set(grouping.group_of.tolist()))
        # A re-run: the first 99 % grouped before, 1 % new.
        new = max(BLOCK, size // 100)
        first = np.arange(size - new)
        before = dedup.group_shots(subset(shots, first), dedup.DEFAULT_THRESHOLD)  # type: ignore[arg-type]
        earlier = {
            (shots.video_id[r], int(shots.shot_index[r]), shots.video_run_id[r]):  # type: ignore[attr-defined]
            (g, before.representative[g] == r)
            for r, g in enumerate(before.group_of.tolist())
        }
        searched.clear()
        started, cpu = time.perf_counter(), time.process_time()
        again = dedup.group_shots(shots, dedup.DEFAULT_THRESHOLD, earlier)  # type: ignore[arg-type]
        rerun_s, rerun_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        rerun_search_s = searched[-1]
        late = np.flatnonzero(source[size - new :] >= 0) + size - new
        joined = float(np.mean(again.group_of[late] == again.group_of[source[late]])) if len(late) else float("nan")
    return {
        "full_s": full_s, "full_cpu_s": full_cpu_s, "search_s": search_s, "rerun_cpu_s": rerun_cpu_s, "groups": groups, "found": found, "rerun_s": rerun_s,
        "rerun_search_s": rerun_search_s, "joined": joined, "new": new, "rss_gb": peak_rss_gb(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rerun-only", action="store_true", help="time only the re-run (earlier groups from the truth)")
    parser.add_argument("--ray", action="store_true", help="time a full run here and spread over an embedded Ray")
    parser.add_argument("--repeat", type=int, default=2, help="with --ray: runs of each path, alternated")
    parser.add_argument("--read", action="store_true", help="time reading the shots from an index's tables (the driver's part)")
    args = parser.parse_args(argv)
    print(machine_header())
    from pipeline.index.dedup import DEFAULT_THRESHOLD, EXACT_MAX_ROWS

    shape = Shape.of(real_embeddings())
    print(f"\nthreshold {DEFAULT_THRESHOLD}; exact candidates up to {EXACT_MAX_ROWS:,} shots, PCA + inverted lists above\n")
    print(f"load average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} (wall times stretch with it; "
          "CPU times less)\n")
    if args.ray:
        main_ray(args.sizes, args.repeat)
        return 0
    if args.read:
        for size in args.sizes:
            r = measure_read(shape, size)
            print(f"reading {int(r['rows']):,} shots from the index (read_shots): {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU; "
                  f"embeddings as written: {'yes' if r['same'] else 'NO'}; peak memory {peak_rss_gb():.1f} GB", flush=True)
        return 0
    print("| shots | candidates | full run: wall (CPU) | its search | copies found | re-run, 1 % new: wall (CPU) "
          "| its search | copies joined | peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        if args.rerun_only:
            r = measure_rerun(shape, size)
            print(f"| {size:,} | {'exact' if size <= EXACT_MAX_ROWS else 'PCA + IVF'} | not timed | - | - "
                  f"| {r['rerun_s']:.1f} s ({r['rerun_cpu_s']:.1f} s), {r['new']:,} new | {r['rerun_search_s']:.1f} s "
                  f"| {r['joined']:.3f} | {r['rss_gb']:.1f} GB |", flush=True)
            print(f"  (of the re-run's CPU time, building the inverted-file index of every shot: {r['build_cpu_s']:.1f} s)",
                  flush=True)
            continue
        r = measure(shape, size)
        print(f"| {size:,} | {'exact' if size <= EXACT_MAX_ROWS else 'PCA + IVF'} | {r['full_s']:.1f} s ({r['full_cpu_s']:.1f} s) "
              f"| {r['search_s']:.1f} s | {r['found']:.3f} | {r['rerun_s']:.1f} s ({r['rerun_cpu_s']:.1f} s), {r['new']:,} new "
              f"| {r['rerun_search_s']:.1f} s | {r['joined']:.3f} | {r['rss_gb']:.1f} GB |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
