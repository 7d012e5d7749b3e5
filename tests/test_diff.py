"""Deciding what a run must (re)index, without Ray."""

from __future__ import annotations

import datetime as dt

from pipeline.runner import diff_against_index
from pipeline.sources import VideoObject

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
T1 = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)


def known(video: VideoObject, status: str = "ok", digest: str = "d", **changes: object) -> dict[str, object]:
    row = {"video_id": video.video_id, "uri": video.uri, "size_bytes": video.size_bytes, "etag": video.etag,
           "mtime": video.mtime, "status": status, "config_digest": digest}
    row.update(changes)
    return row


def test_classifies_new_changed_unchanged_failed_and_deleted() -> None:
    same = VideoObject("s3://b/v/same.mp4", 10, "e1", None)
    resized = VideoObject("s3://b/v/resized.mp4", 11, "e2", None)
    retagged = VideoObject("s3://b/v/retagged.mp4", 10, "new", None)
    touched = VideoObject("file:///v/touched.mp4", 10, None, T1)
    failed = VideoObject("s3://b/v/failed.mp4", 10, "e3", None)
    fresh = VideoObject("s3://b/v/fresh.mp4", 10, "e4", None)
    gone = VideoObject("s3://b/v/gone.mp4", 10, "e5", None)
    elsewhere = VideoObject("s3://b/other/x.mp4", 10, "e6", None)
    rows = [
        known(same), known(resized, size_bytes=10), known(retagged, etag="old"), known(touched, mtime=T0),
        known(failed, status="failed"), known(gone), known(elsewhere),
    ]
    plan = diff_against_index([same, resized, retagged, touched, failed, fresh], rows, "s3://b/v", "d", full=False)
    assert [v.uri for v in plan.todo] == [resized.uri, retagged.uri, touched.uri, failed.uri, fresh.uri]
    assert {k: plan.counts[k] for k in ("listed", "new", "changed", "unchanged", "deleted")} == {
        "listed": 6, "new": 1, "changed": 4, "unchanged": 1, "deleted": 1
    }
    # Only videos under the source's prefix can vanish from it.
    assert [r["uri"] for r in plan.deleted] == [gone.uri]


def test_new_settings_or_full_reindex_everything() -> None:
    video = VideoObject("s3://b/v/a.mp4", 10, "e", None)
    assert len(diff_against_index([video], [known(video, digest="old")], "s3://b/v", "new", full=False).todo) == 1
    assert len(diff_against_index([video], [known(video)], "s3://b/v", "d", full=True).todo) == 1
    assert diff_against_index([video], [known(video)], "s3://b/v", "d", full=False).todo == []


def test_a_deleted_video_that_returns_is_new_again() -> None:
    video = VideoObject("s3://b/v/a.mp4", 10, "e", None)
    plan = diff_against_index([video], [known(video, status="deleted")], "s3://b/v", "d", full=False)
    assert plan.counts["new"] == 1 and plan.todo == [video]
