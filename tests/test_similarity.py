"""Nearest keyframes: the streamed top-k on hand-built vectors, and `vindex similar` end to end."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import pipeline
from pipeline.index import similarity
from pipeline.cli import EXIT_OK, EXIT_USAGE, main
from pipeline.index.schemas import EMBEDDING, to_table
from pipeline.index.store import Index
from pipeline.errors import SimilarError
from pipeline.models.spec import EMBEDDING_DIM
from testkit import synthetic

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
REVISIT = "sample_03_revisit"  # shot 3 returns to shot 0's look
OTHER = "sample_01_cuts"


def unit(angle_deg: float) -> np.ndarray:
    """A unit vector at ``angle_deg`` from the first axis: its cosine to that axis is cos(angle)."""
    vector = np.zeros(EMBEDDING_DIM, np.float32)
    vector[0], vector[1] = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return vector


def batch(rows: list[tuple[str, int, np.ndarray | None]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"video_id": v, "frame": f, "embedding": None if e is None else e.tolist()} for v, f, e in rows],
        schema=pa.schema([("video_id", pa.string()), ("frame", pa.int64()), ("embedding", EMBEDDING)]),
    )


def test_top_k_keeps_the_best_rows_across_batches() -> None:
    batches = [
        batch([("a", 1, unit(50)), ("a", 2, unit(10)), ("a", 3, unit(80))]),
        batch([("b", 1, unit(30) * 7.0), ("b", 2, None), ("b", 3, unit(90))]),  # length does not matter
        batch([("c", 1, unit(10)), ("c", 2, unit(0)), ("c", 3, unit(170))]),
    ]
    best = similarity.top_k(batches, unit(0) * 3.0, k=4)
    assert best.column_names == ["video_id", "frame", "score"]
    # A tie (a:2 and c:1, both at 10 degrees) ranks by video_id; b:2 has no embedding.
    assert [(r["video_id"], r["frame"]) for r in best.to_pylist()] == [("c", 2), ("a", 2), ("c", 1), ("b", 1)]
    expected = [1.0, math.cos(math.radians(10)), math.cos(math.radians(10)), math.cos(math.radians(30))]
    assert best.column("score").to_pylist() == pytest.approx(expected, abs=1e-6)


def test_top_k_refuses_a_bad_query() -> None:
    with pytest.raises(SimilarError, match="k must be at least 1"):
        similarity.top_k([], unit(0), k=0)
    with pytest.raises(SimilarError, match="zero or not finite"):
        similarity.top_k([], np.zeros(EMBEDDING_DIM, np.float32), k=1)
    with pytest.raises(SimilarError, match=f"has {EMBEDDING_DIM} values, got 3"):
        similarity.top_k([], np.ones(3, np.float32), k=1)


def test_parse_keyframe() -> None:
    assert similarity.parse_keyframe("8352fb80-a3df-57df-ae34-1b46012854ac:24") == ("8352fb80-a3df-57df-ae34-1b46012854ac", 24)
    for bad in ("8352fb80", ":24", "abc:", "abc:x1", "abc:-3"):
        with pytest.raises(SimilarError, match="VIDEO_ID:FRAME"):
            similarity.parse_keyframe(bad)


def _hand_built(tmp_path: Path) -> Index:
    """Two videos whose keyframe embeddings lie at known angles from the first axis."""
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    angles = {("v1", 6): 0, ("v1", 12): 40, ("v2", 6): 20, ("v2", 18): 60}
    index.commit_videos(
        {
            "videos": to_table(
                "videos",
                [{"video_id": v, "uri": f"file:///{v}.mp4", "status": "ok", "run_id": "r1", "indexed_at": NOW}
                 for v in ("v1", "v2")],
            ),
            "keyframes": to_table(
                "keyframes",
                [
                    {"video_id": v, "shot_index": i, "scene_index": 0, "frame": f, "time_s": f / 25, "score": 1.0,
                     "embedding": unit(angle), "thumbnail": b"\xff\xd8", "run_id": "r1"}
                    for i, ((v, f), angle) in enumerate(angles.items())
                ],
            ),
        }
    )
    return index


def test_similar_on_a_hand_built_index(tmp_path: Path) -> None:
    reader = pipeline.open_index(_hand_built(tmp_path).uri)
    result = reader.similar(keyframe=("v1", 6), k=3)
    assert result.schema == similarity.RESULT
    assert [(r["rank"], r["uri"], r["frame"]) for r in result.to_pylist()] == [
        (1, "file:///v1.mp4", 6), (2, "file:///v2.mp4", 6), (3, "file:///v1.mp4", 12)
    ]
    assert result.column("score").to_pylist() == pytest.approx([1.0, math.cos(math.radians(20)), math.cos(math.radians(40))], abs=1e-6)
    # The same through the package-level function.
    assert pipeline.similar(reader, keyframe=("v2", 18), k=1).column("frame").to_pylist() == [18]


def test_similar_errors_name_the_problem(tmp_path: Path) -> None:
    index = _hand_built(tmp_path)
    with pytest.raises(SimilarError, match="video v1 has no keyframe at frame 7; its keyframes are at frames 6, 12"):
        similarity.similar(index, keyframe=("v1", 7))
    with pytest.raises(SimilarError, match="no keyframes of a video with id 'v9'"):
        similarity.similar(index, keyframe=("v9", 6))
    with pytest.raises(SimilarError, match="exactly one query"):
        similarity.similar(index, image="x.png", keyframe=("v1", 6))
    with pytest.raises(SimilarError, match="exactly one query"):
        similarity.similar(index)


def test_an_older_runs_recorded_config_still_gives_its_decode_size_and_precision(tmp_path: Path) -> None:
    import json

    from pipeline.config import Config

    index = Index(str(tmp_path / "idx"))
    index.ensure()
    recorded = Config().to_dict()
    recorded.pop("inference")  # recorded before the inference section existed
    recorded["shots"]["precision"] = "fp32"
    recorded["compute"]["device"] = "cpu"
    recorded["decode"].update(width=320, height=180)
    index.append_run(
        {"run_id": "r1", "started_at": NOW, "finished_at": NOW, "source": "s", "config": json.dumps(recorded),
         "versions": "{}", "status": "ok", "heartbeat_at": NOW, "rederived": 0}
    )
    config = similarity.index_config(index)
    assert (config.inference.precision, config.inference.device, config.decode.width) == ("fp32", "cpu", 320)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def indexed(ray_local, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Two sample clips indexed through Ray; the revisit clip has two shots of one look."""
    from pipeline.config import Config
    from pipeline.execution.runner import run_index

    folder = tmp_path_factory.mktemp("similar-src")
    for name in (REVISIT, OTHER):
        synthetic.write_clip(folder / f"{name}.mp4", synthetic.SAMPLE_CORPUS[name])
    index_path = str(tmp_path_factory.mktemp("similar") / "idx")
    summary = run_index(str(folder), index_path, Config(), show_progress=False)
    assert (summary.counts["ok"], summary.counts["failed"]) == (2, 0)
    reader = pipeline.open_index(index_path)
    ids = {Path(v["uri"]).stem: v["video_id"] for v in reader.table("videos", columns=["uri", "video_id"]).to_pylist()}
    keyframes = reader.table("keyframes", columns=["video_id", "shot_index", "frame"]).to_pylist()
    return {"path": index_path, "ids": ids, "keyframes": keyframes, "folder": folder}


def _first_keyframe(indexed: dict[str, object], clip: str, shot: int) -> int:
    ids: dict[str, str] = indexed["ids"]  # type: ignore[assignment]
    keyframes: list[dict[str, object]] = indexed["keyframes"]  # type: ignore[assignment]
    return min(int(k["frame"]) for k in keyframes if k["video_id"] == ids[clip] and k["shot_index"] == shot)  # type: ignore[call-overload]


def _rows(output: str) -> list[list[str]]:
    """Data rows of a `--format table` result."""
    lines = output.strip().splitlines()
    assert lines[1].startswith("----") and lines[-1].startswith("(")
    return [line.split() for line in lines[2:-1]]


@pytest.mark.parametrize(("query_shot", "twin_shot"), [(0, 3), (3, 0)])
def test_cli_keyframe_query_finds_itself_then_the_same_look(
    indexed: dict[str, object], query_shot: int, twin_shot: int, capsys: pytest.CaptureFixture[str]
) -> None:
    ids: dict[str, str] = indexed["ids"]  # type: ignore[assignment]
    total = len(indexed["keyframes"])  # type: ignore[arg-type]
    frame = _first_keyframe(indexed, REVISIT, query_shot)
    code = main(["similar", str(indexed["path"]), "--keyframe", f"{ids[REVISIT]}:{frame}", "-k", str(total)])
    assert code == EXIT_OK
    rows = _rows(capsys.readouterr().out)
    # columns: rank score uri shot time_s frame video_id
    assert len(rows) == total
    assert [r[0] for r in rows] == [str(i) for i in range(1, total + 1)]
    assert (rows[0][6], rows[0][3], rows[0][5], rows[0][1]) == (ids[REVISIT], str(query_shot), str(frame), "1.0000")
    assert (rows[1][6], rows[1][3]) == (ids[REVISIT], str(twin_shot))
    assert rows[1][2].endswith(f"/{REVISIT}.mp4")
    scores = [float(r[1]) for r in rows]
    assert scores == sorted(scores, reverse=True) and scores[1] > scores[2]


def test_image_query_embeds_like_indexing(indexed: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    ids: dict[str, str] = indexed["ids"]  # type: ignore[assignment]
    image = tmp_path / "query.png"
    # A frame of shot 3 (320x180 here, decoded at 256x144 when indexed): shots 0 and 3 share its look.
    spec = synthetic.SAMPLE_CORPUS[REVISIT]
    Image.fromarray(synthetic.render_shot_frame(spec, 3, 20)).save(image)
    assert main(["similar", str(indexed["path"]), "--image", str(image), "-k", "3"]) == EXIT_OK
    rows = _rows(capsys.readouterr().out)
    assert {(r[6], r[3]) for r in rows[:2]} == {(ids[REVISIT], "0"), (ids[REVISIT], "3")}
    assert float(rows[1][1]) > float(rows[2][1])


def test_streaming_in_small_batches_matches_a_whole_table_search(indexed: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    reader = pipeline.open_index(str(indexed["path"]))
    everything = reader.table("keyframes", columns=["video_id", "frame", "embedding"])
    matrix = np.asarray(everything.column("embedding").to_pylist(), np.float32)
    query = matrix[5]
    brute = (matrix @ query) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    order = sorted(range(len(brute)), key=lambda i: -brute[i])[:4]
    expected = [(everything.column("video_id")[i].as_py(), everything.column("frame")[i].as_py()) for i in order]

    monkeypatch.setattr(similarity, "SCAN_BATCH_ROWS", 2)  # many batches, a running top-k across them
    result = similarity.search(reader, query, k=4)
    assert [(r["video_id"], r["frame"]) for r in result.to_pylist()] == expected
    assert result.column("score").to_pylist() == pytest.approx([float(brute[i]) for i in order], abs=1e-5)


def test_cli_errors_exit_2_with_a_message(indexed: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids: dict[str, str] = indexed["ids"]  # type: ignore[assignment]
    index_path = str(indexed["path"])
    frame = _first_keyframe(indexed, OTHER, 0)
    assert main(["similar", index_path, "--keyframe", f"{ids[OTHER]}:{frame + 1}"]) == EXIT_USAGE
    assert f"video {ids[OTHER]} has no keyframe at frame {frame + 1}; its keyframes are at frames {frame}," in capsys.readouterr().err
    assert main(["similar", str(tmp_path / "nowhere"), "--keyframe", f"{ids[OTHER]}:{frame}"]) == EXIT_USAGE
    assert "is it a vindex index" in capsys.readouterr().err
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    assert main(["similar", index_path, "--image", str(not_an_image)]) == EXIT_USAGE
    assert "is not an image in a format Pillow reads" in capsys.readouterr().err
    assert main(["similar", index_path, "--image", str(tmp_path / "missing.png")]) == EXIT_USAGE
    assert "no image at" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["similar", index_path])  # neither --image nor --keyframe
    assert exit_info.value.code == EXIT_USAGE
    assert "one of the arguments --image --keyframe is required" in capsys.readouterr().err
