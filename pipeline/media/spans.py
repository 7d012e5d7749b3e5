"""Cut a span of a video: the keyframe-aligned packets covering some frames, copied without
re-encoding to a small local file that a decoder opens like a whole video.

decord reads a file's packets ahead of its decoder without bound and indexes the whole file
on open, so its memory and open time grow with the file; a segment's span keeps both at
the segment's size, and reads only the span's bytes from object storage.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Frames a decoder may reorder (B-frame depth): a cut starts at a keyframe at least this many
#: frames before the first frame it must deliver, so no leading frame of an open GOP is lost.
REORDER_MARGIN_FRAMES = 16


@dataclass(frozen=True)
class Span:
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


@dataclass(frozen=True)
class SpanIndex:
    """What a container's frame index tells about cutting spans: it indexes every frame of the
    video stream (``frames``), and these are its keyframes, the first at frame 0. Read once, by
    probing (:func:`span_index`); planning turns it into each segment's :class:`PlannedSpan`."""

    frames: int
    keyframes: tuple[int, ...]


@dataclass(frozen=True)
class PlannedSpan:
    """One segment's packets to cut, ``[first, first + frames)``, as planning found them; ``frames``
    0 (:data:`NO_SPAN`): the container cannot be cut for this segment, the whole file is read."""

    first: int
    frames: int


#: A segment planned to be decoded from the whole file.
NO_SPAN = PlannedSpan(0, 0)


def span_index(stream: Any) -> SpanIndex | None:
    """``stream``'s (a PyAV video stream's) frame index, where spans can be cut from it; None where
    it does not index every frame (Matroska, WebM and MPEG-TS index keyframes only, or nothing)."""
    entries = stream.index_entries
    total = len(entries)
    if total == 0 or total != stream.frames or any(e.is_discard for e in entries):
        return None
    keys = tuple(i for i, e in enumerate(entries) if e.is_keyframe)
    if not keys or keys[0] != 0:
        return None
    return SpanIndex(total, keys)


def span_bounds(index: SpanIndex, first: int, stop: int | None) -> PlannedSpan | None:
    """The keyframe-aligned packets covering frames ``[first, stop)`` (``stop`` None: to the end),
    with :data:`REORDER_MARGIN_FRAMES` before ``first``; None where that is the whole video."""
    keys = index.keyframes
    start = keys[bisect.bisect_right(keys, max(0, first - REORDER_MARGIN_FRAMES)) - 1]
    after = len(keys) if stop is None else bisect.bisect_left(keys, stop)
    end = keys[after] if after < len(keys) else index.frames
    if start == 0 and end == index.frames:
        return None
    return PlannedSpan(start, end - start)


def cut_span(container: Any, first: int, stop: int | None, planned: PlannedSpan | None = None) -> Span | None:
    """Copy the packets of ``container``'s video stream covering frames ``[first, stop)`` (``stop``
    None: to the end) to a temporary file, which the caller deletes; None where the container has
    no complete frame index (or the span would be the whole video).

    ``planned``: the packets planning found for these frames (:func:`span_bounds` on the index
    probing read), so the index is not read through again; checked against the container (None
    where its ends are not keyframes of it). ``container`` is an open PyAV input container; its
    bytes are read as the copy needs them.
    """
    stream = container.streams.video[0]
    entries = stream.index_entries
    total = len(entries)
    if planned is None:
        index = span_index(stream)
        planned = span_bounds(index, first, stop) if index is not None else None
        if planned is None:
            return None
    start, end = planned.first, planned.first + planned.frames
    if not 0 <= start < end <= total or not entries[start].is_keyframe or (end < total and not entries[end].is_keyframe):
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
    return Span(path, start, end - start, total, times)


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
