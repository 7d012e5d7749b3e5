"""Tests for the clip generator (pipeline.synthetic) and what tests add to it (testkit.synthetic):
exact truth layout, rendering properties, encoding, the sample corpus, bad inputs."""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest

from testkit import synthetic as syn
from testkit.synthetic import ClipSpec, ShotSpec, ShotTruth, TransitionSpec, TransitionTruth

# shots 30, 40, 35 joined by a cut and a 10-frame dissolve
HAND = ClipSpec(
    shots=(ShotSpec(30, 0), ShotSpec(40, 1), ShotSpec(35, 2)),
    transitions=(TransitionSpec("cut"), TransitionSpec("dissolve", 10)),
    width=160,
    height=96,
    fps=25.0,
    seed=3,
)


def _frames(spec: ClipSpec) -> np.ndarray:
    return np.stack(list(syn.render_clip(spec)))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --------------------------------------------------------------------------- truth


def test_truth_layout_hand_written():
    truth = syn.clip_truth(HAND)
    assert truth.num_frames == 115 == HAND.num_frames
    assert truth.shots == (ShotTruth(0, 29), ShotTruth(30, 69), ShotTruth(80, 114))
    assert truth.transitions == (TransitionTruth("cut", 30, 29), TransitionTruth("dissolve", 70, 79))
    assert [s.num_frames for s in truth.shots] == [30, 40, 35]
    assert truth.transitions[0].num_frames == 0
    assert (truth.fps, truth.width, truth.height) == (25.0, 160, 96)
    idx = truth.frame_shot_index()
    assert idx.tolist() == [0] * 30 + [1] * 40 + [-1] * 10 + [2] * 35
    assert truth.to_dict()["shots"] == [[0, 29], [30, 69], [80, 114]]


def test_truth_layout_fade_first():
    spec = syn.simple_spec([5, 6, 7], ["fade:4", "cut"])
    truth = syn.clip_truth(spec)
    assert truth.shots == (ShotTruth(0, 4), ShotTruth(9, 14), ShotTruth(15, 21))
    assert truth.transitions == (TransitionTruth("fade", 5, 8), TransitionTruth("cut", 15, 14))
    assert truth.num_frames == 22


def test_spec_validation():
    with pytest.raises(ValueError):
        ClipSpec((ShotSpec(10, 0), ShotSpec(10, 1)), ())
    with pytest.raises(ValueError):
        TransitionSpec("cut", 3)
    with pytest.raises(ValueError):
        TransitionSpec("dissolve", 1)
    with pytest.raises(ValueError):
        TransitionSpec("wipe", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ShotSpec(0, 0)
    with pytest.raises(ValueError):
        syn.write_clip("never.mp4", syn.simple_spec([3], width=33, height=20))


def test_blend_weights():
    assert syn.blend_weights("dissolve", 3) == [(0.75, 0.25), (0.5, 0.5), (0.25, 0.75)]
    assert syn.blend_weights("fade", 3) == [(0.5, 0.0), (0.0, 0.0), (0.0, 0.5)]


# --------------------------------------------------------------------------- rendering


def test_render_count_shape_and_determinism():
    frames = _frames(HAND)
    assert frames.shape == (115, 96, 160, 3) and frames.dtype == np.uint8
    again = hashlib.sha256(_frames(HAND).tobytes()).hexdigest()
    assert hashlib.sha256(frames.tobytes()).hexdigest() == again
    other_seed = _frames(ClipSpec(HAND.shots, HAND.transitions, width=160, height=96, seed=4))
    assert _mad(frames[0], other_seed[0]) > 10


def test_shots_move_smoothly_and_cuts_are_abrupt():
    spec = syn.random_spec(5, 6, min_shot_frames=20, max_shot_frames=30, p_dissolve=0, p_fade=0,
                           width=160, height=96)
    frames = _frames(spec)
    truth = syn.clip_truth(spec)
    idx = truth.frame_shot_index()
    within = [_mad(frames[i], frames[i + 1]) for i in range(len(frames) - 1) if idx[i] == idx[i + 1]]
    across = [_mad(frames[t.first_frame - 1], frames[t.first_frame]) for t in truth.transitions]
    assert len(across) == 5
    assert max(within) < 8.0, max(within)
    assert min(across) > 25.0, min(across)
    # and it is footage, not a still: every shot changes over its length
    for s in truth.shots:
        assert _mad(frames[s.start_frame], frames[s.end_frame]) > 1.0


def test_dissolve_frames_are_blends():
    frames = _frames(HAND)
    n1 = HAND.shots[1].num_frames
    for k in range(10):
        a = syn.render_shot_frame(HAND, 1, n1 + k).astype(np.float64)  # outgoing shot, continued
        b = syn.render_shot_frame(HAND, 2, k - 10).astype(np.float64)  # incoming shot, anticipated
        alpha = (k + 1) / 11
        expected = (1 - alpha) * a + alpha * b
        assert np.abs(frames[70 + k] - expected).max() <= 1.0
    # the dissolve moves steadily from the last frame of shot 1 to the first of shot 2
    to_b = [_mad(frames[70 + k], frames[80]) for k in range(10)]
    assert all(x > y for x, y in zip(to_b, to_b[1:]))
    # continuing shot 1 / anticipating shot 2 joins them without jumps
    assert _mad(frames[69], frames[70]) < 12 and _mad(frames[79], frames[80]) < 12


def test_fade_dips_to_black():
    spec = syn.simple_spec([10, 10], ["fade:9"], width=64, height=48)
    frames = _frames(spec)
    fade = frames[10:19]
    assert not fade[4].any()  # odd length: the middle frame is black
    means = fade.reshape(9, -1).mean(axis=1)
    assert all(x > y for x, y in zip(means[:4], means[1:5]))
    assert all(x < y for x, y in zip(means[4:8], means[5:9]))
    out0 = syn.render_shot_frame(spec, 0, 10).astype(np.float64) * 0.8
    assert np.abs(fade[0] - out0).max() <= 1.0
    in_last = syn.render_shot_frame(spec, 1, -1).astype(np.float64) * 0.8
    assert np.abs(fade[8] - in_last).max() <= 1.0


def test_same_content_looks_alike_different_content_does_not():
    spec = syn.simple_spec([2, 2, 2, 2], contents=[0, 1, 2, 0], width=96, height=64, seed=1)
    first = [syn.render_shot_frame(spec, i, 0) for i in range(4)]
    mean = [f.reshape(-1, 3).mean(axis=0) for f in first]

    def dist(i: int, j: int) -> float:
        return float(np.abs(mean[i] - mean[j]).sum())

    same = dist(0, 3)
    assert same < 15
    assert min(dist(0, 1), dist(1, 2), dist(2, 3), dist(0, 2)) > 2 * same
    # a revisit is the same look, not a copy of the earlier shot
    assert _mad(first[0], first[3]) > 1.0


def test_random_spec_and_duration():
    a = syn.random_spec(9, 20, reuse_prob=0.5)
    assert a == syn.random_spec(9, 20, reuse_prob=0.5)
    assert len(a.shots) == 20 and len(a.transitions) == 19
    assert all(x.content != y.content for x, y in zip(a.shots, a.shots[1:]))
    assert all(38 <= s.num_frames <= 100 for s in a.shots)
    for seconds in (10, 61.3, 600):
        spec = syn.spec_for_duration(2, seconds, fps=25.0)
        assert spec.num_frames == round(seconds * 25)
        assert syn.clip_truth(spec).num_frames == spec.num_frames


# --------------------------------------------------------------------------- encoding


def test_write_clip_exact_frames(tmp_path):
    import decord

    path = tmp_path / "hand.mp4"
    truth = syn.write_clip(path, HAND)
    assert truth == syn.clip_truth(HAND)
    raw = _frames(HAND)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert len(container.streams.video) == 1
        assert stream.frames == 115
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 96)
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 25
        decoded = list(container.decode(stream))
        time_base = stream.time_base  # read while the container is open
    assert len(decoded) == 115
    assert [f.pts * time_base * 25 for f in decoded] == list(range(115))
    rgb = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
    assert np.mean([_mad(rgb[i], raw[i]) for i in range(0, 115, 7)]) < 4.0
    assert _mad(rgb[29], rgb[30]) > 25 and _mad(rgb[30], rgb[31]) < 12
    vr = decord.VideoReader(str(path), width=256, height=144)
    assert len(vr) == 115


def test_write_clip_fixed_gop(tmp_path):
    path = tmp_path / "gop.mp4"
    spec = syn.simple_spec([20, 25], width=64, height=48)
    syn.write_clip(path, spec, gop=10, faststart=True)
    with av.open(str(path)) as container:
        keys = [i for i, f in enumerate(container.decode(video=0)) if f.key_frame]
    assert keys == [0, 10, 20, 30, 40]


def test_sample_corpus(tmp_path):
    paths = syn.sample_corpus(tmp_path)
    assert len(paths) == 3 and paths == sorted(paths)
    assert [p.stem for p in paths] == sorted(syn.SAMPLE_CORPUS)
    for p in paths:
        spec = syn.SAMPLE_CORPUS[p.stem]
        assert 8 <= spec.duration_s <= 15 and spec.width <= 320 and spec.height <= 180
        assert all(37 <= s.num_frames <= 100 for s in spec.shots)
        with av.open(str(p)) as container:
            assert container.streams.video[0].frames == spec.num_frames
    kinds = {t.kind for spec in syn.SAMPLE_CORPUS.values() for t in spec.transitions}
    assert kinds == {"cut", "dissolve", "fade"}
    assert any(len({s.content for s in spec.shots}) < len(spec.shots) for spec in syn.SAMPLE_CORPUS.values())
    # idempotent: files are re-used; a broken one is rewritten
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    syn.write_zero_byte(paths[0])
    assert syn.sample_corpus(tmp_path) == paths
    assert paths[0].stat().st_size > 0
    assert all(p.stat().st_mtime_ns == stamps[p] for p in paths[1:])
    assert sorted(x.name for x in tmp_path.iterdir()) == [p.name for p in paths]


# --------------------------------------------------------------------------- bad inputs


def test_bad_input_writers(tmp_path):
    from PIL import Image

    assert syn.write_zero_byte(tmp_path / "zero.mp4").stat().st_size == 0

    src = tmp_path / "src.mp4"
    syn.write_clip(src, syn.simple_spec([12], width=64, height=48))
    size = src.stat().st_size
    cut = syn.write_truncated(src, tmp_path / "trunc.mp4", fraction=0.5)
    assert cut.stat().st_size == size // 2
    assert cut.read_bytes() == src.read_bytes()[: size // 2]

    r = syn.write_random_bytes(tmp_path / "rand.mp4", 4096, seed=7)
    assert r.stat().st_size == 4096
    assert r.read_bytes() == syn.write_random_bytes(tmp_path / "rand2.mp4", 4096, seed=7).read_bytes()
    assert r.read_bytes() != syn.write_random_bytes(tmp_path / "rand3.mp4", 4096, seed=8).read_bytes()

    audio = syn.write_audio_only(tmp_path / "audio.mp4", 1.0)
    with av.open(str(audio)) as container:
        assert len(container.streams.video) == 0
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
        assert sum(f.samples for f in container.decode(audio=0)) >= 44100

    jpeg = syn.write_jpeg_as_mp4(tmp_path / "image.mp4")
    assert jpeg.suffix == ".mp4"
    assert jpeg.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(jpeg) as im:
        assert im.format == "JPEG"


# --------------------------------------------------------------------------- hard clips

# One shot of each hard kind, small frames: a flash, an object crossing, a fast pan, then a
# similar-looking shot (same content, another variant) after a cut and a jump cut (same look).
HARD = ClipSpec(
    shots=(
        ShotSpec(30, 0, flashes=(syn.FlashSpec(10, (120, 66, 36)),)),
        ShotSpec(30, 1, passes=(syn.PassSpec(8, 10, size=0.8, color=(200, 30, 30)),)),
        ShotSpec(25, 2, pan_widths_per_s=1.5),
        ShotSpec(25, 2, variant=1),
        ShotSpec(20, 2, variant=1),
    ),
    transitions=(TransitionSpec("cut"), TransitionSpec("dissolve", 6), TransitionSpec("cut"), TransitionSpec("fade", 7)),
    width=96,
    height=64,
    fps=25.0,
    seed=5,
)


def _without_events(spec: ClipSpec) -> ClipSpec:
    plain = tuple(ShotSpec(s.num_frames, s.content, s.variant) for s in spec.shots)
    return ClipSpec(plain, spec.transitions, width=spec.width, height=spec.height, fps=spec.fps, seed=spec.seed)


def test_hard_truth_layout_and_events():
    truth = syn.clip_truth(HARD)
    assert truth.shots == (ShotTruth(0, 29), ShotTruth(30, 59), ShotTruth(66, 90), ShotTruth(91, 115), ShotTruth(123, 142))
    assert truth.transitions == (
        TransitionTruth("cut", 30, 29),
        TransitionTruth("dissolve", 60, 65),
        TransitionTruth("cut", 91, 90, similar=True),
        TransitionTruth("fade", 116, 122, similar=True),
    )
    assert truth.events == (
        syn.EventTruth("flash", 10, 12),
        syn.EventTruth("pass", 38, 47),
        syn.EventTruth("fast_pan", 66, 90),
    )
    assert truth.to_dict()["events"] == [["flash", 10, 12], ["pass", 38, 47], ["fast_pan", 66, 90]]
    assert truth.to_dict()["similar_transitions"] == [2, 3]
    assert "events" not in syn.clip_truth(HAND).to_dict()


def test_hard_spec_validation():
    with pytest.raises(ValueError):
        ShotSpec(10, 0, flashes=(syn.FlashSpec(9, (50, 50)),))  # ends after the shot
    with pytest.raises(ValueError):
        ShotSpec(10, 0, passes=(syn.PassSpec(0, 11),))
    with pytest.raises(ValueError):
        syn.FlashSpec(0, (256,))
    with pytest.raises(ValueError):
        syn.FlashSpec(0, ())
    with pytest.raises(ValueError):
        syn.PassSpec(0, 5, size=0)
    with pytest.raises(ValueError):
        ShotSpec(10, 0, pan_widths_per_s=-1.0)


def test_frames_are_where_the_truth_says():
    frames = _frames(HARD)
    truth = syn.clip_truth(HARD)
    for i, shot in enumerate(truth.shots):
        for k in range(shot.num_frames):
            assert np.array_equal(frames[shot.start_frame + k], syn.render_shot_frame(HARD, i, k))
    # blend frames follow the blend weights of the shots either side
    fade = truth.transitions[3]
    weights = syn.blend_weights("fade", fade.num_frames)
    for k, (w_out, w_in) in enumerate(weights):
        if w_out:
            expected = syn.render_shot_frame(HARD, 3, 25 + k).astype(np.float64) * w_out
        else:
            expected = syn.render_shot_frame(HARD, 4, k - fade.num_frames).astype(np.float64) * w_in
        assert np.abs(frames[fade.first_frame + k] - expected).max() <= 1.0


def test_flash_frames_are_brighter_by_the_set_gains():
    frames = _frames(HARD)
    plain = _frames(_without_events(HARD))
    for k, gain in enumerate((120, 66, 36)):
        expected = np.minimum(plain[10 + k].astype(np.int32) + gain, 255)
        assert np.array_equal(frames[10 + k], expected)
    # everything else is unchanged, except the panned shot (and the dissolve into it)
    others = [i for i in range(len(frames)) if not 10 <= i <= 12 and not 38 <= i <= 47 and not 60 <= i <= 90]
    assert np.array_equal(frames[others], plain[others])
    # the flash itself is the brightest change in its shot
    jumps = [_mad(frames[i], frames[i + 1]) for i in range(29)]
    assert int(np.argmax(jumps)) == 9 and jumps[9] > 50


def test_object_crosses_the_frame():
    frames = _frames(HARD)
    plain = _frames(_without_events(HARD))
    red = np.array([200, 30, 30])
    columns = []
    for i in range(38, 48):
        covered = np.abs(frames[i].astype(np.int32) - red).sum(axis=2) <= 3
        assert covered.any() and not np.array_equal(frames[i], plain[i])
        columns.append(np.flatnonzero(covered.any(axis=0)).mean())
    assert all(a < b for a, b in zip(columns, columns[1:]))  # left to right
    assert columns[0] < 96 * 0.25 and columns[-1] > 96 * 0.75
    assert np.array_equal(frames[37], plain[37]) and np.array_equal(frames[48], plain[48])


def test_fast_pan_moves_more_than_a_drift():
    frames = _frames(HARD)
    drift = _frames(_without_events(HARD))
    panned = np.mean([_mad(frames[i], frames[i + 1]) for i in range(66, 90)])
    drifting = np.mean([_mad(drift[i], drift[i + 1]) for i in range(66, 90)])
    assert panned > 3 * drifting


def test_variant_shares_the_palette_not_the_layout():
    spec = syn.simple_spec([2, 2, 2], contents=[0, 0, 1], width=96, height=64, seed=1)
    spec = ClipSpec(
        (ShotSpec(2, 0), ShotSpec(2, 0, variant=1), ShotSpec(2, 1)), spec.transitions, width=96, height=64, seed=1
    )
    first = [syn.render_shot_frame(spec, i, 0) for i in range(3)]
    mean = [f.reshape(-1, 3).astype(np.float64).mean(axis=0) for f in first]
    same_palette = float(np.abs(mean[0] - mean[1]).sum())
    other = float(np.abs(mean[0] - mean[2]).sum())
    assert same_palette < 20 and other > 2 * same_palette
    assert _mad(first[0], first[1]) > 10  # not the same picture
    # variant 0 is the original look, untouched
    assert np.array_equal(first[0], syn.render_shot_frame(syn.simple_spec([2], width=96, height=64, seed=1), 0, 0))


def test_hard_spec_and_set():
    a = syn.hard_spec(3, 40)
    assert a == syn.hard_spec(3, 40)
    truth = syn.clip_truth(a)
    assert all(16 <= s.num_frames <= 100 for s in a.shots)
    assert all(6 <= t.num_frames <= 30 for t in a.transitions if t.kind != "cut")
    assert {t.kind for t in a.transitions} == {"cut", "dissolve", "fade"}
    assert {e.kind for e in truth.events} == {"flash", "pass", "fast_pan"}
    assert any(t.similar for t in truth.transitions)
    for shot, shot_truth in zip(a.shots, truth.shots):
        for event in (*shot.flashes, *shot.passes):
            assert event.first_frame >= 6 and event.last_frame <= shot.num_frames - 7
    hard = syn.hard_set(8, 5)
    assert len(hard) == 8
    assert {(s.width, s.height, s.fps) for s in hard.values()} == set(syn.HARD_FORMATS)
    assert len({s.seed for s in hard.values()}) == 8


def test_write_corpus(tmp_path):
    specs = {"one": syn.hard_spec(1, 3, width=64, height=48), "two": syn.hard_spec(2, 2, width=64, height=48)}
    paths = syn.write_corpus(tmp_path, specs)
    assert [p.name for p in paths] == ["one.mp4", "two.mp4"]
    for p in paths:
        with av.open(str(p)) as container:
            assert container.streams.video[0].frames == specs[p.stem].num_frames
