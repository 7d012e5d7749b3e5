"""The ANN index kept with the index: same answers as exact search, never stale, never
trusted when damaged, built by `vindex compact` above its threshold."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.cli import EXIT_OK, main
from pipeline.errors import IndexWriteError
from pipeline.index import ann, similarity
from pipeline.index.schemas import to_table
from pipeline.index.store import Index
from pipeline.models.spec import EMBEDDING_DIM

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
VIDEOS = 30
FRAMES = 8
#: fp16 storage rounds each score by well under this (unit vectors: |error| <= 1280 * 2^-11 * max|x|,
#: and in practice about 1e-4); ranks are compared where neighbours' scores differ by more.
FP16_SCORE_TOLERANCE = 2e-3


def _vectors(rng: np.random.Generator, count: int, centre: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors in a tight group around ``centre`` (a random direction when omitted)."""
    if centre is None:
        centre = rng.standard_normal(EMBEDDING_DIM).astype(np.float32)
        centre /= np.linalg.norm(centre)
    noise = rng.standard_normal((count, EMBEDDING_DIM)).astype(np.float32) * (0.6 / np.sqrt(EMBEDDING_DIM))
    vectors = centre + noise
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def commit(index: Index, run_id: str, videos: dict[str, tuple[list[int], np.ndarray]]) -> None:
    """Commit ``videos`` (id -> (frames, embeddings)) as run ``run_id`` would."""
    index.commit_videos(
        {
            "videos": to_table(
                "videos",
                [{"video_id": v, "uri": f"file:///{v}.mp4", "status": "ok", "run_id": run_id, "indexed_at": NOW} for v in videos],
            ),
            "keyframes": to_table(
                "keyframes",
                [
                    {"video_id": v, "shot_index": i, "scene_index": 0, "frame": f, "time_s": f / 25, "score": 1.0,
                     "embedding": e.tolist(), "thumbnail": b"\xff\xd8", "run_id": run_id}
                    for v, (frames, vectors) in videos.items()
                    for i, (f, e) in enumerate(zip(frames, vectors))
                ],
            ),
            # Two shots a video, each the normalised mean of half its keyframes' embeddings.
            "shots": to_table(
                "shots",
                [
                    {"video_id": v, "shot_index": i, "start_frame": frames[i * len(frames) // 2],
                     "end_frame": frames[i * len(frames) // 2] + 9, "start_s": frames[i * len(frames) // 2] / 25,
                     "end_s": (frames[i * len(frames) // 2] + 10) / 25, "transition": "cut", "run_id": run_id,
                     "embedding": _mean(vectors[i * len(frames) // 2 : (i + 1) * len(frames) // 2]).tolist()}
                    for v, (frames, vectors) in videos.items()
                    for i in range(2 if len(frames) > 1 else 0)
                ],
            ),
        }
    )


def _mean(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


@pytest.fixture
def exhaustive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every inverted list probed: the IVF search is then exhaustive, so it must find what
    exact search finds (up to the float16 rounding of the stored vectors)."""
    monkeypatch.setattr(ann, "NPROBE", 1_000_000)


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Index, dict[str, np.ndarray]]:
    """30 videos of 8 keyframes each, in groups of 3 similar videos, committed by run r1."""
    rng = np.random.default_rng(7)
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    videos: dict[str, tuple[list[int], np.ndarray]] = {}
    for group in range(VIDEOS // 3):
        centre = _vectors(rng, 1)[0]
        for member in range(3):
            videos[f"v{group * 3 + member:02d}"] = (list(range(0, FRAMES * 10, 10)), _vectors(rng, FRAMES, centre))
    commit(index, "r1", videos)
    return index, {v: e for v, (_, e) in videos.items()}


def _pairs(result: pa.Table) -> list[tuple[str, int]]:
    return list(zip(result.column("video_id").to_pylist(), result.column("frame").to_pylist()))


def assert_same_answers(approximate: pa.Table, exact: pa.Table) -> None:
    """Same rows, same scores within the float16 tolerance, same order except between
    neighbours whose exact scores are within that tolerance."""
    assert approximate.schema.remove_metadata() == exact.schema.remove_metadata() == similarity.RESULT
    assert sorted(_pairs(approximate)) == sorted(_pairs(exact))
    score_of = dict(zip(_pairs(exact), exact.column("score").to_pylist()))
    got = approximate.column("score").to_pylist()
    assert got == pytest.approx([score_of[p] for p in _pairs(approximate)], abs=FP16_SCORE_TOLERANCE)
    for (a, b), ranked in zip(zip(_pairs(approximate), _pairs(exact)), range(exact.num_rows)):
        if a != b:
            assert abs(score_of[a] - score_of[b]) <= FP16_SCORE_TOLERANCE, (ranked, a, b)
    assert approximate.column("rank").to_pylist() == list(range(1, exact.num_rows + 1))
    assert approximate.column("uri").to_pylist() == [f"file:///{v}.mp4" for v, _ in _pairs(approximate)]


def _path(result: pa.Table) -> similarity.SearchPath:
    path = similarity.search_path(result)
    assert path is not None
    return path


def test_ann_answers_equal_exact_answers(corpus: tuple[Index, dict[str, np.ndarray]], exhaustive: None) -> None:
    index, embeddings = corpus
    info = ann.build(index, min_rows=1)
    assert info is not None and info.rows == VIDEOS * FRAMES and info.covered == VIDEOS
    rng = np.random.default_rng(1)
    queries = [embeddings["v00"][0], embeddings["v17"][5], *_vectors(rng, 3)]
    for query in queries:
        approximate = similarity.search(index, query, k=10)
        exact = similarity.search(index, query, k=10, exact=True)
        assert_same_answers(approximate, exact)
        assert _path(approximate) == similarity.SearchPath("approximate", info.build, VIDEOS * FRAMES, 0, 0)
        assert _path(exact).kind == "exact" and _path(exact).scanned_exactly == VIDEOS * FRAMES


def test_default_probing_finds_each_keyframe_itself_first(corpus: tuple[Index, dict[str, np.ndarray]]) -> None:
    index, embeddings = corpus
    assert ann.build(index, min_rows=1) is not None
    for video_id in ("v03", "v21"):
        result = similarity.similar(index, keyframe=(video_id, 30), k=3)
        assert _pairs(result)[0] == (video_id, 30)
        assert result.column("score")[0].as_py() == pytest.approx(1.0, abs=FP16_SCORE_TOLERANCE)
        assert _path(result).kind == "approximate"


def test_below_the_threshold_nothing_is_built_and_search_is_exact(corpus: tuple[Index, dict[str, np.ndarray]]) -> None:
    index, embeddings = corpus
    assert ann.build(index, min_rows=VIDEOS * FRAMES + 1) is None
    assert not (Path(index.uri) / ann.FOLDER).exists()
    result = similarity.search(index, embeddings["v05"][2], k=4)
    assert _path(result).kind == "exact"
    assert _pairs(result)[0] == ("v05", 20)


@pytest.mark.parametrize("in_memory", [True, False], ids=["kept in memory", "read at each search"])
def test_rows_committed_after_the_build_are_found(
    corpus: tuple[Index, dict[str, np.ndarray]], exhaustive: None, in_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    index, embeddings = corpus
    assert ann.build(index, min_rows=1) is not None
    if not in_memory:
        monkeypatch.setattr(ann, "RECENT_IN_MEMORY_ROWS", 0)
    rng = np.random.default_rng(3)
    fresh = _vectors(rng, 3)
    # A search before the commit: what it kept between searches must not hide the new rows.
    assert "new" not in similarity.search(index, fresh[1], k=5).column("video_id").to_pylist()
    # One new video, and one beside a group already indexed: both must rank among the old rows.
    near = _vectors(rng, 2, embeddings["v09"][0])
    commit(index, "r2", {"new": ([1, 2, 3], fresh), "near": ([5, 6], near)})
    result = similarity.search(index, fresh[1], k=5)
    assert _pairs(result)[0] == ("new", 2)
    assert _path(result).kind == "approximate"
    assert _path(result).scanned_exactly == 5  # the two new videos' rows, not the table
    mixed = similarity.search(index, embeddings["v09"][0], k=12)
    assert_same_answers(mixed, similarity.search(index, embeddings["v09"][0], k=12, exact=True))
    assert {"near", "v09"} <= set(mixed.column("video_id").to_pylist())


def test_a_compaction_after_the_build_neither_duplicates_nor_loses_rows(
    corpus: tuple[Index, dict[str, np.ndarray]], exhaustive: None
) -> None:
    """Compaction rewrites the rows the build holds into new files: they are not scored again."""
    from pipeline.index.maintenance import compact_index

    index, embeddings = corpus
    assert ann.build(index, min_rows=1) is not None
    rng = np.random.default_rng(9)
    near = _vectors(rng, 2, embeddings["v12"][0])
    commit(index, "r2", {"near": ([5, 6], near)})
    compact_index(index, retention_hours=1)
    result = similarity.search(index, embeddings["v12"][0], k=12)
    assert len(set(_pairs(result))) == 12
    assert _path(result).scanned_exactly == 2  # of the rewritten file, only the rows the build lacks
    assert_same_answers(result, similarity.search(index, embeddings["v12"][0], k=12, exact=True))


def test_rows_committed_before_the_build_and_marked_after_it_are_found(
    corpus: tuple[Index, dict[str, np.ndarray]], exhaustive: None
) -> None:
    """A run appends its keyframes, the build reads them (masked: no marker names them yet),
    then the run writes its markers: the build's copy of them is served from then on."""
    index, _ = corpus
    rng = np.random.default_rng(13)
    late = _vectors(rng, 3)
    videos = {"late": ([7, 8, 9], late)}
    commit(index, "r3", videos)
    index._delete_where("videos", "video_id = 'late'")  # as before its marker: rows, no marker
    info = ann.build(index, min_rows=1)
    assert info is not None and info.rows == VIDEOS * FRAMES + 3
    assert "late" not in similarity.search(index, late[0], k=5).column("video_id").to_pylist()
    index.mark_videos(
        to_table("videos", [{"video_id": "late", "uri": "file:///late.mp4", "status": "ok", "run_id": "r3", "indexed_at": NOW}])
    )
    result = similarity.search(index, late[0], k=5)
    assert _pairs(result)[0] == ("late", 7)
    assert _path(result).scanned_exactly == 0 and _path(result).stale_rows == 0


def test_replaced_and_deleted_videos_old_rows_are_never_returned(
    corpus: tuple[Index, dict[str, np.ndarray]], exhaustive: None
) -> None:
    index, embeddings = corpus
    assert ann.build(index, min_rows=1) is not None
    # v04 indexed again by r2 (its old rows linger: r1 is not recorded as over, so they are
    # not collected); v05's marker removed.
    rng = np.random.default_rng(5)
    replacement = _vectors(rng, 2)
    commit(index, "r2", {"v04": ([100, 110], replacement)})
    index._delete_where("videos", "video_id = 'v05'")
    raw = index._delta("keyframes").to_pyarrow_dataset().to_table(columns=["video_id", "run_id"]).to_pylist()
    assert {"video_id": "v04", "run_id": "r1"} in raw and {"video_id": "v05", "run_id": "r1"} in raw

    for query in (embeddings["v04"][0], embeddings["v05"][0], replacement[0]):
        result = similarity.search(index, query, k=20)
        assert not {"v05"} & set(result.column("video_id").to_pylist())
        assert not [p for p in _pairs(result) if p[0] == "v04" and p[1] < 100]
        assert _path(result).stale_rows == 2 * FRAMES
        assert_same_answers(result, similarity.search(index, query, k=20, exact=True))
    assert _pairs(similarity.search(index, replacement[0], k=1)) == [("v04", 100)]
    # The ANN's own copy of a replaced keyframe is not used as a query either.
    with pytest.raises(similarity.SimilarError, match="no keyframes of a video with id 'v05'"):
        similarity.similar(index, keyframe=("v05", 0))


def _current_folder(index: Index) -> Path:
    root = Path(index.uri) / ann.FOLDER / "keyframe"
    return root / json.loads((root / ann.POINTER).read_text())["build"]


@pytest.mark.parametrize("damage", ["truncated vectors", "missing rows", "garbage pointer", "rows of another build"])
def test_a_damaged_ann_index_falls_back_to_exact_search_with_a_warning(
    corpus: tuple[Index, dict[str, np.ndarray]], damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    index, embeddings = corpus
    assert ann.build(index, min_rows=1) is not None
    folder = _current_folder(index)
    if damage == "truncated vectors":
        data = (folder / ann.VECTORS).read_bytes()
        (folder / ann.VECTORS).write_bytes(data[: len(data) // 2])
    elif damage == "missing rows":
        (folder / ann.ROWS).unlink()
    elif damage == "garbage pointer":
        (folder.parent / ann.POINTER).write_text('{"format": 1, "build": ')
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(folder / ann.ROWS)
        pq.write_table(rows.slice(0, rows.num_rows - 1), folder / ann.ROWS)
    ann._LOADED.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.index.similarity"):
        result = similarity.search(index, embeddings["v11"][3], k=5)
    assert _path(result).kind == "exact"
    assert _pairs(result)[0] == ("v11", 30)
    assert any("cannot be used, searching exactly" in r.getMessage() for r in caplog.records)


def test_a_build_replaces_the_pointer_last_and_keeps_one_previous_build(
    corpus: tuple[Index, dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    index, _ = corpus
    first = ann.build(index, min_rows=1)
    second = ann.build(index, min_rows=1)
    assert first is not None and second is not None
    root = Path(index.uri) / ann.FOLDER / "keyframe"
    # A build that dies before its pointer is written leaves the current one in force.
    monkeypatch.setattr(ann, "_write_pointer", lambda fs, root, text: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(IndexWriteError, match="cannot write the ANN index of .*: killed"):
        ann.build(index, min_rows=1)
    monkeypatch.undo()
    assert json.loads((root / ann.POINTER).read_text())["build"] == second.build
    ann._LOADED.clear()
    assert ann.load(index.uri).info == second
    dead = {p.name for p in root.iterdir() if p.is_dir()} - {first.build, second.build}
    assert len(dead) == 1
    third = ann.build(index, min_rows=1)
    assert third is not None
    # Builds older than the previous one go; the dead one is newer than that (it could be
    # another compaction's, still being written), so it stays until the next build.
    assert {p.name for p in root.iterdir() if p.is_dir()} == {second.build, *dead, third.build}
    fourth = ann.build(index, min_rows=1)
    assert fourth is not None
    assert {p.name for p in root.iterdir() if p.is_dir()} == {third.build, fourth.build}
    assert [p.name for p in root.iterdir() if p.is_file()] == [ann.POINTER]


def test_compact_builds_the_ann_index_above_its_threshold(
    corpus: tuple[Index, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    index, embeddings = corpus
    assert main(["compact", index.uri]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"no ANN index of keyframes: under {ann.MIN_ROWS} rows" in out and "no ANN index of shots" in out
    assert not (Path(index.uri) / ann.FOLDER).exists()
    assert main(["compact", index.uri, "--similar-min-rows", "100"]) == EXIT_OK
    out = capsys.readouterr().out
    assert f"of {VIDEOS * FRAMES} keyframes written" in out
    assert "no ANN index of shots: under 100 rows" in out  # 60 shots
    assert main(["compact", index.uri, "--similar-min-rows", "50"]) == EXIT_OK
    assert f"of {VIDEOS * 2} shots written" in capsys.readouterr().out
    assert main(["similar", index.uri, "--keyframe", "v02:40", "-k", "2", "--level", "shot", "--format", "csv"]) == EXIT_OK
    shots = capsys.readouterr().out.strip().splitlines()
    assert shots[0].split(",") == [name for name in similarity.SHOT_RESULT.names]
    assert shots[1].split(",")[3:5] == ["v02", "1"]  # frame 40 is in the second shot's half
    assert main(["similar", index.uri, "--keyframe", "v02:40", "-k", "2", "--format", "csv"]) == EXIT_OK
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(",")[:7] == ["rank", "score", "uri", "video_id", "shot_index", "scene_index", "frame"]
    assert lines[1].split(",")[3:7] == ["v02", "4", "0", "40"]
    result = similarity.search(index, embeddings["v02"][4], k=2)
    assert _path(result).kind == "approximate"


def test_shot_level_answers_equal_exact_answers(corpus: tuple[Index, dict[str, np.ndarray]], exhaustive: None) -> None:
    index, embeddings = corpus
    info = ann.build(index, min_rows=1, level="shot")
    assert info is not None and info.rows == VIDEOS * 2
    assert ann.build(index, min_rows=1) is not None  # the keyframe level beside it, in its own folder
    assert {p.name for p in (Path(index.uri) / ann.FOLDER).iterdir()} == {"keyframe", "shot"}
    # v07 indexed again: its old shots are masked, its new ones found since the build.
    rng = np.random.default_rng(17)
    commit(index, "r2", {"v07": ([200, 210], _vectors(rng, 2, embeddings["v08"][0]))})
    for query in (embeddings["v08"][0], embeddings["v07"][0], _vectors(rng, 1)[0]):
        approximate = similarity.search(index, query, k=6, level="shot")
        exact = similarity.search(index, query, k=6, exact=True, level="shot")
        assert approximate.schema.remove_metadata() == exact.schema.remove_metadata() == similarity.SHOT_RESULT
        assert [tuple(r.values()) for r in approximate.select(["video_id", "shot_index", "start_frame"]).to_pylist()] == [
            tuple(r.values()) for r in exact.select(["video_id", "shot_index", "start_frame"]).to_pylist()
        ]
        assert approximate.column("score").to_pylist() == pytest.approx(exact.column("score").to_pylist(), abs=FP16_SCORE_TOLERANCE)
        assert _path(approximate).kind == "approximate" and _path(approximate).stale_rows == 2
        assert not [r for r in approximate.to_pylist() if r["video_id"] == "v07" and r["start_frame"] < 200]
    near_v08 = similarity.search(index, embeddings["v08"][0], k=6, level="shot")
    assert ("v07", 200) in [(r["video_id"], r["start_frame"]) for r in near_v08.to_pylist()]
    assert _path(near_v08).scanned_exactly == 2


def test_compact_help_names_the_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compact", "--help"])
    assert f"(default {ann.MIN_ROWS})" in " ".join(capsys.readouterr().out.split())


def test_built_and_searched_in_s3(s3, s3_endpoint: str, exhaustive: None) -> None:  # type: ignore[no-untyped-def]
    """Written through fsspec (the pointer last, one put), read back through a local copy."""
    s3.mkdir("vindex-ann")
    index = Index(
        "s3://vindex-ann/idx", {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}
    )
    index.ensure()
    rng = np.random.default_rng(11)
    vectors = {f"s{i}": _vectors(rng, 4) for i in range(12)}
    commit(index, "r1", {v: ([0, 10, 20, 30], e) for v, e in vectors.items()})
    fs_options = {"endpoint_url": s3_endpoint}
    info = ann.build(index, fs_options, min_rows=1)
    assert info is not None
    assert s3.cat_file(f"vindex-ann/idx/{ann.FOLDER}/keyframe/{ann.POINTER}").decode() == info.to_json()
    ann._LOADED.clear()
    result = similarity.search(index, vectors["s7"][2], k=6, fs_options=fs_options)
    assert _path(result).kind == "approximate"
    assert_same_answers(result, similarity.search(index, vectors["s7"][2], k=6, exact=True))
    assert _pairs(result)[0] == ("s7", 20)
