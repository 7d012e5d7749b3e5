"""A run's plan read back in batches, without Ray: the listing and diff past their memory
bounds, the videos to index handed to Ray Data a batch at a time, the deleted ones committed
a batch at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.execution.runner import run_index
from pipeline.index.store import Index


def test_a_run_reads_its_plan_back_in_batches_whatever_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray: the listing spilled to disk (a memory bound of one row), the diff joined a
    few ids at a time, the videos to index handed to Ray Data two at a time and the deleted
    ones committed two at a time, each video exactly once."""
    import pipeline.execution.runner as runner
    import pipeline.index.diff as diff_module
    import pipeline.sources.spill as spill_module
    from pipeline.config import config_from_dict
    from pipeline.execution.committer import Committer
    from pipeline.index.schemas import to_table
    from pipeline.sources.listing import video_id_for

    folder, index_path = tmp_path / "src", str(tmp_path / "idx")
    folder.mkdir()
    for i in range(5):
        (folder / f"v{i}.mp4").write_bytes(b"x")
    gone = [f"file://{folder}/gone{i}.mp4" for i in range(3)]
    index = Index(index_path)
    index.ensure()
    index.writer("videos").append(to_table("videos", [
        {"video_id": video_id_for(uri), "uri": uri, "size_bytes": 1, "status": "ok", "run_id": "r0"} for uri in gone
    ]))  # fmt: skip

    handed: list[list[str]] = []
    monkeypatch.setattr(runner, "_process", lambda rows, *rest: handed.append([Path(r["uri"]).name for r in rows]))
    monkeypatch.setattr(runner, "TODO_BATCH_VIDEOS", 2)
    monkeypatch.setattr(spill_module, "MEMORY_ROWS", 1)
    monkeypatch.setattr(diff_module, "PARTITION_ROWS", 2)
    flushed: list[int] = []
    real_flush = Committer.flush

    def counting_flush(self: Committer) -> None:
        flushed.append(len(self.pending))
        real_flush(self)

    monkeypatch.setattr(Committer, "flush", counting_flush)
    summary = run_index(str(folder), index_path, config_from_dict({"write": {"commit_every_videos": 2}}), show_progress=False)

    assert (summary.counts["listed"], summary.counts["new"], summary.counts["deleted"]) == (5, 5, 3)
    assert [len(batch) for batch in handed] == [2, 2, 1]
    assert sorted(name for batch in handed for name in batch) == [f"v{i}.mp4" for i in range(5)]
    assert flushed[:2] == [2, 1]  # the deleted videos, two at a time
    statuses = {Path(v["uri"]).name: v["status"] for v in index.read("videos").to_pylist()}
    assert statuses == {"gone0.mp4": "deleted", "gone1.mp4": "deleted", "gone2.mp4": "deleted"}
