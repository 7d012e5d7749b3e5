"""Merge the segments of one video and build its table rows (pure, no Ray).

Segments arrive with per-frame transition probabilities, embeddings of sampled frames
and their thumbnails. Concatenated in order they equal what processing the whole video
at once would give; shots, keyframes and scenes are computed on the whole.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any, overload

import numpy as np

from pipeline.algorithms.attention import normalise
from pipeline.config import Config, ScenesConfig
from pipeline.errors import StitchError
from pipeline.redaction import redact
from pipeline.algorithms.frame_stats import SegmentMeasures, ShotSignals, shot_layout, shot_signals
from pipeline.algorithms.keyframes import CandidateQuality, Keyframe, flash_frames, select_keyframes, transition_nearby
from pipeline.algorithms.scenes import COLOUR_LEVELS, colour_histogram, scene_ranges
from pipeline.algorithms.shots import FrameLooks, detect_shots


@dataclass
class SegmentResult(SegmentMeasures):
    """Model output for frames ``[start_frame, start_frame + num_frames)`` of a video, with the
    decode stage's statistics (:class:`~pipeline.algorithms.frame_stats.SegmentMeasures`: where
    one is None, shots keep flashes or lack that signal, and keyframes may be black, a flash or
    blurred)."""

    index: int
    count: int
    start_frame: int
    num_frames: int
    single: np.ndarray
    many: np.ndarray
    sample_frames: np.ndarray
    embeddings: np.ndarray
    #: JPEG of each sampled frame: a list, or a :class:`ThumbnailSpill` view on local disk.
    thumbnails: Sequence[bytes]
    warnings: list[str] = field(default_factory=list)
    #: Presentation time (s) of each frame; None means constant frame rate (frame / fps).
    frame_times: np.ndarray | None = None


class ThumbnailSpill:
    """A video's thumbnails in a local temporary file until it is stitched.

    A segment's thumbnails (one JPEG per sampled frame) arrive long before the video can be
    stitched, and only the keyframes' are kept; holding them all in memory would make the
    driver grow with the length of the video (an hour of 25 fps video: 15,000 thumbnails).
    ``add`` writes a segment's and returns a read-back view; ``close`` deletes the file.
    """

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="vindex-thumbnails-")
        self._end = 0

    def add(self, thumbnails: Sequence[bytes]) -> "SpilledThumbnails":
        spans = []
        for data in thumbnails:
            self._file.write(data)
            spans.append((self._end, len(data)))
            self._end += len(data)
        self._file.flush()  # reads go to the file descriptor, past Python's buffer
        return SpilledThumbnails(self, spans)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._file.fileno(), size, offset)

    def close(self) -> None:
        self._file.close()


class SpilledThumbnails(Sequence[bytes]):
    """One segment's thumbnails in a :class:`ThumbnailSpill`, read back on access."""

    def __init__(self, spill: ThumbnailSpill, spans: list[tuple[int, int]]) -> None:
        self._spill = spill
        self._spans = spans

    def __len__(self) -> int:
        return len(self._spans)

    @overload
    def __getitem__(self, i: int) -> bytes: ...
    @overload
    def __getitem__(self, i: slice) -> list[bytes]: ...
    def __getitem__(self, i: int | slice) -> bytes | list[bytes]:
        if isinstance(i, slice):
            return [self._spill.read(*span) for span in self._spans[i]]
        return self._spill.read(*self._spans[i])


def frame_clock(segments: list[SegmentResult], num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) time in seconds of every frame, the first frame at 0.

    From the stream's timestamps where every segment has them (variable frame rates stay
    exact), else frame / fps. A frame ends where the next begins; the last lasts 1 / fps.
    """
    nominal = np.arange(num_frames) / fps
    times = [s.frame_times for s in segments if s.num_frames]
    counts = [s.num_frames for s in segments if s.num_frames]
    starts = nominal
    if times and all(t is not None and len(t) == n for t, n in zip(times, counts)):
        measured = np.concatenate([t for t in times if t is not None]).astype(np.float64)
        measured -= measured[0]
        if np.all(np.diff(measured) > 0):  # else broken timestamps: keep the nominal rate
            starts = measured
    ends = np.append(starts[1:], starts[-1] + 1.0 / fps) if num_frames else starts
    return starts, ends


@dataclass
class VideoRows:
    """Rows for every table that one video contributes."""

    video: dict[str, Any]
    shots: list[dict[str, Any]] = field(default_factory=list)
    scenes: list[dict[str, Any]] = field(default_factory=list)
    keyframes: list[dict[str, Any]] = field(default_factory=list)


def video_row(
    meta: dict[str, Any],
    *,
    status: str,
    run_id: str,
    config_digest: str,
    derived_digest: str | None = None,
    error_stage: str | None = None,
    error_message: str | None = None,
    warnings: list[str] | None = None,
    counts: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """A ``videos`` row from listing/probe metadata and the outcome.

    ``config_digest`` stands for what decoding and the networks produced with (weights and
    settings), ``derived_digest`` for the settings of what is derived from those outputs.
    """
    num_shots, num_scenes, num_keyframes = counts if counts else (None, None, None)
    return {
        "video_id": meta["video_id"],
        "uri": meta["uri"],
        "size_bytes": meta.get("size_bytes"),
        "etag": meta.get("etag"),
        "mtime": meta.get("mtime"),
        "status": status,
        "error_stage": error_stage,
        # Messages quote URLs: never the credentials typed into one (pipeline.redaction).
        "error_message": redact(error_message) if error_message is not None else None,
        "warnings": redact("; ".join(warnings)) if warnings else None,
        "duration_s": meta.get("duration_s"),
        "fps": meta.get("fps"),
        "num_frames": meta.get("num_frames"),
        "width": meta.get("width"),
        "height": meta.get("height"),
        "codec": meta.get("codec"),
        "num_shots": num_shots,
        "num_scenes": num_scenes,
        "num_keyframes": num_keyframes,
        "config_digest": config_digest,
        "derived_digest": derived_digest,
        "run_id": run_id,
        "indexed_at": dt.datetime.now(dt.timezone.utc),
    }


def scene_rows(
    shot_rows: list[dict[str, Any]], shot_embeddings: np.ndarray, config: ScenesConfig, run_id: str
) -> list[dict[str, Any]]:
    """A video's ``scenes`` rows from its shots' rows and embeddings (one unit-norm row per shot)
    and the rows' ``colour_histogram`` (a shot without one is compared by its embedding alone).

    The one place scenes are made: when a video is indexed, and when only the scene settings
    changed and its stored shots are grouped again without decoding.
    """
    rows = []
    ranges = scene_ranges(shot_embeddings, config, shot_colour_histograms(shot_rows)) if shot_rows else []
    for scene_index, (first, last) in enumerate(ranges):
        rows.append(
            {
                "video_id": shot_rows[first]["video_id"],
                "scene_index": scene_index,
                "first_shot": first,
                "last_shot": last,
                "start_frame": shot_rows[first]["start_frame"],
                "end_frame": shot_rows[last]["end_frame"],
                "start_s": shot_rows[first]["start_s"],
                "end_s": shot_rows[last]["end_s"],
                "run_id": run_id,
            }
        )
    return rows


def shot_colour_histograms(shot_rows: list[dict[str, Any]]) -> np.ndarray:
    """float32 [shots, bins]: each row's ``colour_histogram``; zeros where a row has none."""
    histograms = [row.get("colour_histogram") for row in shot_rows]
    bins = next((len(h) for h in histograms if h is not None), COLOUR_LEVELS**3)
    out = np.zeros((len(shot_rows), bins), np.float32)
    for k, histogram in enumerate(histograms):
        if histogram is not None and len(histogram) == bins:
            out[k] = histogram
    return out


def scene_of_shot(scenes: list[dict[str, Any]]) -> dict[int, int]:
    """Shot index -> the index of the scene holding it."""
    return {shot: scene["scene_index"] for scene in scenes for shot in range(scene["first_shot"], scene["last_shot"] + 1)}


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """``parts`` end to end, leaving out empty ones.

    A segment past the break in a truncated file decodes no frame, and its arrays come back
    empty in whatever shape the stage had to hand (embeddings ``(0, 0)`` next to the others'
    ``(n, 1280)``); left out, they cannot break the concatenation. All empty: the first, as is.
    """
    filled = [p for p in parts if len(p)]
    return np.concatenate(filled) if filled else parts[0]


def frame_looks(segments: list[SegmentResult]) -> FrameLooks | None:
    """Every frame's luma and colour layout over the video's segments (in order); None unless
    every segment has them for each of its frames."""
    lumas, colours = [], []
    for s in segments:
        if s.frame_luma is None or s.frame_colours is None or not len(s.frame_luma) == len(s.frame_colours) == s.num_frames:
            return None
        lumas.append(s.frame_luma)
        colours.append(s.frame_colours)
    return FrameLooks(_concatenate(lumas), _concatenate(colours))


def video_motion(segments: list[SegmentResult]) -> np.ndarray | None:
    """Every frame's motion over the video's segments (in order); None unless every segment has it
    for each of its frames (each segment's first frame was compared with the frame before it, a
    context frame, so the joined array is what the whole video decoded at once gives)."""
    motions = []
    for s in segments:
        if s.frame_motion is None or len(s.frame_motion) != s.num_frames:
            return None
        motions.append(s.frame_motion)
    return _concatenate(motions)


def _as_list(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else [float(v) for v in values]


def video_layout(segments: list[SegmentResult]) -> np.ndarray | None:
    """Every frame's luma layout over the video's segments (in order); None unless every segment
    has it for each of its frames."""
    layouts = []
    for s in segments:
        if s.frame_layout is None or len(s.frame_layout) != s.num_frames:
            return None
        layouts.append(s.frame_layout)
    return _concatenate(layouts)


def all_sample_sharpness(segments: list[SegmentResult]) -> np.ndarray | None:
    """Every sampled frame's sharpness over the video's segments; None unless every segment has it."""
    sharpness = [s.sample_sharpness for s in segments]
    counts = [len(s.sample_frames) for s in segments]
    if all(a is not None and len(a) == n for a, n in zip(sharpness, counts)):
        return _concatenate([a for a in sharpness if a is not None])
    return None


def signal_columns(signals: ShotSignals) -> dict[str, Any]:
    """A shot row's curation columns (``motion``, ``brightness``, ``sharpness``, ``still``)."""
    return {
        "motion": signals.motion,
        "brightness": signals.brightness,
        "sharpness": signals.sharpness,
        "still": signals.still,
    }


def sample_quality(
    segments: list[SegmentResult], looks: FrameLooks | None, many: np.ndarray, sample_frames: np.ndarray, config: Config
) -> CandidateQuality:
    """Each sampled frame's fitness to be a keyframe, over the whole video (see CandidateQuality)."""
    transition = transition_nearby(many)[sample_frames]
    if looks is None:
        return CandidateQuality(transition)
    return CandidateQuality(
        transition,
        looks.luma[sample_frames],
        flash_frames(looks.luma, config.keyframes.flash_luma_jump)[sample_frames],
        all_sample_sharpness(segments),
    )


def stitch_video(
    meta: dict[str, Any],
    segments: list[SegmentResult],
    config: Config,
    run_id: str,
    digest: str,
    derived_digest: str | None = None,
) -> VideoRows:
    """Shots, scenes and keyframes of one video from all of its segments.

    Each shot row keeps the shot's embedding (the normalised mean of its frames'), from which
    scenes can be derived again without decoding, and its curation signals (motion, brightness,
    sharpness, still: :func:`~pipeline.algorithms.frame_stats.shot_signals`) from the decode
    stage's per-frame statistics, leaving out the frames keyframes leave out as mixed. Raises
    :class:`~pipeline.errors.StitchError` when the segments do not join into one video, or their
    arrays disagree.
    """
    try:
        return _stitch(meta, segments, config, run_id, digest, derived_digest)
    except ValueError as exc:  # shots and keyframes refuse arrays whose lengths disagree
        raise StitchError(meta["uri"], str(exc)) from exc


def _stitch(
    meta: dict[str, Any],
    segments: list[SegmentResult],
    config: Config,
    run_id: str,
    digest: str,
    derived_digest: str | None,
) -> VideoRows:
    """:func:`stitch_video`'s rows; a ValueError where the segments' arrays disagree."""
    segments = sorted(segments, key=lambda s: s.index)
    warnings = list(dict.fromkeys(w for s in segments for w in s.warnings))  # each once, in order
    expected = 0
    for seg in segments:
        if seg.start_frame != expected and seg.num_frames > 0:
            raise StitchError(meta["uri"], f"segment {seg.index} starts at frame {seg.start_frame}, expected {expected}")
        expected += seg.num_frames
    if expected == 0:
        # Decoding fails on a video it cannot read at all; this guards against an "ok" row
        # with no frames should every segment still come back empty.
        raise StitchError(meta["uri"], f"no frame could be decoded: all {len(segments)} segments came back empty")
    single = _concatenate([s.single for s in segments])
    many = _concatenate([s.many for s in segments])
    sample_frames = _concatenate([s.sample_frames for s in segments])
    # Kept in the precision they arrive in (float16 from the model stage); rows are widened to
    # float32 where used, so a long video's embeddings are held once, at half size.
    embeddings = _concatenate([s.embeddings for s in segments])
    # Thumbnails stay where they are (a list, or spilled to disk): only keyframes' are read.
    thumbnail_starts = np.cumsum([0] + [len(s.thumbnails) for s in segments])

    def thumbnail(sample: int) -> bytes:
        seg = int(np.searchsorted(thumbnail_starts, sample, side="right")) - 1
        return segments[seg].thumbnails[sample - int(thumbnail_starts[seg])]

    num_frames = len(single)
    fps = float(meta["fps"])
    video_id = meta["video_id"]
    starts, ends = frame_clock(segments, num_frames, fps)

    looks = frame_looks(segments)
    quality = sample_quality(segments, looks, many, sample_frames, config)
    # Frames too dark to be a keyframe are no shot either: the black hold of a fade is in its transition.
    shots = detect_shots(single, many, config.shots, looks, config.keyframes.black_luma)
    # The frames keyframes leave out as a transition's mixed frames are left out of the signals.
    mixed = transition_nearby(many) > config.keyframes.transition_probability
    motion = video_motion(segments)
    layout = video_layout(segments)
    sharpness = all_sample_sharpness(segments)
    shot_rows: list[dict[str, Any]] = []
    keyframe_picks: list[tuple[int, int, Keyframe]] = []
    shot_embeddings: list[np.ndarray] = []
    for shot_index, shot in enumerate(shots):
        inside = np.flatnonzero((sample_frames >= shot.start_frame) & (sample_frames <= shot.end_frame))
        if len(inside) == 0:
            # Only possible when the decoder returned fewer frames than the shot spans.
            nearest = int(np.argmin(np.abs(sample_frames - (shot.start_frame + shot.end_frame) / 2)))
            warnings.append(f"shot {shot_index} has no embedded frame; used frame {int(sample_frames[nearest])}")
            shot_embeddings.append(normalise(embeddings[nearest].astype(np.float32)))
        else:
            shot_vectors = embeddings[inside].astype(np.float32)
            shot_embeddings.append(normalise(shot_vectors.mean(axis=0)))
            picks = select_keyframes(
                sample_frames[inside], shot_vectors, shot.num_frames / fps, config.keyframes, quality.at(inside)
            )
            keyframe_picks.extend((shot_index, int(inside[k.candidate]), k) for k in picks)
        shot_rows.append(
            {
                "video_id": video_id,
                "shot_index": shot_index,
                "start_frame": shot.start_frame,
                "end_frame": shot.end_frame,
                "start_s": float(starts[shot.start_frame]),
                "end_s": float(ends[shot.end_frame]),
                "transition": shot.transition,
                "boundary_score": shot.boundary_score,
                "embedding": shot_embeddings[-1],
                # The colours of its frames' layouts: scenes tell look-alike places apart by them.
                "colour_histogram": (
                    colour_histogram(looks.colours[shot.start_frame : shot.end_frame + 1]) if looks is not None else None
                ),
                # Its frames' luma layouts averaged: duplicates are told from look-alikes by it.
                "luma_layout": _as_list(shot_layout(layout[shot.start_frame : shot.end_frame + 1])) if layout is not None else None,
                **signal_columns(
                    shot_signals(
                        shot.start_frame, shot.end_frame, mixed, looks.luma if looks is not None else None,
                        motion, sample_frames, sharpness,
                    )
                ),
                "run_id": run_id,
            }
        )
    scenes = scene_rows(shot_rows, np.stack(shot_embeddings) if shots else np.zeros((0, 0), np.float32), config.scenes, run_id)
    scene_index_of = scene_of_shot(scenes)
    keyframe_rows = [
        {
            "video_id": video_id,
            "shot_index": shot_index,
            "scene_index": scene_index_of[shot_index],
            "frame": pick.frame,
            "time_s": float(starts[pick.frame]),
            "score": pick.score,
            "embedding": embeddings[sample].astype(np.float32),
            "thumbnail": thumbnail(sample),
            "run_id": run_id,
        }
        for shot_index, sample, pick in keyframe_picks
    ]
    meta = {**meta, "num_frames": num_frames, "duration_s": float(ends[-1]) if num_frames else 0.0}
    video = video_row(
        meta,
        status="ok",
        run_id=run_id,
        config_digest=digest,
        derived_digest=derived_digest,
        warnings=warnings,
        counts=(len(shot_rows), len(scenes), len(keyframe_rows)),
    )
    return VideoRows(video, shot_rows, scenes, keyframe_rows)
