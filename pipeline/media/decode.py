"""Probe videos, split them into segments, and decode a segment at model resolution.

Frames are decoded once, resized by the decoder to ``DecodeConfig.width x height``
(decord cannot emit TransNetV2's 48x27 directly), then:

* every frame is downscaled to 48x27 for the shot network;
* every ``stride``-th frame (global frame numbers) is kept at decode size for
  embeddings and thumbnails;
* cheap statistics ride along: each frame's mean luma and a coarse colour layout (from its
  48x27 copy), and each sampled frame's sharpness (at decode size). Shot post-processing
  tells flashes from cuts with them, and keyframe selection skips black, flash and blurred
  frames, without decoding anything twice.

Segments let several actors decode one long video and keep memory bounded. The shot
network predicts frames in steps of ``window - 2 * context`` on one global grid, so a
segment starting on that grid, decoded with ``context`` frames either side, gives
exactly the predictions of decoding the whole video.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import SHOT_CONTEXT_FRAMES, Config
from pipeline.errors import DecodeError, ProbeError
from pipeline.models.transnetv2 import INPUT_HEIGHT, INPUT_WIDTH
from pipeline.sources.listing import READ_ATTEMPTS, is_transient, is_utf8, local_path, open_input, with_retries

log = logging.getLogger(__name__)

#: Frames decoded per decoder call: bounds a decode actor's working memory.
DECODE_CHUNK_FRAMES = 128
#: Read size when PyAV reads a remote object through fsspec.
REMOTE_BLOCK_BYTES = 1 << 20
#: Bytes per read when staging a remote object to a local file.
STAGE_CHUNK_BYTES = 8 << 20
#: Rows x columns of cells in a frame's colour layout (the mean RGB of each cell of its 48x27
#: copy): 36 numbers, coarse enough that a pan of a few frames barely moves them.
COLOUR_GRID = (3, 4)
COLOUR_FEATURES = 3 * COLOUR_GRID[0] * COLOUR_GRID[1]
#: ITU-R BT.601 luma weights of R, G, B (the luma of the frames' own YUV, on 0-255).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
#: Decoded pixels above which a video is refused rather than risk memory (16K x 16K).
MAX_SOURCE_PIXELS = 16384 * 16384
#: Frames a decoder may reorder (B-frame depth): a cut starts at a keyframe at least this many
#: frames before the first frame it must deliver, so no leading frame of an open GOP is lost.
REORDER_MARGIN_FRAMES = 16
#: How far (s) a stream may end before a container's declared duration without the file being
#: called cut short. A frame count estimated as duration x fps is off by a frame from rounding,
#: and a container's duration is its longest stream's: audio often runs a few frames past the
#: video. Only a larger gap is a break, and planning's warning names it.
DURATION_SLACK_S = 1.0


@dataclass(frozen=True)
class ProbeResult:
    """Container and stream metadata of one video."""

    num_frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    codec: str
    #: True when ``num_frames`` is an estimate from duration x fps (no frame count in the container).
    frames_estimated: bool = False
    #: Display rotation (degrees counterclockwise) from the stream's display matrix.
    rotation: int = 0
    #: Frames the file's bytes hold, where clearly fewer than ``num_frames``: a truncated upload
    #: keeps the header that declares the whole video. None where nothing is missing, or where
    #: it cannot be told without decoding.
    held_frames: int | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as the video is meant to be shown, after rotation."""
        return (self.height, self.width) if self.rotation % 180 == 90 else (self.width, self.height)

    @property
    def shortfall(self) -> str | None:
        """The break, in words for the video's warnings, where the file holds less than it declares."""
        if self.held_frames is None:
            return None
        return (
            f"file cut short: the container declares {self.num_frames} frames ({self.duration_s:.1f} s) "
            f"but its data holds about {self.held_frames}; indexed up to the break"
        )


@dataclass(frozen=True)
class Segment:
    """Frames ``[start_frame, end_frame)`` of a video; the last segment runs to the true end."""

    index: int
    count: int
    start_frame: int
    end_frame: int

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1


@dataclass
class DecodedSegment:
    """What decoding a segment yields for the models."""

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
    #: float32 [num_frames]: mean luma (0-255) of each frame of the segment (flashes, black frames).
    frame_luma: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    #: float32 [num_frames, COLOUR_FEATURES]: each frame's colour layout (see
    #: :func:`frame_statistics`), to tell whether the frames either side of a flash are one shot.
    frame_colours: np.ndarray = field(default_factory=lambda: np.zeros((0, COLOUR_FEATURES), np.float32))
    #: float32 [S]: sharpness of each sampled frame (see :func:`sharpness`).
    sample_sharpness: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def _fps_of(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def probe(uri: str, storage_options: dict[str, Any] | None = None) -> ProbeResult:
    """Read container metadata with PyAV, fetching only the bytes the demuxer asks for.

    Transient storage errors are retried with backoff; what still fails is a ProbeError.
    """
    try:
        return with_retries(lambda: _probe(uri, storage_options), uri)
    except ProbeError:
        raise
    except OSError as exc:
        tries = f" after {READ_ATTEMPTS} attempts" if is_transient(exc) else ""
        raise ProbeError(uri, f"reading the object failed{tries}: {exc}") from exc


def _open_container(stack: contextlib.ExitStack, uri: str, storage_options: dict[str, Any] | None) -> Any:
    """A PyAV container on ``uri``: a local path directly, anything else through fsspec with
    small ranged reads (only the bytes the demuxer asks for), closed with ``stack``."""
    import av

    path = local_path(uri)
    source: Any = path if path is not None else stack.enter_context(
        open_input(uri, storage_options, block_size=REMOTE_BLOCK_BYTES)
    )
    return stack.enter_context(av.open(source, mode="r", metadata_errors="ignore"))


def _probe(uri: str, storage_options: dict[str, Any] | None) -> ProbeResult:
    import av

    try:
        with contextlib.ExitStack() as stack:
            container = _open_container(stack, uri, storage_options)
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise ProbeError(uri, f"no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            fps = _fps_of(stream)
            if stream.duration is not None and stream.time_base is not None:
                duration_s = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration_s = container.duration / 1_000_000
            else:
                duration_s = 0.0
            width, height = stream.codec_context.width, stream.codec_context.height
            codec = stream.codec_context.name
            frames = int(stream.frames or 0)
            rotation = _first_frame_rotation(container, stream)
            held = _frames_held(container, stream, fps)
    except ProbeError:
        raise
    except FileNotFoundError as exc:
        raise ProbeError(uri, f"object not found: {exc}") from exc
    except PermissionError as exc:
        raise ProbeError(uri, f"access denied: {exc}") from exc
    except av.FFmpegError as exc:
        raise ProbeError(uri, f"not a readable video container: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProbeError(uri, f"not a readable video container: {exc}") from exc
    if width <= 0 or height <= 0:
        raise ProbeError(uri, f"video stream has no picture size ({width}x{height})")
    if width * height > MAX_SOURCE_PIXELS:
        raise ProbeError(uri, f"resolution {width}x{height} exceeds the supported {MAX_SOURCE_PIXELS} pixels")
    if fps <= 0:
        raise ProbeError(uri, "video stream has no frame rate")
    estimated = frames <= 0
    if estimated:
        frames = int(round(duration_s * fps))
    if frames <= 0:
        raise ProbeError(uri, f"video stream ({codec}) has no frames: a still image or an empty stream")
    if duration_s <= 0:
        duration_s = frames / fps
    held_frames = None
    if held is not None and held.frames < frames - held.slack:
        held_frames = max(0, held.frames)
    return ProbeResult(frames, fps, duration_s, width, height, codec, estimated, rotation, held_frames)


def _first_frame_rotation(container: Any, stream: Any) -> int:
    """Rotation of the first decodable frame (0 if none decodes: decoding will say why)."""
    import av

    try:
        for frame in container.decode(stream):
            return int(round(frame.rotation / 90.0)) * 90 % 360
    except (av.FFmpegError, ValueError):
        pass
    return 0


@dataclass(frozen=True)
class _Held:
    """Frames a file's bytes hold, give or take ``slack`` frames."""

    frames: int
    slack: int


def _frames_held(container: Any, stream: Any, fps: float) -> _Held | None:
    """How many frames the file's bytes hold, found without decoding; None where it cannot be told.

    A truncated upload keeps its header: an MP4 with its index at the front (faststart) still
    lists every frame, a Matroska file still declares the whole duration. Planned from the
    header, every segment past the break is a phantom that opens, fetches and decodes the file
    for nothing (an hour declared at 25 fps, a minute held: 59 of 60 segments of 1,500 frames).

    * With a complete frame index (MP4, MOV): frames whose bytes end past the end of the file
      are missing. Free: the demuxer read the index to open the file.
    * Without one (Matroska, WebM, MPEG-TS): the end time of the last packet, found by seeking
      to the declared end. Measured on a two-minute clip: a complete Matroska file seeks
      through its cues, 8 KB read past the 32 KB header; MPEG-TS bisects, 34 KB. A Matroska
      file without cues (a truncated one has none) is read through to its end once, packets
      only, no decoding; each of its segments reads the whole file anyway (without a frame
      index no span can be cut), so this costs planning at most one segment's reading.

    Rather than trusting the header and capping the plan (which would leave the last segment
    of a long, intact video unbounded), or guessing the length from size / bitrate (which
    follows what is on screen: a clip that opens still and turns busy is misjudged), the file
    is asked where it ends.
    """
    import av

    size = container.size
    frames = int(stream.frames or 0)
    entries = stream.index_entries
    if frames > 0 and len(entries) == frames:
        if size <= 0:
            return None
        missing = sum(1 for e in entries if e.pos >= 0 and e.pos + e.size > size)
        return _Held(frames - missing, 0)
    if not container.duration or stream.time_base is None:
        return None
    origin = stream.start_time or 0
    target = origin + int(Fraction(container.duration, 1_000_000) / stream.time_base)
    last_end = None
    try:
        container.seek(target, stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = packet.pts + (packet.duration or 0)
                last_end = end if last_end is None else max(last_end, end)
    except (av.FFmpegError, ValueError, EOFError) as exc:
        log.debug("no end time from seeking near the end (%s)", exc)
        return None
    if last_end is None:
        return None
    held_s = float((last_end - origin) * stream.time_base)
    return _Held(int(round(held_s * fps)), int(math.ceil(DURATION_SLACK_S * fps)))


def decode_size(display_width: int, display_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """Decode size: the display aspect kept, fitting the box (turned for portrait videos).

    Never larger than the source; sides are multiples of 16 (what scalers handle best).
    """
    if display_height > display_width:
        box_width, box_height = box_height, box_width
    scale = min(box_width / display_width, box_height / display_height, 1.0)
    return (
        max(16, int(round(display_width * scale / 16)) * 16),
        max(16, int(round(display_height * scale / 16)) * 16),
    )


def plan_segments(num_frames: int, segment_frames: int, *, held_frames: int | None = None) -> list[Segment]:
    """Split ``num_frames`` into segments of ``segment_frames`` (the last one takes the rest).

    With ``held_frames`` (a file that holds fewer frames than its container declares), only
    the frames held are split; the last segment still ends at ``num_frames``: it runs to the
    true end whatever that is, and its decoder reports the gap against the declared count.
    """
    if num_frames <= 0:
        return []
    planned = num_frames if held_frames is None else min(num_frames, max(0, held_frames))
    count = max(1, math.ceil(planned / segment_frames))
    return [
        Segment(i, count, i * segment_frames, num_frames if i == count - 1 else (i + 1) * segment_frames)
        for i in range(count)
    ]


def shot_input_indices(start: int, end: int, video_frames: int, step: int) -> np.ndarray:
    """Frame numbers that make the shot network's padded input for frames ``[start, end)``.

    ``context`` frames either side, replicating the first/last frame beyond the video, and
    end padding so the input splits into whole windows of ``step + 2 * context``.
    """
    context = SHOT_CONTEXT_FRAMES
    length = end - start
    padded_length = math.ceil(length / step) * step
    indices = np.arange(start - context, start + padded_length + context)
    return np.clip(indices, 0, video_frames - 1)


def sample_indices(start: int, end: int, stride: int) -> np.ndarray:
    """Global frame numbers in ``[start, end)`` that are multiples of ``stride``."""
    first = -(-start // stride) * stride
    return np.arange(first, end, stride, dtype=np.int64)


def frame_statistics(small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean luma [n], colour layout [n, 36]) of uint8 frames [n, 27, 48, 3], float32 on 0-255.

    The colour layout is the mean RGB of each cell of a :data:`COLOUR_GRID` over the frame.
    Taken from the shot network's 48x27 copy, which every frame has anyway.
    """
    count, height, width, _ = small.shape
    rows, cols = COLOUR_GRID
    pixels = small.astype(np.float32)
    luma = (pixels @ LUMA_WEIGHTS).mean(axis=(1, 2))
    cells = pixels[:, : height // rows * rows, : width // cols * cols].reshape(
        count, rows, height // rows, cols, width // cols, 3
    )
    return luma.astype(np.float32), cells.mean(axis=(2, 4)).reshape(count, -1).astype(np.float32)


def sharpness(frames: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each uint8 frame [n, H, W, 3]'s luma: higher is sharper.

    The usual focus measure: blur (motion, defocus) removes the high frequencies it measures.
    Taken on every other row and column: a third of the time (0.08 s instead of 0.22 s for the
    340 samples of a 2,037-frame clip), and keyframes chosen with it on the hard set are as sharp
    by the full-resolution measure (0.882 of their shot's sharpest, 0.883 chosen at full resolution).
    Only comparable between frames of one size, which a video's sampled frames all have.
    """
    if len(frames) == 0 or frames.shape[1] < 6 or frames.shape[2] < 6:
        return np.zeros(len(frames), np.float32)
    luma = frames[:, ::2, ::2].astype(np.float32) @ LUMA_WEIGHTS
    laplacian = (
        luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] + luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] - 4 * luma[:, 1:-1, 1:-1]
    )
    return laplacian.reshape(len(frames), -1).var(axis=1).astype(np.float32)


def to_shot_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, 27, 48, 3], antialiased (like a video scaler).

    Stays uint8 and channels-last, torch's vectorised path for this resize (6x faster here
    than going through float32).
    """
    x = frames.permute(0, 3, 1, 2)  # a channels-last view, no copy
    x = F.interpolate(x, size=(INPUT_HEIGHT, INPUT_WIDTH), mode="bilinear", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous()


class _DecordFailure(DecodeError):
    """decord could not index or decode the stream; the sequential PyAV decoder may still."""


@dataclass(frozen=True)
class _Span:
    """Packets ``[first, first + frames)`` (decode order, cut at keyframes) of a video's stream,
    copied without re-encoding to a small local file that a decoder opens like a whole video.

    Cut at keyframes, decode order and presentation order hold the same frames, so the span's
    n-th frame in presentation order is the video's frame ``first + n``.
    """

    path: str
    first: int
    frames: int
    #: Frames of the whole video (the stream's index entries).
    video_frames: int
    #: float64 [frames]: presentation time (s) of each frame of the span.
    times: np.ndarray


def _cut_span(uri: str, first: int, stop: int, storage_options: dict[str, Any] | None) -> _Span | None:
    """Copy the packets covering frames ``[first, stop)`` to a temporary file; None where the
    container has no complete frame index (or the span would be the whole video).

    decord reads a file's packets ahead of its decoder without bound and indexes the whole file
    on open, so its memory and open time grow with the file; a segment's span keeps both at
    the segment's size, and reads only the span's bytes from object storage.
    """
    import bisect

    with contextlib.ExitStack() as stack:
        container = _open_container(stack, uri, storage_options)
        stream = container.streams.video[0]
        entries = stream.index_entries
        total = len(entries)
        if total == 0 or total != stream.frames or any(e.is_discard for e in entries):
            return None
        keys = [i for i, e in enumerate(entries) if e.is_keyframe]
        if not keys or keys[0] != 0:
            return None
        start = keys[bisect.bisect_right(keys, max(0, first - REORDER_MARGIN_FRAMES)) - 1]
        after = bisect.bisect_left(keys, stop)
        end = keys[after] if after < len(keys) else total
        if start == 0 and end == total:
            return None
        fd, path = tempfile.mkstemp(prefix="vindex-span-", suffix=".mp4")
        os.close(fd)
        try:
            pts = _copy_packets(container, stream, entries[start], end - start, path)
        except BaseException:
            os.unlink(path)
            raise
        if pts is None:
            os.unlink(path)
            return None
        origin = stream.start_time or 0
        times = (np.sort(np.asarray(pts, np.float64)) - origin) * float(stream.time_base)
        # Rounded as decord reports a whole file's times (float32), so both paths agree exactly.
        times = times.astype(np.float32).astype(np.float64)
    return _Span(path, start, end - start, total, times)


def _try_cut(uri: str, frames: tuple[int, int], storage_options: dict[str, Any] | None) -> _Span | None:
    """``_cut_span`` with transient storage errors retried; None (decode the whole file) where
    the cut itself fails: the whole-file path then reports what is wrong with the video."""
    import av

    try:
        return with_retries(lambda: _cut_span(uri, frames[0], frames[1], storage_options), uri)
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as exc:
        log.debug("%s: no span cut (%s); decoding the whole file", uri, exc)
        return None


def _copy_packets(container: Any, stream: Any, entry: Any, count: int, path: str) -> list[int] | None:
    """Mux ``count`` packets of ``stream`` from index ``entry`` (a keyframe) into ``path``;
    returns their presentation timestamps, or None where the demuxer did not land on ``entry``."""
    import av

    container.seek(entry.timestamp, stream=stream, backward=True)
    pts: list[int] = []
    with av.open(path, mode="w", format="mp4") as out:
        target = out.add_stream_from_template(stream)
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            if not pts and packet.pos != entry.pos:
                if packet.pos is not None and packet.pos > entry.pos:
                    return None
                continue
            pts.append(packet.pts)
            packet.stream = target
            out.mux(packet)
            if len(pts) == count:
                break
    return pts if len(pts) == count else None


class _Reader:
    """decord reader decoding at a fixed size, over a whole video or one span of it.

    decord reads a file object whole into memory, so a remote object is first streamed to a
    local temporary file (deleted on close) and decoded from there. With ``frames=(first,
    stop)``, only the keyframe-aligned span of packets covering those frames is copied out
    (where the container indexes every frame), and global frame numbers are mapped onto it.
    """

    def __init__(
        self,
        uri: str,
        width: int,
        height: int,
        threads: int,
        storage_options: dict[str, Any] | None,
        frames: tuple[int, int] | None = None,
    ):
        import decord

        self.uri = uri
        self._staged: str | None = None
        self._span: _Span | None = None
        self._reader: Any = None
        path = local_path(uri)
        try:
            if frames is not None:
                self._span = _try_cut(uri, frames, storage_options)
            if self._span is not None:
                self._reader = self._open_span(width, height, threads)
            if self._reader is None:
                if path is None:
                    path = self._staged = with_retries(lambda: _stage_locally(uri, storage_options), uri)
                elif not is_utf8(path):
                    path = self._staged = _utf8_alias(path)
                self._reader = decord.VideoReader(path, width=width, height=height, num_threads=threads)
        except FileNotFoundError as exc:
            self.close()
            raise DecodeError(uri, f"object not found: {exc}") from exc
        except PermissionError as exc:
            self.close()
            raise DecodeError(uri, f"access denied: {exc}") from exc
        except (decord.DECORDError, RuntimeError, OSError) as exc:
            self.close()
            raise _DecordFailure(uri, f"decoder could not open the video: {_short(exc)}") from exc

    def _open_span(self, width: int, height: int, threads: int) -> Any:
        """decord on the span's file; None (span dropped, the whole file next) where decord cannot
        open it or counts other frames than were cut."""
        import decord

        assert self._span is not None
        path = self._staged = self._span.path
        try:
            reader = decord.VideoReader(path, width=width, height=height, num_threads=threads)
            problem = "" if len(reader) == self._span.frames else f"{len(reader)} frames, {self._span.frames} cut"
        except (decord.DECORDError, RuntimeError) as exc:
            reader, problem = None, _short(exc)
        if not problem:
            return reader
        log.debug("%s: span not used (%s); decoding the whole file", self.uri, problem)
        reader = None
        self._span = self._staged = None
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None

    def close(self) -> None:
        # Drop the decoder first: it keeps decoding ahead on its own threads while it lives.
        self._reader = None
        if self._staged is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._staged)
            self._staged = None

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._span.video_frames if self._span is not None else len(self._reader)

    def times(self, start: int, end: int) -> np.ndarray:
        """Presentation times (s) of frames ``[start, end)``."""
        import decord

        if self._span is not None:
            return self._span.times[start - self._span.first : end - self._span.first]
        try:
            return np.asarray(self._reader.get_frame_timestamp(list(range(start, end)))[:, 0], np.float64)
        except (decord.DECORDError, RuntimeError, IndexError) as exc:
            raise _DecordFailure(self.uri, f"reading frame times failed: {_short(exc)}") from exc

    def frames(self, indices: np.ndarray) -> torch.Tensor:
        import decord

        local = indices - self._span.first if self._span is not None else indices
        try:
            batch = self._reader.get_batch(local.tolist())
        except (decord.DECORDError, RuntimeError, IndexError) as exc:
            raise _DecordFailure(
                self.uri, f"decoding frames {int(indices[0])}..{int(indices[-1])} failed: {_short(exc)}"
            ) from exc
        return torch.from_numpy(batch.asnumpy())


def _utf8_alias(path: str) -> str:
    """A symbolic link with a UTF-8 name to a local file whose name is not UTF-8 (decord takes
    only UTF-8 paths); the caller deletes it."""
    for _ in range(100):
        alias = os.path.join(tempfile.gettempdir(), f"vindex-alias-{os.urandom(8).hex()}{os.path.splitext(path)[1][:8]}")
        try:
            os.symlink(os.path.abspath(path), alias)
            return alias
        except FileExistsError:
            continue
    raise OSError(f"cannot create a temporary link to {path!r}")


def _stage_locally(uri: str, storage_options: dict[str, Any] | None) -> str:
    """Stream a remote object to a temporary file in chunks; returns its path."""
    suffix = os.path.splitext(uri)[1][:8]
    fd, path = tempfile.mkstemp(prefix="vindex-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, open_input(uri, storage_options) as src:
            shutil.copyfileobj(src, out, STAGE_CHUNK_BYTES)
    except BaseException:
        os.unlink(path)
        raise
    return path


def _short(exc: BaseException) -> str:
    """First line of a third-party error, without decord's time and source-file prefix."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    return re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", text[0])[:300]


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
) -> DecodedSegment:
    """Decode one segment: padded 48x27 frames for shots, sampled frames for embeddings.

    decord (random access through a frame index) is the fast path. Where it fails, e.g. on a
    truncated file or a decoder error midway, PyAV decodes the stream sequentially and the
    segment keeps whatever frames could be decoded, with a warning saying so.

    ``size`` is the (width, height) to decode to, as displayed (default: the configured box);
    ``rotation`` the display rotation, which decord applies itself and PyAV does not.
    """
    size = size or (config.decode.width, config.decode.height)
    # One segment of several: decode only its span (the shot network's context either side).
    frames = None
    if segment.count > 1:
        stop = segment.end_frame + SHOT_CONTEXT_FRAMES if not segment.is_last else 1 << 62
        frames = (max(0, segment.start_frame - SHOT_CONTEXT_FRAMES), stop)
    try:
        with _Reader(uri, size[0], size[1], config.decode.threads, storage_options, frames) as reader:
            return _decode_with(reader, segment, config, size)
    except _DecordFailure as exc:
        return _decode_sequentially(uri, segment, config, storage_options, size, rotation, reason=exc.message)


def _assemble(
    start: int,
    end: int,
    video_frames: int,
    config: Config,
    size: tuple[int, int],
    frame_of: Callable[[np.ndarray], torch.Tensor],
    times: np.ndarray,
    warnings: list[str],
) -> DecodedSegment:
    """Build a segment's outputs from ``frame_of(indices) -> uint8 [n, H, W, 3]`` at decode size."""
    if start >= end:
        empty = np.zeros((0, INPUT_HEIGHT, INPUT_WIDTH, 3), np.uint8)
        no_samples = np.zeros((0, size[1], size[0], 3), np.uint8)
        return DecodedSegment(start, 0, empty, no_samples, np.zeros(0, np.int64), video_frames, times[:0], warnings)
    luma = np.empty(end - start, np.float32)
    colours = np.empty((end - start, COLOUR_FEATURES), np.float32)
    step = config.shots.window_frames - 2 * SHOT_CONTEXT_FRAMES
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
            stats = frame_statistics(small[offset : offset + len(chunk)][torch.from_numpy(own)].numpy())
            luma[chunk[own] - start], colours[chunk[own] - start] = stats
        hits = np.isin(chunk, samples_at)
        if hits.any():
            picked = frames[torch.from_numpy(hits)].numpy()
            samples[filled : filled + len(picked)] = picked
            sharp[filled : filled + len(picked)] = sharpness(picked)
            filled += len(picked)
    shot_frames = small[torch.from_numpy(inverse)].numpy()
    return DecodedSegment(
        start, end - start, shot_frames, samples, samples_at, video_frames, times, warnings, luma, colours, sharp
    )


def _decode_sequentially(
    uri: str,
    segment: Segment,
    config: Config,
    storage_options: dict[str, Any] | None,
    size: tuple[int, int],
    rotation: int,
    reason: str,
) -> DecodedSegment:
    """Decode from the first frame with PyAV, keeping this segment's frames (and context)."""
    import av

    turns = rotation // 90 % 4  # counterclockwise quarter turns to display orientation
    stored_width, stored_height = (size[1], size[0]) if turns % 2 else size
    context = SHOT_CONTEXT_FRAMES
    first = max(0, segment.start_frame - context)
    stop = None if segment.is_last else segment.end_frame + context  # exclusive
    kept: dict[int, np.ndarray] = {}
    times: dict[int, float] = {}
    decoded, failure = 0, None
    with contextlib.ExitStack() as stack:
        try:
            container = _open_container(stack, uri, storage_options)
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
    return _assemble(start, end, video_frames, config, size, frame_of, segment_times, warnings)


def _decode_with(reader: _Reader, segment: Segment, config: Config, size: tuple[int, int]) -> DecodedSegment:
    video_frames = len(reader)
    if video_frames <= 0:
        raise _DecordFailure(reader.uri, "the decoder found no frames")
    end = video_frames if segment.is_last else min(segment.end_frame, video_frames)
    warnings = []
    if segment.is_last and end != segment.end_frame:
        warnings.append(f"container said {segment.end_frame} frames, decoder found {video_frames}")
    times = reader.times(segment.start_frame, end) if end > segment.start_frame else np.zeros(0)
    return _assemble(segment.start_frame, end, video_frames, config, size, reader.frames, times, warnings)
