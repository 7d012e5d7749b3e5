"""The incremental diff: a listing against what the index holds, and what a run must do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.digests import Digests
from pipeline.errors import EmptySourceError
from pipeline.index.schemas import LISTING_COLUMNS
from pipeline.sources.listing import ListingScope, VideoObject

#: What a run reads of each indexed video to decide what to do with it.
KNOWN_COLUMNS = [*LISTING_COLUMNS, "status", "config_digest", "derived_digest"]


@dataclass
class Plan:
    todo: list[VideoObject]
    deleted: list[dict[str, Any]]
    counts: dict[str, int]
    #: Video ids whose outputs are current but whose scenes must be derived again.
    rederive: list[str] = field(default_factory=list)


def diff_against_index(
    listed: list[VideoObject],
    known: list[dict[str, Any]],
    scope: ListingScope,
    digests: Digests,
    full: bool,
    *,
    allow_empty_source: bool = False,
    rederive_scenes: bool = False,
) -> Plan:
    """Decide what to (re)index: new, changed, failed last time or indexed with other settings
    (settings that change only scenes: derive them again, without decoding).

    A video is marked deleted only if this listing's ``scope`` covers its URI and the listing
    did not find it. A listing that found nothing where the index holds videos it covers
    deletes nothing and raises :class:`EmptySourceError`, unless ``allow_empty_source``.
    ``rederive_scenes`` derives the scenes of every current video again, settings changed or not.
    """
    latest = {row["video_id"]: row for row in known}
    counts = dict(listed=len(listed), new=0, changed=0, unchanged=0, deleted=0, ok=0, failed=0, frames=0)
    todo, rederive = [], []
    for video in listed:
        row = latest.get(video.video_id)
        if row is None or row["status"] == "deleted":
            counts["new"] += 1
            todo.append(video)
            continue
        same_object = row["size_bytes"] == video.size_bytes and (
            (video.etag is not None and row["etag"] == video.etag)
            or (video.etag is None and row["mtime"] == video.mtime)
        )
        current = not full and same_object and row["status"] == "ok"
        if current and row["config_digest"] == digests.outputs:
            if row.get("derived_digest") == digests.derived and not rederive_scenes:
                counts["unchanged"] += 1
            else:
                counts["changed"] += 1
                rederive.append(video.video_id)
        else:
            counts["changed"] += 1
            todo.append(video)
    listed_ids = {v.video_id for v in listed}
    deleted = [
        row
        for row in known
        if row["video_id"] not in listed_ids
        and row["status"] != "deleted"
        and scope.owns(row["video_id"])
        and scope.covers(row["uri"])
    ]
    if deleted and not listed and not allow_empty_source:
        raise EmptySourceError(
            f"the listing found no videos, but the index holds {len(deleted)} videos it covers "
            f"(e.g. {deleted[0]['uri']}); nothing was deleted. If the folder is an unmounted mount "
            "point or the filters changed, fix that; if the videos were really removed, run again "
            "with --allow-empty-source to mark them deleted"
        )
    counts["deleted"] = len(deleted)
    return Plan(todo, deleted, counts, rederive)


__all__ = ["KNOWN_COLUMNS", "Plan", "diff_against_index"]
