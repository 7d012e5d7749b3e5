"""Probe a video: container and stream metadata, and how many frames its bytes really hold.

Only the bytes the demuxer asks for are read (a local file, or ranged reads of a remote
object: :func:`pipeline.media.opening.open_container`); transient storage errors retry the
whole probe.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pipeline.errors import ProbeError
from pipeline.media.opening import open_container
from pipeline.media.spans import SpanIndex, span_index
from pipeline.sources.reading import READ_ATTEMPTS, is_transient, with_retries

log = logging.getLogger(__name__)

#: Decoded pixels above which a video is refused rather than risk memory (16K x 16K).
MAX_SOURCE_PIXELS = 16384 * 16384
#: How far (s) a stream may end before a container's declared duration without the file being
#: called cut short. A frame count estimated as duration x fps is off by a frame from rounding,
#: and a container's duration is its longest stream's: audio often runs a few frames past the
#: video. Only a larger gap is a break, and planning's warning names it.
DURATION_SLACK_S = 1.0
#: Bytes a frame takes at the least in a file, framing included. A file with fewer bytes than
#: this per frame its header declares cannot hold them: its packets are counted instead (a
#: 2.7 KB Matroska file of 60 frames and one more at 10^7 s declares 250,000,001). Measured:
#: a still black 64x36 clip takes 21 bytes a frame in Matroska or WebM (x264 or VP9), 329 in
#: MPEG-TS; a Matroska block's own framing is 6.
MIN_BYTES_PER_FRAME = 8


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
    #: True when ``held_frames`` comes from counting the stream's packets: the file's bytes are
    #: too few for the frames its duration declares (a gap in its timestamps, or a forged header).
    held_counted: bool = False
    #: The container's frame index, where spans can be cut from it (every frame indexed): what
    #: planning needs to say which packets each segment decodes (:func:`pipeline.media.spans.span_bounds`).
    span_index: SpanIndex | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as the video is meant to be shown, after rotation."""
        return (self.height, self.width) if self.rotation % 180 == 90 else (self.width, self.height)

    @property
    def shortfall(self) -> str | None:
        """The break, in words for the video's warnings, where the file holds less than it declares."""
        if self.held_frames is None:
            return None
        if self.held_counted:
            return (
                f"fewer frames than declared: the container declares {self.num_frames} frames "
                f"({self.duration_s:.1f} s) but the file holds {self.held_frames} (its packets counted); "
                "indexed the frames held"
            )
        return (
            f"file cut short: the container declares {self.num_frames} frames ({self.duration_s:.1f} s) "
            f"but its data holds about {self.held_frames}; indexed up to the break"
        )


def _fps_of(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return 0.0


def probe(uri: str, storage_options: dict[str, Any] | None = None, *, max_frames: int | None = None) -> ProbeResult:
    """Read container metadata with PyAV, fetching only the bytes the demuxer asks for.

    A video that holds more than ``max_frames`` frames (``decode.max_frames``) is a
    ProbeError that says so, before anything is planned for it. Transient storage errors are
    retried with backoff; what still fails is a ProbeError.
    """
    try:
        return with_retries(lambda: _probe(uri, storage_options, max_frames), uri)
    except ProbeError:
        raise
    except OSError as exc:
        tries = f" after {READ_ATTEMPTS} attempts" if is_transient(exc) else ""
        raise ProbeError(uri, f"reading the object failed{tries}: {exc}") from exc


def _probe(uri: str, storage_options: dict[str, Any] | None, max_frames: int | None) -> ProbeResult:
    import av

    try:
        with open_container(uri, storage_options) as container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise ProbeError(uri, f"no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            # Read before anything is demuxed: a demuxer adds what it reads to some indexes, and a
            # segment's cut reads the index of a container just opened.
            index = span_index(stream)
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
            size = int(container.size or 0)
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
    planned = frames if held_frames is None else held_frames
    counted = False
    beyond_cap = False
    if estimated and 0 < size < planned * MIN_BYTES_PER_FRAME:
        # The duration claims more frames than the bytes can hold: count what is there. Reads
        # the file once, packets only, and stops past the cap, so a forged header costs little.
        limit = planned if max_frames is None else min(planned, max_frames + 1)
        packets = _count_packets(uri, storage_options, limit)
        beyond_cap = max_frames is not None and packets > max_frames
        if packets < planned - math.ceil(DURATION_SLACK_S * fps):
            held_frames, planned, counted = packets, packets, True
    if max_frames is not None and planned > max_frames:
        if beyond_cap:
            holding = f"more than {max_frames} frames"
        else:
            about = "about " if estimated and not counted else ""
            seconds = planned / fps
            length = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.1f} s"
            holding = f"{about}{planned} frames ({length} at {fps:g} fps)"
        raise ProbeError(
            uri, f"the video holds {holding}; decode.max_frames allows {max_frames}: raise it to index this video"
        )
    return ProbeResult(frames, fps, duration_s, width, height, codec, estimated, rotation, held_frames, counted, index)


def _count_packets(uri: str, storage_options: dict[str, Any] | None, limit: int) -> int:
    """Packets of the video stream (one a frame) up to the end of the file, or up to where it
    breaks, or up to ``limit``; no decoding."""
    import av

    count = 0
    with open_container(uri, storage_options) as container:
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                if packet.size > 0:
                    count += 1
                    if count >= limit:
                        break
        except (av.FFmpegError, ValueError, EOFError) as exc:
            log.debug("counting packets stopped at %d (%s)", count, exc)
    return count


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
