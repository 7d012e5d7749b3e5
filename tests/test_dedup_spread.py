"""`vindex dedup --ray`: the candidate search and pair scores cut into parts of whole blocks,
and on Ray the same pairs, scores and groups as in one process."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.algorithms.frame_stats import LAYOUT_GRID
from pipeline.index import dedup
from pipeline.index.dedup import CandidateSearch, Pairs, Shots, group_shots, shots_from_arrays, whole_blocks
from pipeline.models.spec import EMBEDDING_DIM


def picture(rng: np.random.Generator) -> np.ndarray:
    """A luma layout (0-255) of its own: smooth random light and dark."""
    rows, cols = LAYOUT_GRID
    return np.kron(rng.uniform(0, 255, (3, 4)), np.ones((3, 4)))[:rows, :cols].astype(np.float32).ravel()


def look_alike_shots(count: int = 1200, copies: int = 200, seed: int = 7, noise: float = 0.1) -> Shots:
    """Shots whose vectors vary along 64 directions (as real embeddings vary along far fewer
    than they have), three shots a video, the last ``copies`` shots near copies of the first,
    each with a layout of its own (a copy's its source's plus noise). Fewer shots than
    dimensions: faiss's PCA then decomposes the shots' Gram matrix, not a 1,280-square one
    (seconds)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(64, EMBEDDING_DIM)).astype(np.float32)
    # Around a common direction, so that most pairs are alike (cosine 0.85 or so), as real shots are.
    common = rng.normal(size=64).astype(np.float32)
    base = rng.normal(size=(count - copies, 64)).astype(np.float32) + 20 * common / np.linalg.norm(common)
    vectors = np.concatenate([base, base[:copies] + rng.normal(scale=noise, size=(copies, 64)).astype(np.float32)]) @ basis
    layouts = np.stack([picture(rng) for _ in range(count - copies)])
    layouts = np.concatenate([layouts, layouts[:copies] + rng.normal(scale=4, size=(copies, layouts.shape[1]))])
    videos = [f"v{i // 3}" for i in range(count - copies)] + [f"c{i // 3}" for i in range(copies)]
    return shots_from_arrays(videos, [i % 3 for i in range(count)], vectors, layout=layouts)


class InProcessSpread:
    """The spread's cutting into parts, each part run here: what RaySpread's tasks run."""

    def __init__(self, tasks: int) -> None:
        self.tasks = tasks
        self.parts: list[int] = []

    def candidate_pairs(self, shots: Shots, search: CandidateSearch, queries: np.ndarray) -> Pairs:
        portable = search.portable()  # as a task gets it: the index serialised
        found = [dedup.search_blocks(portable, shots.embedding, shots.video_number, queries[part])
                 for part in whole_blocks(len(queries), search.query_rows, self.tasks)]
        self.parts.append(len(found))
        return Pairs(np.concatenate([f.left for f in found]), np.concatenate([f.right for f in found]))

    def sequence_similarity(self, shots: Shots, left: np.ndarray, right: np.ndarray, threshold: float) -> np.ndarray:
        from pipeline.execution.dedup_spread import _score_part

        before, after = shots.neighbours
        parts = whole_blocks(len(left), dedup.BATCH_ROWS, self.tasks)
        self.parts.append(len(parts))
        return np.concatenate([
            _score_part(shots.embedding, shots.layout, before, after, left[p], right[p], threshold, dedup.BATCH_ROWS)
            for p in parts
        ])

    def close(self) -> None:
        pass


def test_a_large_index_is_searched_by_tasks_of_several_cpus() -> None:
    from pipeline.execution.dedup_spread import task_cpus

    gb = 2**30
    assert task_cpus(50 * 2**20, [{"CPU": 16.0, "memory": 64.0 * gb}]) == 1  # 100k shots: a task a CPU
    # 10M shots (5 GB): a quarter of 64 GB holds 3 copies, so 16 CPUs make 3 tasks of 6.
    assert task_cpus(5 * gb, [{"CPU": 16.0, "memory": 64.0 * gb}]) == 6
    # The node with the least memory per CPU decides; a node too small for two copies gives a task all its CPUs.
    assert task_cpus(5 * gb, [{"CPU": 16.0, "memory": 256.0 * gb}, {"CPU": 8.0, "memory": 32.0 * gb}]) == 8
    assert task_cpus(5 * gb, [{"CPU": 0.0, "memory": 8.0 * gb}, {"CPU": 4.0, "memory": 128.0 * gb}]) == 1  # a head without CPUs


def test_whole_blocks_cut_at_block_multiples_in_order() -> None:
    assert whole_blocks(10, 3, 2) == [slice(0, 6), slice(6, 10)]
    assert whole_blocks(10, 3, 9) == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]  # at most a part a block
    assert whole_blocks(7, 8, 4) == [slice(0, 7)]
    assert whole_blocks(0, 8, 4) == []
    parts = whole_blocks(10_000, 1024, 4)
    assert [p.start % 1024 for p in parts] == [0, 0, 0, 0] and parts[-1].stop == 10_000
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


@pytest.fixture
def built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inverted-file index built once per set of shots in the test (its build, a PCA of
    1,280 dimensions, takes seconds; it is the same every time)."""
    build = dedup._reduced_index
    built: dict[tuple[int, int], object] = {}

    def once(vectors: np.ndarray, rows: np.ndarray) -> object:
        key = (id(vectors), len(rows))
        if key not in built:
            built[key] = build(vectors, rows)
        return built[key]

    monkeypatch.setattr(dedup, "_reduced_index", once)


def test_a_search_and_scores_cut_into_parts_find_what_one_pass_finds(monkeypatch: pytest.MonkeyPatch, built_once: None) -> None:
    # Blocks of 128 queries and of 128 pairs: 1,200 queries and the pairs make several parts.
    monkeypatch.setattr(dedup, "QUERY_BATCH", 128)
    monkeypatch.setattr(dedup, "BATCH_ROWS", 128)
    shots = look_alike_shots()
    queries = np.arange(len(shots))
    for exact_max_rows in (dedup.EXACT_MAX_ROWS, 500):  # exact, then the inverted-file search
        local = dedup.candidate_pairs(shots, queries, exact_max_rows=exact_max_rows)
        spread = InProcessSpread(tasks=5)
        cut = dedup.candidate_pairs(shots, queries, exact_max_rows=exact_max_rows, spread=spread)
        assert spread.parts == [5] and len(local) > 10 * len(shots)
        assert np.array_equal(local.left, cut.left) and np.array_equal(local.right, cut.right)
    spread = InProcessSpread(tasks=5)
    grouped = group_shots(shots, 0.9, exact_max_rows=500, spread=spread)
    alone = group_shots(shots, 0.9, exact_max_rows=500)
    assert spread.parts == [5, 5]  # the search, then the scores among the new shots
    assert grouped.group_of.tolist() == alone.group_of.tolist() and grouped.representative == alone.representative
    assert sum(1 for rows in alone.members().values() if len(rows) > 1) >= 180  # the copies found


class ShuffledIndex:
    """A searched index that returns each query's neighbours in an order of its own choosing,
    as faiss does for neighbours at equal distance depending on its threads."""

    def __init__(self, found: np.ndarray, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.found = np.stack([rng.permutation(row) for row in found])

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(vectors), k), np.float32), self.found[: len(vectors), :k]


def test_the_pairs_do_not_depend_on_the_order_the_index_returns_neighbours_in() -> None:
    shots = look_alike_shots(count=60, copies=12)
    usable, queries = np.arange(60), np.arange(60)
    nearest = np.argsort(-(shots.embedding.astype(np.float32) @ shots.embedding.astype(np.float32).T), axis=1)[:, :6]
    pairs = [dedup.search_blocks(CandidateSearch(usable, 6, None, ShuffledIndex(nearest, seed), 64),
                                 shots.embedding, shots.video_number, queries) for seed in (1, 2)]
    assert len(pairs[0]) > 60
    assert np.array_equal(pairs[0].left, pairs[1].left) and np.array_equal(pairs[0].right, pairs[1].right)


def test_on_ray_the_pairs_and_groups_are_those_of_one_process(
    ray_local: object, built_once: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.execution.dedup_spread import RaySpread

    # The tasks get the driver's block sizes with their parts: blocks of 256 queries and of 2,048 pairs.
    monkeypatch.setattr(dedup, "QUERY_BATCH", 256)
    monkeypatch.setattr(dedup, "BATCH_ROWS", 2048)

    shots = look_alike_shots()
    queries = np.arange(len(shots))
    spread = RaySpread(tasks=3)
    try:
        for exact_max_rows in (dedup.EXACT_MAX_ROWS, 500):
            local = dedup.candidate_pairs(shots, queries, exact_max_rows=exact_max_rows)
            remote = dedup.candidate_pairs(shots, queries, exact_max_rows=exact_max_rows, spread=spread)
            assert len(local) > 10 * len(shots)
            assert np.array_equal(local.left, remote.left) and np.array_equal(local.right, remote.right)
        scores = spread.sequence_similarity(shots, local.left, local.right, 0.9)
        assert len(scores) == len(local) > dedup.BATCH_ROWS * 3  # three parts of whole batches
        assert np.array_equal(scores, dedup.batched_similarity(shots, local.left, local.right,
                                                               lambda s, a, b: dedup.sequence_similarity(s, a, b, 0.9)))
        grouped = group_shots(shots, 0.9, exact_max_rows=500, spread=spread)
    finally:
        spread.close()
    alone = group_shots(shots, 0.9, exact_max_rows=500)
    assert grouped.group_of.tolist() == alone.group_of.tolist() and grouped.representative == alone.representative


@pytest.mark.parametrize(("noise", "floor"), [(1.0, 0.9), (1.5, 0.52)])
def test_the_inverted_file_search_keeps_the_copies_an_exact_search_keeps_above_the_floor(noise: float, floor: float) -> None:
    """Its candidates' cosines are taken on the full vectors: PCA centres the vectors, and where
    shots share a common direction (as real embeddings do) the reduced cosines of alike shots
    fall far under the full ones, so a floor on them dropped copies (1 of 198 found, and 153 of
    200, in these two cases)."""
    copies = 200
    shots = look_alike_shots(copies=copies, noise=noise)
    queries = np.arange(len(shots))
    originals = len(shots) - copies

    def copy_pairs(pairs: Pairs) -> int:
        found = {(int(a), int(b)) for a, b in zip(pairs.left, pairs.right)}
        return sum((i, originals + i) in found or (originals + i, i) in found for i in range(copies))

    exact = copy_pairs(dedup.candidate_pairs(shots, queries, floor=floor))
    inverted = dedup.candidate_pairs(shots, queries, floor=floor, exact_max_rows=100)
    assert exact >= 0.95 * copies
    assert copy_pairs(inverted) >= 0.95 * exact, (copy_pairs(inverted), exact)
    cosines = np.einsum("ij,ij->i", shots.embedding[inverted.left].astype(np.float32),
                        shots.embedding[inverted.right].astype(np.float32))
    assert cosines.min() >= floor - 1e-3
