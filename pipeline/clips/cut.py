"""Cutting clips out of one video with PyAV: frame-exact re-encoding, or stream copy.

Both modes read the source once for all of a video's clips and hand each clip back as soon
as it is complete, so memory holds the decoder and the clips being written, never a
video's frames.

* **Re-encode** (:func:`cut_reencoded`): frames are decoded in order and counted, so frame
  ``n`` is the ``n``-th frame shown, as the index counts frames; a clip receives exactly
  frames ``start_frame..end_frame`` and is encoded to H.264 in MP4.
* **Copy** (:func:`cut_copied`): compressed packets are copied without decoding. A clip
  can only begin at a keyframe, so it runs from the keyframe at or before ``start_frame``
  to the frame before the first keyframe after ``end_frame`` (whole groups of pictures);
  the boundaries it really got are returned and recorded.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from pipeline.errors import ConfigError

#: Opens the source video as a PyAV container, as a context manager (``media.opening.open_container``
#: bound to a video: the one place that decides where a video's bytes come from).
OpenContainer = Callable[[], contextlib.AbstractContextManager[Any]]

MODES = ("reencode", "copy")
#: Encoder of re-encoded clips and its name in the clips table.
ENCODER = "libx264"
CODEC = "h264"
#: x264's constant rate factor: 18 keeps clips close to their source (measured on the 114 shot
#: clips of the real-footage scenes set, benchmarks/clips.py --check: first and last frames at
#: 35.6 dB PSNR or more against the source's; 32.5 dB at crf 23 with "ultrafast").
DEFAULT_CRF = 18
#: x264 preset. Measured on one thread, a 1,264-frame 320x180 real-footage video at crf 18:
#: "veryfast" 870 frames/s and 1.98 MB, "medium" 350 frames/s and 1.81 MB (2.5x the time for
#: files 9% smaller), "ultrafast" 2,570 frames/s but 4.86 MB (files 2.5x larger).
DEFAULT_PRESET = "veryfast"
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
#: Encoder threads per clip. Clips are cut one video per Ray task, one CPU each, so a task
#: encodes on one thread and parallelism comes from running a task per CPU.
ENCODER_THREADS = 1
#: Frame-rate fractions are kept to this denominator (NTSC rates are n*1000/1001).
MAX_RATE_DENOMINATOR = 1001 * 1000


@dataclass(frozen=True)
class EncodeSettings:
    """How clip files are made; everything here changes the file, so it is in the clip id."""

    mode: str = "reencode"
    crf: int = DEFAULT_CRF
    preset: str = DEFAULT_PRESET

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"clip mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"--crf must be between 0 and 51 (x264), got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"--preset {self.preset!r}: use one of {', '.join(X264_PRESETS)}")

    @property
    def key(self) -> str:
        """The settings as they enter the clip id (copy mode has none that matter)."""
        return "copy" if self.mode == "copy" else f"{ENCODER}:crf={self.crf}:preset={self.preset}"


@dataclass(frozen=True)
class CutRequest:
    """One clip to write to the local file ``path``: frames ``start_frame..end_frame`` inclusive."""

    clip_id: str
    start_frame: int
    end_frame: int
    path: str


@dataclass(frozen=True)
class CutResult:
    """A clip written (``error`` None) or not (``error`` says why). The frames are those the
    file holds, which in copy mode are whole groups of pictures around the request."""

    clip_id: str
    start_frame: int
    end_frame: int
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    error: str | None = None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _rate(stream: Any, fps: float) -> Fraction:
    """The source stream's frame rate (its average, else the index's fps)."""
    rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate else Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR)


class _ClipEncoder:
    """One re-encoded clip being written: frames in, an MP4 file out."""

    def __init__(self, request: CutRequest, settings: EncodeSettings, rate: Fraction, width: int, height: int) -> None:
        import av

        self.request = request
        self.frames = 0
        self.container = av.open(request.path, mode="w", format="mp4")
        try:
            stream = self.container.add_stream(ENCODER, rate=rate)
            if not isinstance(stream, av.VideoStream):
                raise TypeError(f"{ENCODER} is not a video encoder")
            self.stream = stream
            # 4:2:0 chroma needs an even width and height: an odd one is scaled down by a pixel.
            self.stream.width, self.stream.height = max(2, width - width % 2), max(2, height - height % 2)
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.time_base = 1 / rate
            self.stream.codec_context.thread_count = ENCODER_THREADS
            self.stream.options = {"crf": str(settings.crf), "preset": settings.preset}
        except BaseException:
            self.container.close()
            raise

    def add(self, frame: Any) -> None:
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != (self.stream.width, self.stream.height):
            frame = frame.reformat(width=self.stream.width, height=self.stream.height, format="yuv420p")
        frame.pts = self.frames
        frame.time_base = self.stream.codec_context.time_base
        frame.pict_type = 0  # let x264 choose frame types: the source's I/P/B types mean nothing here
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def finish(self) -> CutResult:
        self.container.mux(self.stream.encode(None))
        self.container.close()
        r = self.request
        return CutResult(r.clip_id, r.start_frame, r.end_frame, self.stream.width, self.stream.height, CODEC)

    def abandon(self) -> None:
        try:
            self.container.close()
        except Exception:  # the clip is already failed; closing a broken file may fail too
            pass
        if os.path.exists(self.request.path):
            os.unlink(self.request.path)


def cut_reencoded(
    open_source: OpenContainer, requests: list[CutRequest], settings: EncodeSettings, fps: float
) -> Iterator[CutResult]:
    """Frame-exact clips of the source ``open_source()`` opens (a PyAV container, as a
    context manager), each re-encoded, yielded as each is complete. A clip that fails yields its
    error; the others go on. ``fps`` is used where the stream states no frame rate."""
    pending = sorted(requests, key=lambda r: (r.start_frame, r.end_frame))
    active: list[_ClipEncoder] = []
    next_frame = 0
    try:
        with open_source() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = _rate(stream, fps)
            for next_frame, frame in enumerate(container.decode(stream)):
                while pending and pending[0].start_frame <= next_frame:
                    request = pending.pop(0)
                    if request.start_frame < next_frame:  # unreachable for valid requests
                        yield CutResult(request.clip_id, request.start_frame, request.end_frame, error="clip begins before the video")
                        continue
                    try:
                        active.append(_ClipEncoder(request, settings, rate, frame.width, frame.height))
                    except Exception as exc:
                        yield CutResult(request.clip_id, request.start_frame, request.end_frame, error=_short(exc))
                for encoder in list(active):
                    try:
                        encoder.add(frame)
                        if encoder.request.end_frame == next_frame:
                            active.remove(encoder)
                            yield encoder.finish()
                    except Exception as exc:
                        active.remove(encoder)
                        encoder.abandon()
                        r = encoder.request
                        yield CutResult(r.clip_id, r.start_frame, r.end_frame, error=f"encoding failed: {_short(exc)}")
                if not pending and not active:
                    return
            reason = f"the video ends at frame {next_frame}"
    except Exception as exc:  # a source that cannot be opened or decoded: the clips not done fail
        reason = f"cannot read the source: {_short(exc)}"
    for encoder in active:
        encoder.abandon()
    for r in [e.request for e in active] + pending:
        yield CutResult(r.clip_id, r.start_frame, r.end_frame, error=reason)


@dataclass(frozen=True)
class _PacketMap:
    """A video stream's packets in presentation order: each packet's frame number, and the
    frame numbers of the keyframes."""

    frame_of_pts: dict[int, int]
    keyframes: list[int]
    last_frame: int


def _packet_map(open_source: OpenContainer) -> _PacketMap:
    """Demux (without decoding) the whole video stream: frame numbers from sorted pts."""
    with open_source() as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size and p.pts is not None]
    order = sorted(pts for pts, _ in packets)
    frame_of_pts = {pts: n for n, pts in enumerate(order)}
    keyframes = sorted(frame_of_pts[pts] for pts, key in packets if key)
    return _PacketMap(frame_of_pts, keyframes, len(order) - 1)


def copy_bounds(keyframes: list[int], last_frame: int, start_frame: int, end_frame: int) -> tuple[int, int]:
    """The frames a stream copy of ``start_frame..end_frame`` holds: from the keyframe at or
    before the start to the frame before the first keyframe after the end."""
    first = keyframes[max(0, bisect.bisect_right(keyframes, start_frame) - 1)] if keyframes else 0
    after = bisect.bisect_right(keyframes, end_frame)
    last = keyframes[after] - 1 if after < len(keyframes) else last_frame
    return first, last


@dataclass(frozen=True)
class _CopyPlan:
    """A requested clip and the frames its stream copy will hold."""

    request: CutRequest
    first: int
    last: int


class _ClipCopy:
    """One stream-copied clip being written: packets in, an MP4 file out."""

    def __init__(self, plan: _CopyPlan, template: Any) -> None:
        import av

        self.plan = plan
        self.container = av.open(plan.request.path, mode="w", format="mp4")
        self.stream = self.container.add_stream_from_template(template)
        self.codec = str(template.codec_context.name)  # the source decoder's name (h264, hevc, ...)
        self.offset: int | None = None
        self.first_written: int | None = None
        self.last_written: int | None = None

    def add(self, packet: Any, frame: int) -> None:
        import av

        if self.offset is None:  # the group's keyframe: its pts becomes 0, as in a source's first group
            self.offset = packet.pts
        copy = av.Packet(bytes(packet))
        copy.pts = packet.pts - self.offset
        copy.dts = packet.dts - self.offset if packet.dts is not None else None
        copy.is_keyframe = packet.is_keyframe
        copy.time_base = packet.time_base
        copy.stream = self.stream
        self.container.mux(copy)
        self.first_written = frame if self.first_written is None else min(self.first_written, frame)
        self.last_written = frame if self.last_written is None else max(self.last_written, frame)

    def finish(self) -> CutResult:
        self.container.close()
        r = self.plan.request
        if self.first_written is None or self.last_written is None:
            return CutResult(r.clip_id, r.start_frame, r.end_frame, error="no packet of the clip was found")
        context = self.stream.codec_context
        return CutResult(r.clip_id, self.first_written, self.last_written, context.width, context.height, self.codec)

    def finish_or_fail(self) -> CutResult:
        """:meth:`finish`, or the clip's failure when its file cannot be completed."""
        try:
            return self.finish()
        except Exception as exc:
            self.abandon()
            return _failed(self.plan.request, f"stream copy failed: {_short(exc)}")

    def abandon(self) -> None:
        try:
            self.container.close()
        except Exception:  # the clip is already failed; closing a broken file may fail too
            pass
        if os.path.exists(self.plan.request.path):
            os.unlink(self.plan.request.path)


def _failed(request: CutRequest, reason: str) -> CutResult:
    return CutResult(request.clip_id, request.start_frame, request.end_frame, error=reason)


def cut_copied(open_source: OpenContainer, requests: list[CutRequest]) -> Iterator[CutResult]:
    """Stream-copied clips (no re-encoding; whole groups of pictures, see :func:`copy_bounds`),
    yielded as each is complete. ``open_source()`` opens the source (a PyAV container, as a
    context manager): it is read twice, once to number the packets and once to copy them."""
    try:
        packet_map = _packet_map(open_source)
    except Exception as exc:
        for r in requests:
            yield _failed(r, f"cannot read the source: {_short(exc)}")
        return
    plans: list[_CopyPlan] = []
    for r in sorted(requests, key=lambda r: (r.start_frame, r.end_frame)):
        if r.start_frame > packet_map.last_frame:
            yield _failed(r, f"the video ends at frame {packet_map.last_frame}")
        else:
            plans.append(_CopyPlan(r, *copy_bounds(packet_map.keyframes, packet_map.last_frame, r.start_frame, r.end_frame)))
    active: list[_ClipCopy] = []
    try:
        with open_source() as container:
            stream = container.streams.video[0]
            group_start = 0
            for packet in container.demux(stream):
                if not packet.size or packet.pts is None:
                    continue
                frame = packet_map.frame_of_pts[packet.pts]
                if packet.is_keyframe:
                    group_start = frame
                    for clip in [c for c in active if group_start > c.plan.last]:
                        active.remove(clip)
                        yield clip.finish_or_fail()
                while plans and plans[0].first <= group_start:
                    plan = plans.pop(0)
                    try:
                        active.append(_ClipCopy(plan, stream))
                    except Exception as exc:
                        yield _failed(plan.request, _short(exc))
                for clip in active:
                    clip.add(packet, frame)
                if not plans and not active:
                    return
        while active:
            yield active.pop(0).finish_or_fail()
        reason = f"the video ends at frame {packet_map.last_frame}"
    except Exception as exc:  # the source or a clip file failed midway: the clips not done fail
        reason = f"stream copy failed: {_short(exc)}"
    for clip in active:
        clip.abandon()
    for r in [c.plan.request for c in active] + [p.request for p in plans]:
        yield _failed(r, reason)


__all__ = [
    "CODEC",
    "DEFAULT_CRF",
    "DEFAULT_PRESET",
    "MODES",
    "CutRequest",
    "CutResult",
    "EncodeSettings",
    "copy_bounds",
    "cut_copied",
    "cut_reencoded",
]
