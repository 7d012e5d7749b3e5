"""`vindex dedup --ray`: the candidate search and the pair scores spread over Ray's workers.

The thin Ray shell around :mod:`pipeline.index.dedup`'s pure core. The driver reads the shots,
builds the faiss index once and groups; what grows with the index, the search of every
queried shot and the scores of the candidate pairs, runs in Ray tasks, each over a part of
whole blocks of queries (or pairs), so that every block is searched (or scored) exactly as one
pass would: the results are those of a local run, pair for pair.

What the tasks share goes through the object store once per run: the float16 embeddings and
layouts, the shots' video numbers and neighbours, the serialised faiss index. Numpy arrays are
read in place by the tasks of the object store's node (no copy); the index is deserialised by
each task (0.5 KB a shot: 50 MB at 100,000 shots, 5 GB at 10M), so a large index is searched by
fewer tasks of several CPUs each (faiss's threads), that a node's copies fit its memory
(:func:`task_cpus`).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import Config
from pipeline.index import dedup
from pipeline.index.dedup import (
    CandidateSearch,
    Pairs,
    Shots,
    batched_similarity,
    search_blocks,
    sequence_similarity,
    whole_blocks,
)

if TYPE_CHECKING:
    from ray import ObjectRef

log = logging.getLogger(__name__)

#: Tasks per CPU of the cluster: parts small enough that a slower worker does not hold the
#: run up, large enough that each task's start (the index deserialised, a worker process
#: started) stays small beside its search.
TASKS_PER_CPU = 2
#: Object-store room asked of an embedded Ray beyond the shared arrays (the tasks' results
#: pass through it too), in MB.
STORE_MARGIN_MB = 256
#: Share of a node's memory (Ray's ``memory`` resource) the search tasks' copies of the index
#: may take together.
INDEX_MEMORY_SHARE = 0.25


def task_cpus(index_bytes: int, nodes: list[dict[str, float]]) -> int:
    """CPUs each search task asks for: one, unless a task per CPU would hold more copies of the
    index than :data:`INDEX_MEMORY_SHARE` of a node's memory; then as many as keep the copies
    of the node with the least memory per CPU within it (at most that node's CPUs). ``nodes``:
    each node's Ray resources (``CPU``, ``memory`` in bytes)."""
    sizes = [(n.get("CPU", 0.0), n.get("memory", 0.0)) for n in nodes if n.get("CPU", 0.0) >= 1]
    if not sizes or index_bytes <= 0:
        return 1
    cpus = 1
    for node_cpus, memory in sizes:
        copies = max(1, int(memory * INDEX_MEMORY_SHARE // index_bytes))
        cpus = max(cpus, min(int(node_cpus), -(-int(node_cpus) // copies)))
    return cpus


def _search_part(
    search: CandidateSearch, embedding: np.ndarray, video: np.ndarray, queries: np.ndarray, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """One task: the candidate pairs of ``queries`` (whole blocks of the run's queries), faiss
    on ``threads`` threads (the task's CPUs; a query's result does not depend on them)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    pairs = search_blocks(search, embedding, video, queries)
    return pairs.left, pairs.right


def _score_part(
    embedding: np.ndarray, layout: np.ndarray, before: np.ndarray, after: np.ndarray,
    left: np.ndarray, right: np.ndarray, threshold: float, batch_rows: int,
) -> np.ndarray:
    """One task: the :func:`sequence_similarity` of pairs ``left[i]``, ``right[i]`` (whole batches)."""
    shots = Shots.for_scores(embedding, layout, (before, after))

    def measure(s: Shots, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return sequence_similarity(s, a, b, threshold)

    return batched_similarity(shots, left, right, measure, batch_rows)


class RaySpread:
    """A :class:`pipeline.index.dedup.Spread` over the Ray this process is connected to, for
    one set of shots (the arrays are put into the object store at the first call, and freed by
    :meth:`close`). ``tasks``: parts per search or scoring (default :data:`TASKS_PER_CPU` per
    CPU of the cluster)."""

    def __init__(self, tasks: int | None = None) -> None:
        import ray

        if tasks is None:
            tasks = max(1, int(ray.cluster_resources().get("CPU", 1)) * TASKS_PER_CPU)
        self.tasks = tasks
        self._shots: Shots | None = None
        self._refs: dict[str, ObjectRef[Any]] = {}

    def _shared(self, shots: Shots, *names: str) -> list[ObjectRef[Any]]:
        """Object refs of ``shots``' arrays ``names``, each put once."""
        import ray

        if self._shots is not shots:
            self._refs.clear()
            self._shots = shots
        arrays = {
            "embedding": lambda: shots.embedding,
            "layout": lambda: shots.layout,
            "video": lambda: shots.video_number,
            "before": lambda: shots.neighbours[0],
            "after": lambda: shots.neighbours[1],
        }
        for name in names:
            if name not in self._refs:
                self._refs[name] = ray.put(arrays[name]())
        return [self._refs[name] for name in names]

    def candidate_pairs(self, shots: Shots, search: CandidateSearch, queries: np.ndarray) -> Pairs:
        import ray

        embedding, video = self._shared(shots, "embedding", "video")
        portable = search.portable()
        cpus = 1 if portable.index is None else task_cpus(portable.index.nbytes, _nodes())
        search_ref = ray.put(portable)
        parts = whole_blocks(len(queries), search.query_rows, max(1, self.tasks // cpus))
        log.info("dedup: the candidate search of %d shots in %d Ray tasks of %d CPUs", len(queries), len(parts), cpus)
        task = ray.remote(num_cpus=cpus)(_search_part)
        try:
            found = ray.get([task.remote(search_ref, embedding, video, queries[part], cpus) for part in parts])
        finally:
            del search_ref
        if not found:
            return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64))
        return Pairs(np.concatenate([left for left, _ in found]), np.concatenate([right for _, right in found]))

    def sequence_similarity(self, shots: Shots, left: np.ndarray, right: np.ndarray, threshold: float) -> np.ndarray:
        import ray

        if len(left) == 0:
            return np.zeros(0, np.float32)
        shared = self._shared(shots, "embedding", "layout", "before", "after")
        batch_rows = dedup.BATCH_ROWS
        parts = whole_blocks(len(left), batch_rows, self.tasks)
        log.info("dedup: the scores of %d candidate pairs in %d Ray tasks", len(left), len(parts))
        task: Any = ray.remote(num_cpus=1)(_score_part)  # eight arguments: more than Ray's stubs type
        scores = ray.get([task.remote(*shared, left[part], right[part], threshold, batch_rows) for part in parts])
        return np.concatenate(scores)

    def close(self) -> None:
        """Let the object store free the shared arrays."""
        self._refs.clear()
        self._shots = None


def _nodes() -> list[dict[str, float]]:
    """The resources of the cluster's live nodes."""
    import ray

    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def shared_bytes(shots: Shots) -> int:
    """What a run puts into the object store for ``shots``: the embeddings, layouts, video
    numbers and neighbours, and the inverted-file index (about 3.4 KB a shot: 34 GB at 10M)."""
    from pipeline.index.dedup import REDUCED_DIM

    per_shot = shots.embedding.itemsize * shots.embedding.shape[1] + shots.layout.itemsize * shots.layout.shape[1]
    return len(shots) * (per_shot + 3 * 8 + 4 * REDUCED_DIM + 8)


def ray_spread(config: Config, shots: Shots, tasks: int | None = None) -> RaySpread:
    """Connect to Ray as `vindex run` does (:func:`pipeline.execution.ray_runtime.init_ray`:
    the cluster of ``RAY_ADDRESS`` when set, else an embedded Ray on loopback, its object store
    at least as large as what ``shots`` puts there) and spread over it."""
    from pipeline.execution.ray_runtime import init_ray

    needed_mb = -(-shared_bytes(shots) // 2**20) + STORE_MARGIN_MB
    compute = config.compute
    if compute.embedded_object_store_mb < needed_mb:
        config = dataclasses.replace(config, compute=dataclasses.replace(compute, embedded_object_store_mb=needed_mb))
    init_ray(config)
    return RaySpread(tasks)


__all__ = ["RaySpread", "ray_spread", "shared_bytes", "task_cpus"]
