"""Where the segments of a long video meet, so that a worker, not the driver, stitches it.

A video of one segment is stitched by the actor that modelled it. A video of several is
modelled by whichever actors Ray Data hands its segments to, on any node. Each of those
actors puts its modelled segment in its node's object store and offers the reference to the
run's :class:`SegmentRendezvous` actor; the actor whose offer completes the video gets every
segment back and stitches it.

A segment that does not complete its video is copied by the rendezvous into an object of its
own (:class:`RaySegmentRendezvous`): an object belongs to the process that put it and is lost
when that process ends, and Ray Data retires a pool's idle actors as soon as every input is
handed out, so the segments of the actors that ran out of work first were lost at the end of
every run, and the stitching actor modelled them again on its own (one long video on two
1-CPU nodes: 102 CPU-s against 72 on one node, and no faster than one node). The
rendezvous lives as long as the run, on the driver's node; each waiting segment crosses to
that node once (a few MB a segment: far below what a node's network carries at the rate
one driver commits videos).

What can go wrong, and what it costs:

* the stitching actor dies: Ray Data runs its segment again on another actor, whose offer
  is recognised as the retry of the completing one and gets the segments again;
* a segment is lost (its actor died before the rendezvous had copied it): the stitching
  actor models it again itself from its frame span (:class:`Part` keeps it), so one video's
  lost segments are redone, not the run;
* a video fails: its segments are dropped and later offers of it are ignored;
* the driver received a video: it closes it, dropping its segments, so the object store
  holds only the videos in flight.

A video is finished exactly once per offer that completes it; the driver ignores a second
finish of a video (a retry racing its first finish), so each video is committed once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from pipeline.execution.records import SegmentRecord

if TYPE_CHECKING:
    from ray.actor import ActorHandle

#: Name prefix of a run's rendezvous actor (``ray list actors`` shows it by run id).
RENDEZVOUS_NAME_PREFIX = "vindex-rendezvous-"


@dataclass(frozen=True)
class Part:
    """One modelled segment waiting for the rest of its video."""

    index: int
    #: Its frames ``[start_frame, end_frame)``: enough to model it again if it is lost.
    start_frame: int
    end_frame: int
    #: Where it is: an object reference (on Ray), or the record itself (in one process).
    held: Any


class SegmentRendezvous:
    """The run's registry of segments waiting for the rest of their video.

    A plain class, run as one actor per run (:func:`segment_rendezvous`); its methods run one
    at a time there. It holds references and frame spans, never segment data.
    """

    def __init__(self) -> None:
        self._parts: dict[str, dict[int, Part]] = {}
        #: Videos handed out to be stitched: the index of the segment whose offer completed it.
        self._completed_by: dict[str, int] = {}
        self._closed: set[str] = set()

    def offer(self, video_id: str, count: int, part: Part) -> list[Part] | None:
        """Add ``part``; every part of the video, in order, if this offer completes it (or is
        the retry of the offer that did: the actor stitching it died), else None."""
        if video_id in self._closed:
            return None
        parts = self._parts.setdefault(video_id, {})
        parts[part.index] = part  # a retried segment replaces its earlier attempt
        completed_by = self._completed_by.get(video_id)
        if completed_by is None and len(parts) >= count:
            self._completed_by[video_id] = part.index
            completed_by = part.index
        if completed_by != part.index:
            self.keep(video_id, part)
            return None
        return [parts[i] for i in sorted(parts)]

    def keep(self, video_id: str, part: Part) -> None:
        """Called for a part offered that did not complete its video: a hook to hold it."""

    def close(self, video_ids: list[str]) -> None:
        """The videos are finished (or failed): drop their parts, ignore their later offers."""
        for video_id in video_ids:
            self._parts.pop(video_id, None)
            self._completed_by.pop(video_id, None)
            self._closed.add(video_id)

    def waiting(self) -> int:
        """Videos with parts held."""
        return len(self._parts)


class RaySegmentRendezvous(SegmentRendezvous):
    """The rendezvous as a Ray actor: it keeps a copy, owned by itself, of each segment waiting
    for the rest of its video, so that the segment outlives the actor that modelled it."""

    def keep(self, video_id: str, part: Part) -> None:
        import ray
        from ray.exceptions import RayError

        try:
            copy = ray.put(ray.get(part.held))
        except RayError:  # its actor died meanwhile: the stitching actor models it again
            return
        self._parts[video_id][part.index] = Part(part.index, part.start_frame, part.end_frame, copy)


class Gathering(Protocol):
    """How an assembler meets the other segments of its videos."""

    def offer(self, record: SegmentRecord) -> list[Part] | None:
        """Offer a modelled segment; the video's parts if this completes it, else None."""

    def load(self, part: Part) -> SegmentRecord | None:
        """A part's modelled record; None if it was lost (with the node that held it)."""

    def close(self, video_id: str) -> None:
        """The video failed: forget its parts."""


class LocalGathering:
    """A :class:`Gathering` within one process: the rendezvous and the records held in memory."""

    def __init__(self) -> None:
        self.rendezvous = SegmentRendezvous()

    def offer(self, record: SegmentRecord) -> list[Part] | None:
        return self.rendezvous.offer(record["video_id"], record["segment_count"], part_of(record, record))

    def load(self, part: Part) -> SegmentRecord | None:
        return cast("SegmentRecord | None", part.held)

    def close(self, video_id: str) -> None:
        self.rendezvous.close([video_id])


class RayGathering:
    """A :class:`Gathering` across Ray's workers, through the run's rendezvous actor."""

    def __init__(self, rendezvous: ActorHandle) -> None:
        self.rendezvous = rendezvous

    def offer(self, record: SegmentRecord) -> list[Part] | None:
        import ray

        # Owned by this actor (Ray 2.56 removed ray.put's other owners) until the rendezvous has
        # copied it: the offer returns once it has.
        held = ray.put(record)
        return cast(
            "list[Part] | None",
            ray.get(self.rendezvous.offer.remote(record["video_id"], record["segment_count"], part_of(record, held))),
        )

    def load(self, part: Part) -> SegmentRecord | None:
        import ray
        from ray.exceptions import ObjectLostError

        try:
            return cast(SegmentRecord, ray.get(part.held))
        except ObjectLostError:  # its node died (owner died, reconstruction failed: subclasses)
            return None

    def close(self, video_id: str) -> None:
        self.rendezvous.close.remote([video_id])


def part_of(record: SegmentRecord, held: Any) -> Part:
    return Part(record["segment_index"], record["start_frame"], record["end_frame"], held)


@contextlib.contextmanager
def segment_rendezvous(run_id: str) -> Iterator[ActorHandle]:
    """The run's :class:`SegmentRendezvous` actor, on the driver's node, ended with the run
    (:func:`~pipeline.execution.ray_runtime.run_actor`)."""
    from pipeline.execution.ray_runtime import run_actor

    with run_actor(RaySegmentRendezvous, RENDEZVOUS_NAME_PREFIX + run_id) as actor:
        yield actor


#: Models a lost segment again from its plan record: the final stage's ``remake``.
Remake = Callable[[SegmentRecord], list[SegmentRecord]]

__all__ = [
    "RENDEZVOUS_NAME_PREFIX",
    "Gathering",
    "LocalGathering",
    "Part",
    "RayGathering",
    "RaySegmentRendezvous",
    "Remake",
    "SegmentRendezvous",
    "part_of",
    "segment_rendezvous",
]
