"""Group commit: while one commit is in flight the videos that finish wait for the next, which
takes them all, so batches grow with the rate videos finish at; memory stays bounded."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pipeline.algorithms.stitch import VideoRows, video_row
from pipeline.execution.records import FinishedVideo
from pipeline.execution.committer import Committer
from pipeline.errors import IndexWriteError


def video(i: int) -> FinishedVideo:
    row = video_row({"video_id": f"v{i}", "uri": f"file:///c/{i}.mp4"}, status="ok", run_id="r", config_digest="d")
    return FinishedVideo.of(VideoRows(row))


class SlowIndex:
    """An index whose commits each wait for the test to let them through."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail_at = fail_at

    def commit_videos(self, tables: dict[str, Any], lease_s: float) -> None:
        self.entered.release()
        assert self.release.acquire(timeout=60), "the test never let the commit through"
        if self.fail_at == len(self.batches):
            raise IndexWriteError("storage went away")
        self.batches.append(tables["videos"].column("video_id").to_pylist())


def test_videos_finishing_during_a_commit_all_go_into_the_next() -> None:
    index = SlowIndex()
    committer = Committer(index, every=2, most=100)  # type: ignore[arg-type]
    with committer.in_background():
        committer.add(video(0))
        committer.add(video(1))  # a batch: the first commit starts
        assert index.entered.acquire(timeout=60)
        for i in range(2, 9):  # finish while it is in flight: never held up
            committer.add(video(i))
        index.release.release()  # the first commit ends; the next takes all seven
        assert index.entered.acquire(timeout=60)
        index.release.release()
    assert index.batches == [["v0", "v1"], [f"v{i}" for i in range(2, 9)]]
    assert committer.committed == 9 and committer.commits == 2 and committer.pending == []


def test_what_is_left_under_a_batch_waits_for_the_final_flush() -> None:
    index = SlowIndex()
    committer = Committer(index, every=4)  # type: ignore[arg-type]
    with committer.in_background():
        committer.add(video(0))
    assert index.batches == [] and len(committer.pending) == 1
    index.release.release()
    committer.flush()
    assert index.batches == [["v0"]]


def test_at_most_most_videos_wait_the_caller_is_held_up_beyond() -> None:
    index = SlowIndex()
    committer = Committer(index, every=1, most=3)  # type: ignore[arg-type]
    added = threading.Event()
    with committer.in_background():
        committer.add(video(0))
        assert index.entered.acquire(timeout=60)  # in flight
        for i in range(1, 4):
            committer.add(video(i))  # three wait: the most allowed

        def one_more() -> None:
            committer.add(video(4))
            added.set()

        caller = threading.Thread(target=one_more)
        caller.start()
        assert not added.wait(0.5)  # held up while three wait and a commit is in flight
        index.release.release()  # the commit ends and the next takes the three: room again
        assert added.wait(60)
        caller.join()
        for _ in range(2):
            assert index.entered.acquire(timeout=60)
            index.release.release()
    assert index.batches == [["v0"], ["v1", "v2", "v3"], ["v4"]]


def test_a_commit_that_fails_in_the_background_is_raised_to_the_caller() -> None:
    index = SlowIndex(fail_at=0)
    committer = Committer(index, every=1)  # type: ignore[arg-type]
    with pytest.raises(IndexWriteError, match="storage went away"):
        with committer.in_background():
            committer.add(video(0))
            assert index.entered.acquire(timeout=60)
            index.release.release()
            while committer._background is not None and committer._background.is_alive():
                committer._background.join(0.05)
            committer.add(video(1))  # the failure surfaces at the next add
    assert index.batches == []


def test_without_the_background_each_batch_is_committed_by_the_caller() -> None:
    index = SlowIndex()
    committer = Committer(index, every=2)  # type: ignore[arg-type]
    index.release.release()
    committer.add(video(0))
    committer.add(video(1))  # committed here, in this thread
    assert index.batches == [["v0", "v1"]]
