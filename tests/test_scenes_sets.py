"""The committed real-footage scene sets: the files are the ones recorded, the truth is
consistent with itself and with the videos, and the builder's edit shows repeated source
frames where it says it does."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import build_scenes_set as builder
from benchmarks import scenes as bench

SETS = [*bench.COMMITTED_SETS, *bench.HELD_OUT_SETS]


def _truths(set_dir: Path) -> list[tuple[Path, dict]]:
    return [(p, json.loads(p.with_suffix(".json").read_text())) for p in sorted(set_dir.glob("*.mp4"))]


@pytest.mark.parametrize("set_dir", SETS, ids=lambda d: d.name)
def test_videos_match_their_recorded_hashes(set_dir: Path) -> None:
    recorded = dict(line.split()[::-1] for line in (set_dir / "SHA256SUMS").read_text().splitlines())
    videos = sorted(p.name for p in set_dir.glob("*.mp4"))
    assert videos and sorted(recorded) == videos
    assert sorted(p.stem for p in set_dir.glob("*.json")) == [Path(v).stem for v in videos]
    for name in videos:
        assert hashlib.sha256((set_dir / name).read_bytes()).hexdigest() == recorded[name], name


@pytest.mark.parametrize("set_dir", SETS, ids=lambda d: d.name)
def test_truth_tiles_the_frames(set_dir: Path) -> None:
    for path, truth in _truths(set_dir):
        shots, transitions, scenes = truth["shots"], truth["transitions"], truth["scenes"]
        n = truth["num_frames"]
        assert truth["video"] == path.name
        # Shots and the blend frames between them tile the video.
        assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == n - 1
        assert len(transitions) == len(shots) - 1
        for before, t, after in zip(shots, transitions, shots[1:]):
            assert before["start_frame"] <= before["end_frame"]
            assert t["first_frame"] == before["end_frame"] + 1
            assert after["start_frame"] == t["last_frame"] + 1
            assert (t["kind"] == "cut") == (t["last_frame"] == t["first_frame"] - 1)
            assert not t["similar"] or t["scene_boundary"]
        # Scenes group whole shots, in order, and tile the frames; a scene entered by a
        # gradual transition starts at its middle frame.
        assert scenes[0]["first_shot"] == 0 and scenes[-1]["last_shot"] == len(shots) - 1
        assert scenes[0]["start_frame"] == 0 and scenes[-1]["end_frame"] == n - 1
        for a, b in zip(scenes, scenes[1:]):
            assert b["first_shot"] == a["last_shot"] + 1
            assert b["start_frame"] == a["end_frame"] + 1
            t = transitions[b["first_shot"] - 1]
            assert b["start_frame"] == t["first_frame"] + (t["last_frame"] - t["first_frame"] + 1) // 2
            assert a["place"] != b["place"]
        starts = {s["first_shot"] for s in scenes}
        assert [t["scene_boundary"] for t in transitions] == [i + 1 in starts for i in range(len(transitions))]
        for first, last in truth["flashes"]:
            assert any(s["start_frame"] <= first <= last <= s["end_frame"] for s in shots)


@pytest.mark.parametrize("set_dir", SETS, ids=lambda d: d.name)
def test_videos_hold_the_frames_the_truth_counts(set_dir: Path) -> None:
    import av

    for path, truth in _truths(set_dir):
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = sum(1 for p in container.demux(stream) if p.size)
            assert (stream.width, stream.height) == (truth["width"], truth["height"]) == (builder.WIDTH, builder.HEIGHT)
            assert stream.average_rate is not None and round(float(stream.average_rate)) == truth["fps"]
        assert packets == truth["num_frames"], path.name


def test_the_second_set_adds_places_lookalikes_and_one_scene_videos() -> None:
    first, second = ({s["place"] for _, t in _truths(d) for s in t["scenes"]} for d in SETS[:2])
    assert len(second - first) >= 11
    truths = [t for _, t in _truths(SETS[1])]
    assert sum(t["similar"] for truth in truths for t in truth["transitions"]) >= 10
    assert sum(len(truth["scenes"]) == 1 and len(truth["shots"]) >= 4 for truth in truths) >= 2
    assert any(truth.get("softened_from_width") for truth in truths)


def test_the_held_out_set_has_new_places_lookalikes_and_one_scene_videos() -> None:
    assert [d.name for d in bench.HELD_OUT_SETS] == ["scenes_set3"]
    tuned_on = {s["place"] for d in bench.COMMITTED_SETS for _, t in _truths(d) for s in t["scenes"]}
    truths = [t for _, t in _truths(bench.HELD_OUT_SETS[0])]
    places = {s["place"] for t in truths for s in t["scenes"]}
    assert len(places) >= 5 and not places & tuned_on
    assert len(places | tuned_on) >= 25
    assert sum(t["similar"] for truth in truths for t in truth["transitions"]) >= 8
    assert sum(len(truth["scenes"]) == 1 and len(truth["shots"]) >= 4 for truth in truths) >= 2
    # Its recipe takes no source file of the sets the settings were chosen on.
    recipe = builder.RECIPES["scenes_set3"]
    others = {s.blob for name, r in builder.RECIPES.items() if name != "scenes_set3" for s in r.sources}
    assert not {s.blob for s in recipe.sources} & others
    assert recipe.out_dir == bench.HELD_OUT_SETS[0]


def test_a_source_is_turned_upright_and_cut_to_its_region(tmp_path: Path) -> None:
    # Stored on its side: the left half white, the right half black. Turned a quarter
    # clockwise, the white half is on top.
    picture = np.zeros((2, builder.HEIGHT, builder.WIDTH, 3), np.uint8)
    picture[:, :, : builder.WIDTH // 2] = 255
    path = tmp_path / "side.mp4"
    builder.encode(path, picture)
    upright_w, upright_h = builder.HEIGHT, builder.WIDTH
    box = (0.0, 0.0, float(upright_w), upright_h / 2)  # the whole of a region of half the height
    frames = [[builder.Layer(1.0, "side.mp4", 0, box)]]
    top = builder.render(frames, {"side.mp4": path}, {"side.mp4": (90, (0.0, 0.0, 1.0, 0.5))})
    bottom = builder.render(frames, {"side.mp4": path}, {"side.mp4": (90, (0.0, 0.5, 1.0, 1.0))})
    as_stored = builder.render(frames, {"side.mp4": path})
    assert top.mean() > 220 and bottom.mean() < 40
    # Not turned, the same box is the stored picture's left part: mostly white, some black.
    assert 120 < as_stored.mean() < 240


def test_a_repeated_source_frame_fills_consecutive_output_frames() -> None:
    framing = builder.Framing((0.5, 0.5, 1.0), (0.5, 0.5, 1.0))
    shot = builder.ShotPlan("a.gif", src_start=3, lead_in=0, pure=5, lead_out=0, framing=framing)
    other = builder.ShotPlan("b.mp4", src_start=3, lead_in=0, pure=2, lead_out=0, framing=framing)
    frames, truth = builder.lay_out([[shot], [other]], [("cut", 0)], {"a.gif": (480, 270), "b.mp4": (320, 180)},
                                    {"a.gif": 2})
    assert [layers[0].frame for layers in frames] == [1, 2, 2, 3, 3, 3, 4]
    assert truth["shots"] == [{"start_frame": 0, "end_frame": 4, "source": "a.gif"},
                              {"start_frame": 5, "end_frame": 6, "source": "b.mp4"}]


def test_softening_keeps_the_size_and_removes_detail() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, builder.HEIGHT, builder.WIDTH, 3), dtype=np.uint8)
    out = builder.soften(frames, 128)
    assert out.shape == frames.shape and out.dtype == np.uint8
    # Pixel noise is averaged away: neighbouring pixels differ far less than in the input.
    def roughness(a: np.ndarray) -> float:
        return float(np.abs(np.diff(a.astype(np.int16), axis=2)).mean())
    assert roughness(out) < roughness(frames) / 3
    assert abs(float(out.mean()) - float(frames.mean())) < 2


def test_recipes_name_every_place_they_use() -> None:
    for name, recipe in builder.RECIPES.items():
        have = {s.place for s in recipe.sources}
        used = {p for places in recipe.places for p in places}
        assert used <= have, name
        assert len(recipe.layouts) == len(recipe.places)
        assert all(len(a) == len(b) for a, b in zip(recipe.layouts, recipe.places))
        assert all(a != b for places in recipe.places for a, b in zip(places, places[1:])), name
        assert len({s.name for s in recipe.sources}) == len(recipe.sources)


def _video(name: str, colours: list[int], scene_starts: list[int], vindex_starts: list[int]) -> bench.CachedVideo:
    """A synthetic cached video of 20-frame shots; shot k has one flat colour ``colours[k]``
    (a histogram bin and a matching embedding)."""
    shots = [{"start_frame": 20 * k, "end_frame": 20 * k + 19} for k in range(len(colours))]
    n = 20 * len(colours)
    bounds = scene_starts + [len(colours)]
    scenes = [{"first_shot": a, "last_shot": b - 1, "start_frame": 20 * a, "end_frame": 20 * b - 1}
              for a, b in zip(bounds, bounds[1:])]
    truth = {"num_frames": n, "shots": shots, "scenes": scenes, "flashes": [],
             "transitions": [{"kind": "cut", "first_frame": 20 * k, "last_frame": 20 * k - 1} for k in range(1, len(colours))]}
    sample_frames = np.arange(0, n, 5)
    embeddings = np.zeros((len(sample_frames), 8), np.float32)
    histograms = np.zeros((len(sample_frames), 512), np.float32)
    for i, f in enumerate(sample_frames):
        embeddings[i, colours[f // 20]] = 1.0
        histograms[i, colours[f // 20]] = 1.0
    vindex_bounds = vindex_starts + [len(colours)]
    return bench.CachedVideo(
        name, Path(f"{name}.mp4"), truth, sample_frames, embeddings, np.zeros(n, np.float32), np.zeros(n, np.float32),
        histograms, np.zeros((n, 36), np.float32), np.full(n, 100, np.float32), np.ones(n, np.float32),
        np.array([[s["start_frame"], s["end_frame"]] for s in shots], np.int64),
        np.array([[a, b - 1] for a, b in zip(vindex_bounds, vindex_bounds[1:])], np.int64), np.array([10], np.int64),
    )


def test_one_table_holds_every_set_and_the_sets_pooled(capsys: pytest.CaptureFixture[str]) -> None:
    sets = {
        # vindex right: scenes of colours (0, 0) (1) (2, 2)
        "first": [_video("a", [0, 0, 1, 2, 2], [0, 2, 3], [0, 2, 3])],
        # vindex merged the last two scenes
        "second": [_video("b", [3, 4, 4, 5], [0, 1, 3], [0, 1])],
    }
    bench.report_all(sets, [bench.histogram_merge], per_video=False)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line == bench.ALL_SETS_HEADER for line in lines) == 1
    rows = {(line[:12].strip(), line[12:56].strip()): line[56:].split() for line in lines if line[:12].strip() in
            ("first", "second", "all sets") and len(line) > 56}
    for name in ("first", "second", "all sets"):
        assert ("vindex (index, default settings)" in [label for n, label in rows if n == name])
        assert any(label.startswith("histogram_merge t=") for n, label in rows if n == name)
    # P R F1 C O F_CO mIoU: vindex found both boundaries of "first", one of two in "second".
    assert rows[("first", "vindex (index, default settings)")][:3] == ["1.00", "1.00", "1.00"]
    assert rows[("second", "vindex (index, default settings)")][:3] == ["1.00", "0.50", "0.67"]
    assert rows[("all sets", "vindex (index, default settings)")][:3] == ["1.00", "0.75", "0.86"]
    # The histogram baseline tuned on each set finds every boundary of these flat colours.
    hist = [label for n, label in rows if n == "second" and label.startswith("histogram_merge")][0]
    assert rows[("second", hist)][:3] == ["1.00", "1.00", "1.00"]


def test_a_held_out_set_has_its_rows_and_stays_out_of_the_pooled_rows(capsys: pytest.CaptureFixture[str]) -> None:
    sets = {
        "first": [_video("a", [0, 0, 1, 2, 2], [0, 2, 3], [0, 2, 3])],
        # vindex merged every scene: pooled with "first", "all sets" would lose recall
        "held": [_video("b", [3, 4, 4, 5], [0, 1, 3], [0])],
    }
    bench.report_all(sets, [bench.histogram_merge], per_video=False, held_out={"held"})
    lines = capsys.readouterr().out.splitlines()
    rows = {(line[:12].strip(), line[12:56].strip()): line[56:].split() for line in lines if len(line) > 56}
    assert rows[("held", "vindex (index, default settings)")][:3] == ["1.00", "0.00", "0.00"]
    assert rows[("all sets", "vindex (index, default settings)")][:3] == ["1.00", "1.00", "1.00"]
    assert any(line.startswith("held: ") and "held out" in line for line in lines)
    assert not any(line.startswith("first: ") and "held out" in line for line in lines)


def test_development_sets_are_the_committed_ones_and_scenes_dev_when_present(tmp_path: Path) -> None:
    assert list(bench.development_sets(tmp_path / "absent")) == [d.name for d in bench.COMMITTED_SETS]
    (tmp_path / "videos").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "videos" / "x.mp4").write_bytes(b"")
    assert "scenes-dev" not in bench.development_sets(tmp_path)  # a video without truth is not a set
    (tmp_path / "gt" / "x.json").write_text("{}")
    found = bench.development_sets(tmp_path)
    assert list(found) == [*(d.name for d in bench.COMMITTED_SETS), "scenes-dev"] and found["scenes-dev"] == tmp_path


def test_a_cache_from_other_pipeline_code_is_indexed_again_keeping_the_networks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_dir = tmp_path / "set"
    set_dir.mkdir()
    (set_dir / "v.mp4").write_bytes(b"not decoded here")
    (set_dir / "v.json").write_text(json.dumps({"num_frames": 3}))
    monkeypatch.setattr(bench, "CACHE_DIR", tmp_path / "cache")
    bench.CACHE_DIR.mkdir()
    networks: dict[str, np.ndarray] = {"embeddings": np.ones((1, 4), np.float32), "frame_colours": np.zeros((3, 36), np.float32)}
    old: dict[str, np.ndarray] = {"vindex_shots": np.array([[0, 2]]), "vindex_scenes": np.array([[0, 0]]),
                                  "vindex_keyframes": np.array([1])}
    np.savez_compressed(bench.cache_path(set_dir / "v.mp4"), **{**networks, **old})  # made before fingerprints
    new = {"vindex_shots": np.array([[0, 0], [1, 2]]), "vindex_scenes": np.array([[0, 0], [1, 1]]),
           "vindex_keyframes": np.array([0, 2]), "vindex_shot_embeddings": np.eye(2, 4, dtype=np.float32)}
    indexed: list[list[str]] = []

    def run_vindex(videos: list[Path]) -> dict[str, dict[str, np.ndarray]]:
        indexed.append([v.name for v in videos])
        return {v.name: new for v in videos}

    def no_networks(*_: object) -> dict[str, np.ndarray]:
        raise AssertionError("the networks' outputs are kept")

    monkeypatch.setattr(bench, "_run_vindex", run_vindex)
    monkeypatch.setattr(bench, "_raw_outputs", no_networks)
    bench.build_cache(set_dir)
    assert indexed == [["v.mp4"]]
    with np.load(bench.cache_path(set_dir / "v.mp4")) as data:
        assert data["vindex_scenes"].tolist() == [[0, 0], [1, 1]]
        assert data["embeddings"].tolist() == networks["embeddings"].tolist()
        assert str(data["derived_fingerprint"]) == bench.derived_fingerprint()
    bench.build_cache(set_dir)  # up to date now: nothing runs
    assert indexed == [["v.mp4"]]
    # Other pipeline code (or derived settings) makes it stale again.
    monkeypatch.setattr(bench, "derived_fingerprint", lambda: "another")
    bench.build_cache(set_dir)
    assert indexed == [["v.mp4"], ["v.mp4"]]
    # A cache of this fingerprint that kept no stored shot embeddings is indexed again too.
    with np.load(bench.cache_path(set_dir / "v.mp4")) as data:
        arrays = {k: data[k] for k in data.files if k != "vindex_shot_embeddings"}
    np.savez_compressed(bench.cache_path(set_dir / "v.mp4"), **arrays)
    bench.build_cache(set_dir)
    assert indexed == [["v.mp4"], ["v.mp4"], ["v.mp4"]]


def test_scene_methods_on_vindex_shots_compare_the_embeddings_the_index_stored() -> None:
    stored = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]], np.float32)
    shots = np.array([[0, 5], [6, 11]])
    video = bench.CachedVideo(
        "v", Path("v.mp4"), {"num_frames": 12}, sample_frames=np.array([0, 6]),
        embeddings=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32), single=np.zeros(12), many=np.zeros(12),
        histograms=np.zeros((2, 512)), frame_colours=np.zeros((12, 36)), frame_luma=np.zeros(12), frame_sharpness=np.zeros(12),
        vindex_shots=shots, vindex_scenes=np.array([[0, 1]]), vindex_keyframes=np.array([3]), vindex_shot_embeddings=stored)
    np.testing.assert_allclose(video.shot_embeddings(shots), [[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
    # Other shots (the true ones) are the means of this benchmark's own frame embeddings.
    np.testing.assert_allclose(video.shot_embeddings(np.array([[0, 11]])), [[2**-0.5, 2**-0.5, 0.0]])


def _with_adjacent_cosines(video: bench.CachedVideo, cosines: list[float]) -> bench.CachedVideo:
    """``video`` with its shots' embeddings turned so neighbouring shots have these cosines."""
    angles = np.concatenate([[0.0], np.cumsum(np.arccos(cosines))])
    shot_of_sample = video.sample_frames // 20
    video.embeddings = np.zeros_like(video.embeddings)
    video.embeddings[:, 0] = np.cos(angles[shot_of_sample])
    video.embeddings[:, 1] = np.sin(angles[shot_of_sample])
    return video


def test_the_held_out_table_tunes_on_the_development_sets_only(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import scene_methods

    # Development: within scenes cosine 0.9, across 0.7, so the tuned threshold lies above 0.7.
    dev = _with_adjacent_cosines(_video("a", [0, 0, 1, 2, 2], [0, 2, 3], [0, 2, 3]), [0.9, 0.7, 0.7, 0.9])
    # Held out: within 0.6, across 0.3: at the development threshold its one within-scene
    # pair is split too; a threshold chosen on it would have found every boundary and no more.
    held = _with_adjacent_cosines(_video("b", [3, 4, 4, 5], [0, 1, 3], [0, 1, 3]), [0.3, 0.6, 0.3])
    scene_methods.held_out_table({"dev": [dev]}, {"held": [held]}, family_text="cosine merge")
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("(0) cosine merge")]
    assert len(rows) == 1
    p, r, f1, _, _, best = rows[0][46:].split()[:6]
    assert (p, r, f1) == ("0.67", "1.00", "0.800") and best == "1.000"
    threshold = float(rows[0].rsplit("t=", 1)[1])
    assert 0.7 < threshold <= 0.9
