"""Decode a segment of a video at model resolution, once, for every model.

Frames are decoded once, resized by the decoder to ``DecodeConfig.width x height``
(decord cannot emit TransNetV2's 48x27 directly), then:

* every frame is downscaled to 48x27 for the shot network;
* every ``stride``-th frame (global frame numbers) is kept at decode size for
  embeddings and thumbnails;
* cheap statistics ride along (:mod:`pipeline.algorithms.frame_stats`): each frame's mean
  luma, a coarse colour layout and its change from the frame before (from its 48x27 copy),
  and each sampled frame's sharpness (at decode size).

Which frames a segment needs is segment maths (:mod:`pipeline.algorithms.segments`); where
its bytes come from is decided by :func:`pipeline.media.opening.open_media`, and the order in
which a segment falls back from its span to the whole file and to sequential decoding by
:func:`open_segment`, the one place that opens a segment.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.algorithms.frame_stats import (
    COLOUR_FEATURES,
    LAYOUT_FEATURES,
    SegmentMeasures,
    frame_measures,
    luma_layout,
    no_measures,
    sharpness,
)
from pipeline.algorithms.segments import Segment, frames_to_decode, sample_indices, shot_input_indices
from pipeline.config import Config
from pipeline.errors import DecodeError, FastDecoderError
from pipeline.media.opening import MediaKind, MediaSource, open_av, open_media
from pipeline.media.spans import PlannedSpan
from pipeline.redaction import redact
from pipeline.models.spec import INPUT_HEIGHT, INPUT_WIDTH

log = logging.getLogger(__name__)

#: Frames decoded per decoder call: bounds a decode actor's working memory.
DECODE_CHUNK_FRAMES = 128
#: Longest error text kept from a third-party decoder's message.
MAX_ERROR_CHARS = 300


@dataclass
class DecodedSegment(SegmentMeasures):
    """What decoding a segment yields for the models; the statistics measured on its frames are
    the fields of :class:`~pipeline.algorithms.frame_stats.SegmentMeasures`."""

    start_frame: int
    #: Frames of this segment actually decoded (the last segment may differ from the plan).
    num_frames: int
    #: uint8 [num_frames + 2*context (+ end padding), 27, 48, 3]: the shot network's padded input.
    shot_frames: np.ndarray
    #: uint8 [S, H, W, 3] frames at decode size, global numbers in ``sample_frames``.
    samples: np.ndarray
    sample_frames: np.ndarray
    #: Total frames of the video as the decoder counts them.
    video_frames: int
    #: float64 [num_frames]: presentation time (s) of each frame of the segment, from the stream's
    #: timestamps, so variable-frame-rate videos get true times.
    frame_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    warnings: list[str] = field(default_factory=list)
    #: Where the decoded bytes came from (a :data:`~pipeline.media.opening.MediaKind`): "span" for
    #: a segment decoded from its own keyframe span, "local"/"staged"/"ranged" for the whole file.
    media_kind: MediaKind = "local"


def to_shot_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, 27, 48, 3], antialiased (like a video scaler).

    Stays uint8 and channels-last, torch's vectorised path for this resize (6x faster here
    than going through float32).
    """
    x = frames.permute(0, 3, 1, 2)  # a channels-last view, no copy
    x = F.interpolate(x, size=(INPUT_HEIGHT, INPUT_WIDTH), mode="bilinear", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous()


class _Reader:
    """decord reader decoding at a fixed size, over a whole video or one span of it (``media``).

    On a span, global frame numbers are mapped onto the span's frames.
    """

    def __init__(self, media: MediaSource, reader: Any) -> None:
        self.uri = media.uri
        self.media = media
        self._reader = reader

    def close(self) -> None:
        # Drop the decoder: it keeps decoding ahead on its own threads while it lives.
        self._reader = None

    def __len__(self) -> int:
        span = self.media.span
        return span.video_frames if span is not None else len(self._reader)

    def times(self, start: int, end: int) -> np.ndarray:
        """Presentation times (s) of frames ``[start, end)``."""
        import decord

        span = self.media.span
        if span is not None:
            return span.times[start - span.first : end - span.first]
        try:
            return np.asarray(self._reader.get_frame_timestamp(list(range(start, end)))[:, 0], np.float64)
        except (decord.DECORDError, RuntimeError, IndexError) as exc:
            raise FastDecoderError(self.uri, f"reading frame times failed: {_short(exc)}") from exc

    def frames(self, indices: np.ndarray) -> torch.Tensor:
        import decord

        local = indices - self.media.first_frame
        try:
            batch = self._reader.get_batch(local.tolist())
        except (decord.DECORDError, RuntimeError, IndexError) as exc:
            raise FastDecoderError(
                self.uri, f"decoding frames {int(indices[0])}..{int(indices[-1])} failed: {_short(exc)}"
            ) from exc
        return torch.from_numpy(batch.asnumpy())


@dataclass
class OpenedSegment:
    """One segment's bytes as :func:`open_segment` opened them, and the last way to its frames."""

    uri: str
    storage_options: dict[str, Any] | None
    #: decord on the span or the whole file; None where decord could not open either.
    reader: _Reader | None
    #: Why decord is not used (it could not open the file), once it is not.
    failure: str | None = None
    #: The whole file, where it was opened (a local path or a staged copy): the sequential
    #: decoder reads it rather than fetching the object again.
    whole: MediaSource | None = None

    def decode(self, segment: Segment, config: Config, size: tuple[int, int], rotation: int) -> DecodedSegment:
        """The segment decoded by decord, or else sequentially (:func:`decode_sequentially`)."""
        if self.reader is not None:
            try:
                return _decode_with(self.reader, segment, config, size)
            except FastDecoderError as exc:
                self.reader.close()
                self.failure = exc.message
        assert self.failure is not None  # set wherever the reader is not there
        log.info("%s: fast decoder failed (%s); decoding sequentially", redact(self.uri), self.failure)
        return decode_sequentially(
            self.uri, segment, config, self.storage_options, size=size, rotation=rotation, reason=self.failure,
            media=self.whole,
        )


@contextlib.contextmanager
def open_segment(
    uri: str,
    storage_options: dict[str, Any] | None,
    *,
    frames: tuple[int, int | None] | None,
    planned: PlannedSpan | None,
    size: tuple[int, int],
    threads: int,
) -> Iterator[OpenedSegment]:
    """Open one segment's frames, each way tried only where the one before failed, and each
    fallback logged once with its reason:

    1. decord on the segment's span (``frames``; ``planned``: the span planning found, see
       :func:`~pipeline.media.opening.open_media`): the bytes are opened once, for the cut;
    2. decord on the whole file, where no span was cut, or decord cannot open the span or
       counts other frames than were cut (the span's file is deleted first);
    3. PyAV, decoding from the first frame (:meth:`OpenedSegment.decode`), where decord cannot
       open the whole file or fails while decoding: from the whole file already opened where
       there is one.

    A file that does not exist or may not be read is a :class:`~pipeline.errors.DecodeError`.
    """
    import decord

    width, height = size
    with contextlib.ExitStack() as stack:
        try:
            media = stack.enter_context(open_media(uri, storage_options, frames=frames, needs_path=True, planned=planned))
            reader = _decord_on_span(media, width, height, threads) if media.span is not None else None
            if media.span is not None and reader is None:  # the whole file instead
                stack.close()  # deletes the span's file
                media = stack.enter_context(open_media(uri, storage_options, needs_path=True))
            whole = None if media.span is not None else media
            try:
                if reader is None:
                    reader = decord.VideoReader(media.path, width=width, height=height, num_threads=threads)
            except (decord.DECORDError, RuntimeError, OSError) as exc:
                if isinstance(exc, (FileNotFoundError, PermissionError)):
                    raise
                opened = OpenedSegment(uri, storage_options, None, f"decoder could not open the video: {_short(exc)}", whole)
            else:
                opened = OpenedSegment(uri, storage_options, _Reader(media, reader), whole=whole)
        except FileNotFoundError as exc:
            raise DecodeError(uri, f"object not found: {exc}") from exc
        except PermissionError as exc:
            raise DecodeError(uri, f"access denied: {exc}") from exc
        except (decord.DECORDError, RuntimeError, OSError) as exc:
            opened = OpenedSegment(uri, storage_options, None, f"decoder could not open the video: {_short(exc)}")
        try:
            yield opened
        finally:
            if opened.reader is not None:
                opened.reader.close()


def _decord_on_span(media: MediaSource, width: int, height: int, threads: int) -> Any:
    """decord on the span's file; None (span dropped, the whole file next) where decord cannot
    open it or counts other frames than were cut."""
    import decord

    span = media.span
    assert span is not None  # only called on a span
    try:
        reader = decord.VideoReader(media.path, width=width, height=height, num_threads=threads)
        problem = "" if len(reader) == span.frames else f"{len(reader)} frames, {span.frames} cut"
    except (decord.DECORDError, RuntimeError) as exc:
        reader, problem = None, _short(exc)
    if not problem:
        return reader
    log.info("%s: span not used (%s); decoding the whole file", redact(media.uri), problem)
    return None


def _short(exc: BaseException) -> str:
    """First line of a third-party error, without decord's time and source-file prefix."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    return re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text[0])[:MAX_ERROR_CHARS]


def _chunks(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for i in range(0, len(indices), size):
        yield indices[i : i + size]


def decode_segment(
    uri: str,
    segment: Segment,
    config: Config,
    storage_options: dict[str, Any] | None = None,
    *,
    size: tuple[int, int] | None = None,
    rotation: int = 0,
    planned: PlannedSpan | None = None,
) -> DecodedSegment:
    """Decode one segment: padded 48x27 frames for shots, sampled frames for embeddings.

    decord (random access through a frame index) is the fast path, on the segment's own span
    where one can be cut (``planned``: the span planning found; None: found from the container
    itself). Where it fails, e.g. on a truncated file or a decoder error midway, PyAV decodes
    the stream sequentially (:func:`decode_sequentially`) and the segment keeps whatever frames
    could be decoded, with a warning saying so. The order is :func:`open_segment`'s.

    ``size`` is the (width, height) to decode to, as displayed (default: the configured box);
    ``rotation`` the display rotation, which decord applies itself and PyAV does not.
    """
    size = size or (config.decode.width, config.decode.height)
    # One segment of several: decode only its span (the shot network's context either side).
    frames = frames_to_decode(segment) if segment.count > 1 else None
    with open_segment(
        uri, storage_options, frames=frames, planned=planned, size=size, threads=config.decode.threads
    ) as opened:
        return opened.decode(segment, config, size, rotation)


def _assemble(
    start: int,
    end: int,
    video_frames: int,
    config: Config,
    size: tuple[int, int],
    frame_of: Callable[[np.ndarray], torch.Tensor],
    times: np.ndarray,
    warnings: list[str],
    media_kind: MediaKind,
) -> DecodedSegment:
    """Build a segment's outputs from ``frame_of(indices) -> uint8 [n, H, W, 3]`` at decode size."""
    if start >= end:
        empty = np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8)
        no_samples = np.zeros((0, size[1], size[0], 3), np.uint8)
        return DecodedSegment(
            start_frame=start, num_frames=0, shot_frames=empty, samples=no_samples, sample_frames=np.zeros(0, np.int64),
            video_frames=video_frames, frame_times=times[:0], warnings=warnings, media_kind=media_kind, **no_measures(),
        )
    luma = np.empty(end - start, np.float32)
    colours = np.empty((end - start, COLOUR_FEATURES), np.float32)
    motion = np.empty(end - start, np.float32)
    layout = np.empty((end - start, LAYOUT_FEATURES), np.uint8)
    step = config.shots.step
    wanted = shot_input_indices(start, end, video_frames, step)
    samples_at = sample_indices(start, end, config.embed.stride_frames)
    # Each distinct frame once, in order, in chunks; padding repeats are gathered afterwards.
    unique, inverse = np.unique(wanted, return_inverse=True)
    small = torch.empty((len(unique), INPUT_HEIGHT, INPUT_WIDTH, 3), dtype=torch.uint8)
    samples = np.empty((len(samples_at), size[1], size[0], 3), np.uint8)
    sharp = np.empty(len(samples_at), np.float32)
    filled = 0
    for offset, chunk in zip(range(0, len(unique), DECODE_CHUNK_FRAMES), _chunks(unique, DECODE_CHUNK_FRAMES)):
        frames = frame_of(chunk)
        small[offset : offset + len(chunk)] = to_shot_input(frames)
        own = (chunk >= start) & (chunk < end)  # not the context either side
        if own.any():
            # ``unique`` is consecutive frame numbers and the own frames a run of them, so the
            # frame before each is the row before it in ``small``: for the first, a context frame
            # or the previous chunk's last; none at the video's first frame.
            at = offset + np.flatnonzero(own)
            before = small[at[0] - 1].numpy() if at[0] > 0 else None
            measured = frame_measures(small[at[0] : at[-1] + 1].numpy(), before)
            luma[chunk[own] - start], colours[chunk[own] - start], motion[chunk[own] - start] = measured
            layout[chunk[own] - start] = luma_layout(small[at[0] : at[-1] + 1].numpy())
        hits = np.isin(chunk, samples_at)
        if hits.any():
            picked = frames[torch.from_numpy(hits)].numpy()
            samples[filled : filled + len(picked)] = picked
            sharp[filled : filled + len(picked)] = sharpness(picked)
            filled += len(picked)
    shot_frames = small[torch.from_numpy(inverse)].numpy()
    return DecodedSegment(
        start_frame=start, num_frames=end - start, shot_frames=shot_frames, samples=samples, sample_frames=samples_at,
        video_frames=video_frames, frame_times=times, warnings=warnings, media_kind=media_kind,
        frame_luma=luma, frame_colours=colours, sample_sharpness=sharp, frame_motion=motion, frame_layout=layout,
    )


def decode_sequentially(
    uri: str,
    segment: Segment,
    config: Config,
    storage_options: dict[str, Any] | None = None,
    *,
    size: tuple[int, int] | None = None,
    rotation: int = 0,
    reason: str,
    media: MediaSource | None = None,
) -> DecodedSegment:
    """Decode from the first frame with PyAV, keeping this segment's frames (and context).

    The fallback of :func:`decode_segment` where decord fails (``reason``, kept in the
    warnings): slower, but it reads a stream up to wherever it breaks, from ``media`` (the whole
    file, already opened) or else a local file or ranged reads. Frames are turned upright here
    (``rotation``), as decord does itself.
    """
    import av

    size = size or (config.decode.width, config.decode.height)
    turns = rotation // 90 % 4  # counterclockwise quarter turns to display orientation
    stored_width, stored_height = (size[1], size[0]) if turns % 2 else size
    first, stop = frames_to_decode(segment)  # stop exclusive; None: to the end
    kept: dict[int, np.ndarray] = {}
    times: dict[int, float] = {}
    decoded, failure = 0, None
    media_kind: MediaKind = "local"
    with contextlib.ExitStack() as stack:
        try:
            if media is None:
                media = stack.enter_context(open_media(uri, storage_options))
            media_kind = media.kind
            container = stack.enter_context(open_av(media))
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if stop is not None and decoded >= stop:
                    break
                if decoded >= first:
                    rgb = frame.to_ndarray(width=stored_width, height=stored_height, format="rgb24")
                    kept[decoded] = np.rot90(rgb, turns) if turns else rgb
                    times[decoded] = float(frame.time) if frame.time is not None else decoded / float(stream.average_rate or 1)
                decoded += 1
        except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
            failure = getattr(exc, "strerror", None) or str(exc)
    ended = failure is not None or stop is None or decoded < stop
    if decoded == 0:
        raise DecodeError(uri, f"no frame could be decoded ({reason}; then: {failure or 'empty stream'})")
    # Stopped early on purpose: the video goes on past ``stop``, so nothing needs end padding.
    video_frames = stop if stop is not None and not ended else decoded
    start = segment.start_frame
    end = min(segment.end_frame, decoded) if not segment.is_last else decoded
    warnings = [f"fast decoder failed ({reason}); decoded sequentially"]
    if failure is not None:
        warnings.append(f"stream broke after frame {decoded - 1} ({failure}); indexed the frames before it")
    elif ended and decoded < segment.end_frame:
        warnings.append(f"stream ended after {decoded} frames; the container said {segment.end_frame} or more")
    elif segment.is_last and decoded != segment.end_frame:
        warnings.append(f"container said {segment.end_frame} frames, decoder found {decoded}")

    def frame_of(indices: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([kept[int(i)] for i in indices]))

    segment_times = np.array([times[i] for i in range(start, max(start, end))], np.float64)
    return _assemble(start, end, video_frames, config, size, frame_of, segment_times, warnings, media_kind)


def _decode_with(reader: _Reader, segment: Segment, config: Config, size: tuple[int, int]) -> DecodedSegment:
    video_frames = len(reader)
    if video_frames <= 0:
        raise FastDecoderError(reader.uri, "the decoder found no frames")
    end = video_frames if segment.is_last else min(segment.end_frame, video_frames)
    warnings = []
    if segment.is_last and end != segment.end_frame:
        warnings.append(f"container said {segment.end_frame} frames, decoder found {video_frames}")
    times = reader.times(segment.start_frame, end) if end > segment.start_frame else np.zeros(0)
    return _assemble(
        segment.start_frame, end, video_frames, config, size, reader.frames, times, warnings, reader.media.kind
    )
