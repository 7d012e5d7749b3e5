"""A fade through black is one gradual transition: no shot of black alone, no black keyframe.

Generated clips, 180p to 1080p: a shot fades out, the screen holds black for 0 to 24 frames,
the next shot fades in. The shot network's transition head is high on the fading frames and
low on the black ones, so without the rule the hold came out as a shot of its own, with a
black keyframe. Each clip goes through decoding, the shot network and the stitcher in
process (no Ray).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.algorithms.attention import normalise
from pipeline.algorithms.segments import Segment, decode_size
from pipeline.algorithms.stitch import SegmentResult, VideoRows, stitch_video
from pipeline.config import Config
from pipeline.media.decode import decode_segment
from pipeline.models.inference import predict_transitions
from testkit import synthetic

#: Frames of each shot, and of the fade out of the first and into the second.
SHOT_FRAMES = 40
FADE_FRAMES = 8
FPS = 25


@dataclass(frozen=True)
class FadeClip:
    """Where the parts of a generated fade through black lie, as ranges of frame numbers."""

    path: Path
    hold_frames: int
    lead_frames: int = 0  # black frames before the first shot (a fade in from black)
    tail_frames: int = 0  # black frames after the second shot's fade out

    @property
    def fade_out(self) -> range:
        start = self.lead_frames + (FADE_FRAMES if self.lead_frames else 0) + SHOT_FRAMES
        return range(start, start + FADE_FRAMES)

    @property
    def fade_in(self) -> range:
        start = self.fade_out.stop + self.hold_frames
        return range(start, start + FADE_FRAMES)

    @property
    def transition(self) -> range:
        """Every frame from the first faded one to the last faded one, the black hold included."""
        return range(self.fade_out.start, self.fade_in.stop)


def _weighted(frame: np.ndarray, weight: float) -> np.ndarray:
    return np.round(frame.astype(np.float32) * weight).astype(np.uint8)


def fade_frames(spec: synthetic.ClipSpec, hold: int, lead: int = 0, tail: int = 0) -> Iterator[np.ndarray]:
    """Shot 0, a fade out, ``hold`` black frames, a fade in, shot 1 (after ``lead`` black frames
    and a fade in, before a fade out and ``tail`` black frames, where asked), one at a time."""
    black = np.zeros((spec.height, spec.width, 3), np.uint8)
    weights = [(k + 1) / (FADE_FRAMES + 1) for k in range(FADE_FRAMES)]  # rising, never 0 or 1

    def fade_in(shot: int) -> Iterator[np.ndarray]:
        return (_weighted(synthetic.render_shot_frame(spec, shot, k - FADE_FRAMES), w) for k, w in enumerate(weights))

    def fade_out(shot: int) -> Iterator[np.ndarray]:
        frames = (synthetic.render_shot_frame(spec, shot, SHOT_FRAMES + k) for k in range(FADE_FRAMES))
        return (_weighted(frame, 1 - w) for frame, w in zip(frames, weights))

    if lead:
        yield from [black] * lead
        yield from fade_in(0)
    yield from (synthetic.render_shot_frame(spec, 0, k) for k in range(SHOT_FRAMES))
    yield from fade_out(0)
    yield from [black] * hold
    yield from fade_in(1)
    yield from (synthetic.render_shot_frame(spec, 1, k) for k in range(SHOT_FRAMES))
    if tail:
        yield from fade_out(1)
        yield from [black] * tail


def write_frames(path: Path, frames: Iterable[np.ndarray], scale: int = 1) -> None:
    """Encode RGB frames, each enlarged ``scale`` times, as H.264 (libx264, yuv420p) at :data:`FPS`."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "ultrafast"}
        for i, small in enumerate(frames):
            rgb = small.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else small
            if i == 0:
                stream.height, stream.width, _ = rgb.shape
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


#: Widest frame the shots are drawn at: larger clips are these frames enlarged (drawing a
#: 1080p frame takes ten times as long as encoding it), still decoded from a file of their size.
DRAWN_WIDTH = 640


def write_fade(path: Path, width: int, height: int, hold: int, lead: int = 0, tail: int = 0) -> FadeClip:
    scale = -(-width // DRAWN_WIDTH)
    spec = synthetic.simple_spec(
        [SHOT_FRAMES, SHOT_FRAMES], "cut", width=width // scale, height=height // scale, fps=FPS, seed=7
    )
    write_frames(path, fade_frames(spec, hold, lead, tail), scale)
    return FadeClip(path, hold, lead, tail)


def stitch_clip(clip: FadeClip, model: torch.nn.Module) -> tuple[VideoRows, np.ndarray]:
    """(the stitcher's rows, each frame's mean luma) for a generated clip, as the pipeline makes them.

    Embeddings are made up so that the black frames are the most central of all: by
    centrality alone, a black frame would be the keyframe of any shot that holds one.
    """
    config = Config()
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        width, height, count = stream.width, stream.height, stream.frames
    size = decode_size(width, height, config.decode.width, config.decode.height)
    decoded = decode_segment(str(clip.path), Segment(0, 1, 0, count), config, size=size)
    single, many = predict_transitions(
        model, decoded.shot_frames, window=config.shots.window_frames, batch_windows=1,
        device=torch.device("cpu"), precision=config.inference.precision,
    )
    samples = decoded.sample_frames
    embeddings = normalise(np.random.default_rng(5).normal(size=(len(samples), 64))).astype(np.float32)
    black = decoded.frame_luma[samples] < config.keyframes.black_luma
    embeddings[black] = normalise(embeddings.sum(axis=0))
    result = SegmentResult(
        0, 1, 0, count, single[:count], many[:count], samples, embeddings, [b""] * len(samples),
        frame_luma=decoded.frame_luma, frame_colours=decoded.frame_colours,
        sample_sharpness=decoded.sample_sharpness, frame_motion=decoded.frame_motion,
    )
    meta = {"video_id": clip.path.stem, "uri": str(clip.path), "fps": FPS}
    return stitch_video(meta, [result], config, "r", "d"), decoded.frame_luma


#: (black hold in frames, width, height): holds of none, a few, half a second and a second,
#: from 180p to 1080p.
CASES = [(0, 320, 180), (4, 640, 360), (12, 320, 180), (12, 1280, 720), (24, 426, 240), (24, 1920, 1080)]


@pytest.mark.parametrize(("hold", "width", "height"), CASES, ids=[f"hold{h}-{y}p" for h, _, y in CASES])
def test_a_fade_through_black_is_one_gradual_transition(
    hold: int, width: int, height: int, tmp_path: Path, shot_model: torch.nn.Module
) -> None:
    clip = write_fade(tmp_path / f"fade_{hold}_{height}p.mp4", width, height, hold)
    rows, luma = stitch_clip(clip, shot_model)
    shots = [(s["start_frame"], s["end_frame"], s["transition"]) for s in rows.shots]
    assert len(shots) == 2, shots
    (_, first_end, _), (second_start, last, how) = shots
    assert how == "gradual" and last == len(luma) - 1
    # Every black frame lies between the two shots, in the one transition.
    black = np.flatnonzero(luma < Config().keyframes.black_luma)
    assert first_end < black.min() and black.max() < second_start
    assert first_end < clip.fade_out.stop and second_start >= clip.fade_in.start
    keyframes = [k["frame"] for k in rows.keyframes]
    assert {k["shot_index"] for k in rows.keyframes} == {0, 1}
    assert not set(keyframes) & set(clip.transition)
    assert all(luma[f] >= Config().keyframes.black_luma for f in keyframes)


def test_black_before_the_first_shot_and_after_the_last_makes_no_shot_and_no_keyframe(
    tmp_path: Path, shot_model: torch.nn.Module
) -> None:
    clip = write_fade(tmp_path / "lead_tail.mp4", 320, 180, hold=6, lead=12, tail=12)
    rows, luma = stitch_clip(clip, shot_model)
    black_luma = Config().keyframes.black_luma
    assert len(rows.shots) == 2
    for shot in rows.shots:
        assert not np.all(luma[shot["start_frame"] : shot["end_frame"] + 1] < black_luma)
    assert rows.keyframes and all(luma[k["frame"]] >= black_luma for k in rows.keyframes)


def test_a_video_that_is_black_throughout_is_one_shot_with_a_keyframe(
    tmp_path: Path, shot_model: torch.nn.Module
) -> None:
    path = tmp_path / "black.mp4"
    write_frames(path, [np.zeros((180, 320, 3), np.uint8)] * 50)
    rows, _ = stitch_clip(FadeClip(path, 0), shot_model)
    assert rows.video["status"] == "ok" and rows.video["num_shots"] == 1
    assert [(s["start_frame"], s["end_frame"]) for s in rows.shots] == [(0, 49)]
    assert len(rows.keyframes) == 1
