"""Near-duplicate shots and videos: the pair score and grouping on hand-built vectors, and
`vindex dedup` end to end on tiny hand-built indexes (no Ray, nothing decoded)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.algorithms.frame_stats import LAYOUT_FEATURES, LAYOUT_GRID
from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.clips.select import Selection, select_clips
from pipeline.errors import ConfigError
from pipeline.index import dedup
from pipeline.index.dedup import dedup_index, group_shots, pair_similarity, shots_from_arrays
from pipeline.index.export import export_index
from pipeline.index.query import run_query, table_names
from pipeline.index.schemas import DUPLICATES, DUPLICATES_TABLE, to_table
from pipeline.index.store import Index
from pipeline.models.spec import EMBEDDING_DIM

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
ROWS, COLS = LAYOUT_GRID


def unit(angle_deg: float, axis: int = 1) -> np.ndarray:
    """A unit embedding at ``angle_deg`` from the first axis, towards ``axis``."""
    vector = np.zeros(EMBEDDING_DIM, np.float32)
    vector[0], vector[axis] = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return vector


def picture(seed: int) -> np.ndarray:
    """A luma layout (16x9 blocks, 0-255) of its own: smooth random light and dark."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (3, 4))
    return np.kron(coarse, np.ones((3, 4)))[:ROWS, :COLS].astype(np.float32).ravel()


def mirror(layout: np.ndarray) -> np.ndarray:
    return layout.reshape(ROWS, COLS)[:, ::-1].ravel().copy()


# --- the score and the groups -------------------------------------------------------------------


def test_a_copy_scores_high_and_another_take_low() -> None:
    place = picture(1)
    shots = shots_from_arrays(
        ["orig", "mirrored", "darker", "take2", "old"],
        [0, 0, 0, 0, 0],
        np.stack([unit(0), unit(5), unit(8), unit(3), unit(20)]),
        # The other take shows the same place (a near embedding) with light and dark elsewhere.
        layout=np.stack([place, mirror(place), place * 0.6 + 10, picture(2), np.zeros(LAYOUT_FEATURES)]),
    )
    left, right = np.zeros(4, np.int64), np.arange(1, 5)
    scores = pair_similarity(shots, left, right)
    assert scores[0] == pytest.approx(1.0, abs=1e-3)  # mirrored: the mirror image correlates fully
    assert scores[1] == pytest.approx(1.0, abs=1e-3)  # darker: correlation ignores gain and offset
    assert scores[2] < 0.8  # same place, another picture: the embedding alone would say 0.999
    # A shot indexed before layouts were kept is compared by its embedding alone.
    assert scores[3] == pytest.approx(math.cos(math.radians(20)), abs=1e-3)


def test_the_embedding_caps_the_layout() -> None:
    """A picture laid out alike but showing something else (embeddings far apart) is no copy."""
    place = picture(3)
    shots = shots_from_arrays(["a", "b"], [0, 0], np.stack([unit(0), unit(60)]), layout=np.stack([place, place]))
    score = pair_similarity(shots, np.array([0]), np.array([1]))[0]
    assert score == pytest.approx(math.cos(math.radians(60)) + dedup.EMBEDDING_SLACK, abs=1e-3)


def test_groups_never_chain_look_alikes() -> None:
    """a~b and b~c, but a is not like c: b joins one of them, never all three in one group."""
    shots = shots_from_arrays(["a", "b", "c"], [0, 0, 0], np.stack([unit(0), unit(12), unit(24)]))
    threshold = math.cos(math.radians(15))
    grouping = group_shots(shots, threshold)
    groups = grouping.group_of.tolist()
    assert groups[0] != groups[2]
    assert groups[1] in (groups[0], groups[2])
    # With connected components all three would be one group: a chain of look-alikes.
    for group, rep in grouping.representative.items():
        members = [i for i, g in enumerate(groups) if g == group]
        assert all(pair_similarity(shots, np.array([rep]), np.array([m]))[0] >= threshold for m in members)


def test_shots_of_one_video_are_never_grouped_with_each_other() -> None:
    shots = shots_from_arrays(["a", "a", "b"], [0, 1, 0], np.stack([unit(0), unit(1), unit(90)]))
    grouping = group_shots(shots, 0.9)
    assert len(set(grouping.group_of.tolist())) == 3


def test_the_reduced_search_finds_the_same_duplicates_as_the_exact_one() -> None:
    # Like real embeddings, the vectors vary along far fewer directions than they have (here 64).
    rng = np.random.default_rng(7)
    basis = rng.normal(size=(64, EMBEDDING_DIM)).astype(np.float32)
    base = rng.normal(size=(600, 64)).astype(np.float32) @ basis
    copies = base[:100] + (rng.normal(scale=0.1, size=(100, 64)).astype(np.float32) @ basis)
    vectors = np.concatenate([base, copies])
    videos = [f"v{i}" for i in range(600)] + [f"c{i}" for i in range(100)]
    shots = shots_from_arrays(videos, [0] * 700, vectors)
    exact = group_shots(shots, 0.9)
    reduced = group_shots(shots, 0.9, exact_max_rows=100)  # 700 rows: the inverted-file search
    for i in range(100):
        assert exact.group_of[i] == exact.group_of[600 + i]
        assert reduced.group_of[i] == reduced.group_of[600 + i]
    assert len(set(reduced.group_of.tolist())) == 600


def vector(axis: int, angle_deg: float = 0.0) -> np.ndarray:
    """A unit embedding of its own subject (``axis``), turned ``angle_deg`` away from it."""
    out = np.zeros(EMBEDDING_DIM, np.float32)
    out[axis], out[axis + 100] = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return out


def part_of(layout: np.ndarray, seed: int, share: float = 0.5) -> np.ndarray:
    """The layout of part of a shot whose picture moves: the whole's blended with another."""
    return ((1 - share) * layout + share * picture(seed)).astype(np.float32)


def sequence_shots(copy_order: list[int], part_angle: float = 40.0) -> tuple[dedup.Shots, int, int]:
    """An original of three shots P, Q, R and a copy of them, its Q cut differently (a part of
    Q: its layout and embedding moved away); ``copy_order`` orders the copy's shots (0 P, 1 Q,
    2 R). Returns the shots and the rows of Q and of its part."""
    layouts = [picture(31), picture(32), picture(33)]
    copies = [layouts[0] + 2, part_of(layouts[1], 40), mirror(layouts[2])]
    copy_vectors = [vector(1, 6), vector(2, part_angle), vector(3, 4)]
    shots = shots_from_arrays(
        ["orig"] * 3 + ["copy"] * 3,
        [0, 1, 2, 0, 1, 2],
        np.stack([vector(1), vector(2), vector(3)] + [copy_vectors[k] for k in copy_order]),
        layout=np.stack(layouts + [copies[k] for k in copy_order]),
    )
    return shots, 1, 3 + copy_order.index(1)


def test_a_shot_cut_differently_is_held_up_by_the_shots_around_it() -> None:
    shots, q, part = sequence_shots([0, 1, 2])
    threshold = dedup.DEFAULT_THRESHOLD
    alone = pair_similarity(shots, np.array([q]), np.array([part]))[0]
    # By itself the part is too far from Q (another picture half the time; embedding cosine
    # 0.77, under what the threshold alone would let be scored at all), yet within the slack.
    assert threshold - dedup.SEQUENCE_SLACK <= alone < threshold - 0.1
    # P before both and R after both are duplicates by themselves: the part is held up.
    raised = dedup.sequence_similarity(shots, np.array([q, part]), np.array([part, q]), threshold)
    assert raised.tolist() == [threshold, threshold]
    grouping = group_shots(shots, threshold)
    assert grouping.group_of[q] == grouping.group_of[part]
    assert len(set(grouping.group_of.tolist())) == 3
    # Without the slack it stays apart.
    plain = group_shots(shots, threshold, similarity=lambda s, a, b: dedup.sequence_similarity(s, a, b, threshold, 0.0))
    assert plain.group_of[q] != plain.group_of[part]


def test_the_shots_around_must_follow_in_the_same_order() -> None:
    # The copy holds the same three shots, R first: nothing before or after the part matches.
    shots, q, part = sequence_shots([2, 1, 0])
    threshold = dedup.DEFAULT_THRESHOLD
    score = dedup.sequence_similarity(shots, np.array([q]), np.array([part]), threshold)[0]
    assert score == pytest.approx(pair_similarity(shots, np.array([q]), np.array([part]))[0]) and score < threshold
    grouping = group_shots(shots, threshold)
    assert grouping.group_of[q] != grouping.group_of[part]
    # P and R still find their copies by their own scores.
    assert grouping.group_of[0] == grouping.group_of[5] and grouping.group_of[2] == grouping.group_of[3]


def test_a_pair_too_far_below_the_threshold_is_not_held_up() -> None:
    # The part moved much further (embedding cosine 0.34): below threshold less the slack.
    shots, q, part = sequence_shots([0, 1, 2], part_angle=70)
    threshold = dedup.DEFAULT_THRESHOLD
    score = dedup.sequence_similarity(shots, np.array([q]), np.array([part]), threshold)[0]
    assert score < threshold - dedup.SEQUENCE_SLACK
    assert group_shots(shots, threshold).group_of[q] != group_shots(shots, threshold).group_of[part]


def test_neighbours_follow_shot_index_within_each_video() -> None:
    # Rows out of order, a gap in one video's shot numbers, a video of one shot.
    shots = shots_from_arrays(["b", "a", "b", "a", "c", "a"], [4, 1, 2, 0, 0, 5], np.stack([unit(0)] * 6))
    before, after = shots.neighbours
    assert before.tolist() == [2, 3, -1, -1, -1, 1]
    assert after.tolist() == [-1, 5, 0, 1, -1, -1]


def test_a_long_shot_counts_for_a_video_no_longer_than_the_footage_it_is_grouped_with() -> None:
    """x's second shot (6 s) runs over a cut its source has (o's 2 s shot, then footage of
    elsewhere): it is o's duplicate, yet shows at most 2 s of o: x is 2 s of 8 o's, not 6."""
    shots = shots_from_arrays(["o", "o", "o", "x", "x"], [0, 1, 2, 0, 1], np.stack([unit(0)] * 5),
                              duration_s=np.array([2.0, 2.0, 2.0, 2.0, 6.0]))
    grouping = dedup.Grouping(np.array(["g0", "g1", "g2", "g3", "g1"], dtype=object), {"g0": 0, "g1": 1, "g2": 2, "g3": 3})
    videos = {v.video_id: v for v in dedup.group_videos(shots, grouping)}
    assert videos["x"].size == 1 and videos["o"].size == 1
    # Where the shot is no longer than o's, it counts whole: x is half o's footage.
    shots.duration_s[4] = 2.0
    videos = {v.video_id: v for v in dedup.group_videos(shots, grouping)}
    assert videos["x"].group_id == videos["o"].group_id and videos["x"].share == pytest.approx(0.5)


# --- on an index ---------------------------------------------------------------------------------


def commit(index: Index, run_id: str, videos: dict[str, list[tuple[np.ndarray, np.ndarray | None]]],
           sizes: dict[str, tuple[int, int]] | None = None) -> None:
    """Commit ``videos``: per video its shots' (embedding, luma layout), each shot 2 s long."""
    sizes = sizes or {}
    index.commit_videos(
        {
            "videos": to_table("videos", [
                {"video_id": v, "uri": f"file:///{v}.mp4", "status": "ok", "run_id": run_id, "indexed_at": NOW,
                 "fps": 25.0, "width": sizes.get(v, (320, 180))[0], "height": sizes.get(v, (320, 180))[1]}
                for v in videos
            ]),
            "shots": to_table("shots", [
                {"video_id": v, "shot_index": i, "start_frame": 50 * i, "end_frame": 50 * i + 49, "start_s": 2.0 * i,
                 "end_s": 2.0 * i + 2.0, "transition": "cut", "embedding": e.tolist(), "run_id": run_id,
                 "luma_layout": None if layout is None else layout.tolist()}
                for v, shots in videos.items() for i, (e, layout) in enumerate(shots)
            ]),
        }
    )


@pytest.fixture
def index(tmp_path: Path) -> Index:
    """v1: shots A, B, C; v2: a smaller copy of A and B (the embeddings moved a little, A
    brighter and re-encoded, B mirrored); v3: another take of C's place (a near embedding,
    another layout)."""
    idx = Index(str(tmp_path / "idx"))
    idx.ensure()
    a, b, c = picture(10), picture(11), picture(12)
    commit(idx, "20260101T000000Z-r1", {
        "v1": [(unit(0, 1), a), (unit(0, 2), b), (unit(0, 3), c)],
        "v2": [(unit(10, 1), a + 3 + np.random.default_rng(0).normal(scale=6, size=a.shape)), (unit(12, 2), mirror(b))],
        "v3": [(unit(8, 3), picture(13))],
    }, sizes={"v2": (160, 90)})
    return idx


def shot_rows(index: Index) -> dict[tuple[str, int], dict[str, object]]:
    table = index.read(DUPLICATES_TABLE)
    return {(r["video_id"], r["shot_index"]): r for r in table.to_pylist() if r["level"] == "shot"}


def test_dedup_commits_the_duplicates_table(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dedup", index.uri]) == EXIT_OK
    out = capsys.readouterr().out
    assert "6 shots, 6 compared" in out and "2 groups of duplicate shots (2 duplicates)" in out
    assert "file:///v1.mp4 shot 0" in out
    table = index.read(DUPLICATES_TABLE)
    assert table.schema == DUPLICATES
    rows = shot_rows(index)
    assert len(rows) == 6  # every current shot, grouped or not
    # The best copy (v1: more pixels) represents each group; v2's shots are its duplicates.
    assert rows[("v2", 0)]["group_id"] == rows[("v1", 0)]["group_id"] != rows[("v1", 1)]["group_id"]
    assert rows[("v2", 1)]["group_id"] == rows[("v1", 1)]["group_id"]
    assert [rows[("v1", i)]["is_representative"] for i in range(3)] == [True, True, True]
    assert not rows[("v2", 0)]["is_representative"] and rows[("v2", 0)]["group_size"] == 2
    # Its layout is A's, brighter and a little noisy, under the embedding's cap (cos 10 degrees + slack).
    assert 0.95 < rows[("v2", 0)]["similarity"] < 0.999
    # Another take of C's place: alike by embedding (cos 8 degrees = 0.99), not a copy.
    assert rows[("v3", 0)]["group_size"] == 1 and rows[("v1", 2)]["group_size"] == 1
    # Videos: all of v2 is v1's footage; v3 is not.
    videos = {r["video_id"]: r for r in table.to_pylist() if r["level"] == "video"}
    assert videos["v2"]["group_id"] == videos["v1"]["group_id"] and videos["v1"]["is_representative"]
    assert videos["v2"]["similarity"] == pytest.approx(1.0)
    assert videos["v3"]["group_size"] == 1
    assert {r["run_id"] for r in table.to_pylist()} == {r["run_id"] for r in table.to_pylist()[:1]}


def test_a_rerun_lets_new_shots_join_without_comparing_the_old_ones(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    first = dedup_index(index)
    before = shot_rows(index)
    commit(index, "20260101T000100Z-r2", {"v4": [(unit(9, 1), picture(10) - 4), (unit(30, 5), picture(20))]})
    asked: list[list[tuple[str, int]]] = []
    searched = dedup.candidate_pairs

    def recording(shots, queries, **kwargs):  # type: ignore[no-untyped-def]
        asked.append([(shots.video_id[q], int(shots.shot_index[q])) for q in queries])
        return searched(shots, queries, **kwargs)

    monkeypatch.setattr(dedup, "candidate_pairs", recording)
    second = dedup_index(index)
    assert asked == [[("v4", 0), ("v4", 1)]]  # only the new shots are compared with the index
    assert (second.shots, second.compared, second.full) == (8, 2, False)
    after = shot_rows(index)
    # v4's first shot joins A's group, which keeps its id and representative.
    group_a = before[("v1", 0)]["group_id"]
    assert after[("v4", 0)]["group_id"] == group_a and after[("v1", 0)]["is_representative"]
    assert after[("v1", 0)]["group_size"] == 3 and after[("v4", 0)]["run_id"] == second.run_id
    # A group nothing joined is kept as it was, written by the first run.
    assert after[("v1", 1)] == before[("v1", 1)] and after[("v1", 1)]["run_id"] == first.run_id
    assert after[("v4", 1)]["group_size"] == 1


def test_a_video_indexed_again_is_compared_again_and_its_old_rows_go(index: Index) -> None:
    dedup_index(index)
    # v1 indexed again: now only its shot B; A's group loses its representative.
    commit(index, "20260101T000200Z-r3", {"v1": [(unit(0, 2), picture(11))]})
    summary = dedup_index(index)
    assert summary.compared == 1
    rows = shot_rows(index)
    assert set(rows) == {("v1", 0), ("v2", 0), ("v2", 1), ("v3", 0)}
    assert rows[("v1", 0)]["video_run_id"] == "20260101T000200Z-r3"
    assert rows[("v1", 0)]["group_id"] == rows[("v2", 1)]["group_id"]  # B joins its copy's group
    assert rows[("v2", 0)]["is_representative"] and rows[("v2", 0)]["group_size"] == 1  # A's copy, alone now


def test_another_threshold_compares_everything_again(index: Index) -> None:
    dedup_index(index)
    summary = dedup_index(index, threshold=0.999)
    assert (summary.compared, summary.full, summary.shot_groups) == (6, True, 2)
    # A's noisy copy falls below it by its own score; but the next shots of both videos (B and
    # its mirror image, exact) are duplicates: it is held up by them, at the threshold.
    rows = shot_rows(index)
    assert rows[("v2", 0)]["group_id"] == rows[("v1", 0)]["group_id"]
    assert rows[("v2", 0)]["similarity"] == pytest.approx(0.999)
    assert [r["threshold"] for r in shot_rows(index).values()] == pytest.approx([0.999] * 6)


def test_query_and_export_see_the_table(index: Index, tmp_path: Path) -> None:
    assert DUPLICATES_TABLE not in table_names(index)
    dedup_index(index)
    assert DUPLICATES_TABLE in table_names(index)
    found = run_query(index, "SELECT count(*) AS n FROM duplicates WHERE level = 'shot' AND NOT is_representative")
    assert found.column("n").to_pylist() == [2]
    summary = export_index(index, str(tmp_path / "export"))
    exported = {t.table: t.rows for t in summary.tables}
    assert exported[DUPLICATES_TABLE] == 6 + 3
    assert pq.read_table(tmp_path / "export" / DUPLICATES_TABLE).num_rows == 9


def test_the_report_counts_the_duplicates(index: Index, tmp_path: Path) -> None:
    from pipeline.index.report import write_report

    write_report(index, tmp_path / "before")
    assert "duplicate shots" not in (tmp_path / "before" / "index.html").read_text()
    dedup_index(index)
    write_report(index, tmp_path / "after")
    page = (tmp_path / "after" / "index.html").read_text()
    assert "<b>2</b> duplicate shots" in page and "<b>1</b> duplicate videos" in page


def test_clips_unique_keeps_one_shot_per_group(index: Index) -> None:
    with pytest.raises(ConfigError, match="run `vindex dedup"):
        select_clips(index, Selection(unique=True))
    dedup_index(index)
    every = {(c.video_id, c.unit_index) for c in select_clips(index, Selection())}
    unique = {(c.video_id, c.unit_index) for c in select_clips(index, Selection(unique=True))}
    assert every - unique == {("v2", 0), ("v2", 1)}
    # A video indexed since the last dedup: its shots are in no group yet, so they are kept.
    commit(index, "20260101T000300Z-r4", {"v5": [(unit(10, 1), picture(10))]})
    assert ("v5", 0) in {(c.video_id, c.unit_index) for c in select_clips(index, Selection(unique=True))}
    with pytest.raises(ConfigError, match="--by shot"):
        Selection(by="scene", unique=True)


def test_dedup_command_errors(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dedup", index.uri, "--threshold", "1.5"]) == EXIT_USAGE
    assert "--threshold must be in (0, 1]" in capsys.readouterr().err
    assert main(["clips", index.uri, "--out", str(Path(index.uri).parent / "clips"), "--unique", "--quiet"]) == EXIT_USAGE
    assert "run `vindex dedup" in capsys.readouterr().err


def test_video_level_lists_videos(index: Index, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dedup", index.uri, "--level", "video"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "1 groups of duplicate videos (1 duplicates)" in out
    assert "(2 videos): file:///v1.mp4" in out and "1.000  file:///v2.mp4" in out


def test_the_table_is_typed_by_its_schema() -> None:
    assert DUPLICATES.names == [
        "group_id", "level", "video_id", "shot_index", "similarity", "is_representative", "group_size",
        "video_run_id", "threshold", "run_id",
    ]
    assert DUPLICATES.field("shot_index").type == pa.int32()


def test_the_help_shows_the_default_threshold() -> None:
    from pipeline import cli

    assert float(cli.DEDUP_THRESHOLD_SHOWN) == dedup.DEFAULT_THRESHOLD


def test_a_plain_dedup_never_starts_ray(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.execution import ray_runtime

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ray started")

    monkeypatch.setattr(ray_runtime, "init_ray", refuse)
    assert main(["dedup", index.uri]) == EXIT_OK
    with pytest.raises(AssertionError, match="Ray started"):
        main(["dedup", index.uri, "--ray"])


def test_dedup_on_ray_writes_the_table_a_plain_run_writes(
    index: Index, ray_local: object, capsys: pytest.CaptureFixture[str]
) -> None:
    def rows() -> list[tuple[object, ...]]:
        table = index.read(DUPLICATES_TABLE).drop_columns(["run_id"])
        return sorted(tuple(r.values()) for r in table.to_pylist())

    assert main(["dedup", index.uri, "--full"]) == EXIT_OK
    plain = rows()
    assert main(["dedup", index.uri, "--full", "--ray"]) == EXIT_OK
    assert rows() == plain
    assert "2 groups of duplicate shots (2 duplicates)" in capsys.readouterr().out


def test_the_job_spreads_over_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    import jobs.dedup

    asked: list[list[str]] = []
    monkeypatch.setattr(jobs.dedup, "cli_main", lambda argv: asked.append(argv) or EXIT_OK)
    assert jobs.dedup.main(["s3://videos/index", "--full"]) == EXIT_OK
    assert asked == [["--log-level", "INFO", "dedup", "s3://videos/index", "--full", "--ray"]]
