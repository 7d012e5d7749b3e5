"""`vindex status`: latest runs, videos by status, failed videos with their stage and reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from pipeline.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from pipeline.index.schemas import to_table
from pipeline.index.store import Index
from pipeline.index.status import Failure, format_status, index_status
from testkit import synthetic

T0 = dt.datetime(2026, 1, 2, 3, 0, 0, tzinfo=dt.timezone.utc)
COUNTS = {"listed": 2, "new": 2, "changed": 0, "unchanged": 0, "deleted": 0, "ok": 1, "failed": 1, "frames": 80}


def _run(run_id: str, minutes: int, status: str = "ok") -> dict[str, object]:
    return {"run_id": run_id, "started_at": T0 + dt.timedelta(minutes=minutes),
            "finished_at": T0 + dt.timedelta(minutes=minutes, seconds=30), "source": "/data/videos",
            "counts": COUNTS, "config": "{}", "versions": "{}", "status": status}


def _video(video_id: str, uri: str, status: str, stage: str | None = None, message: str | None = None) -> dict[str, object]:
    return {"video_id": video_id, "uri": uri, "status": status, "error_stage": stage, "error_message": message,
            "run_id": "r2", "indexed_at": T0}


def test_status_of_a_hand_built_index(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    for run in (_run("r1", 0), _run("r3", 20, "partial"), _run("r2", 10)):
        index.append_run(run)
    index.commit_videos({"videos": to_table("videos", [
        _video("a", "file:///v/a.mp4", "ok"),
        _video("b", "file:///v/z.mp4", "failed", "decode", "no frame could be decoded"),
        _video("c", "file:///v/c.mp4", "failed", "probe", "empty object (0 bytes)"),
        _video("d", "file:///v/d.mp4", "deleted"),
        _video("e", "file:///v/e.mp4", "ok"),
    ])})
    status = index_status(index, runs=2)
    assert [r["run_id"] for r in status.runs] == ["r3", "r2"] and status.total_runs == 3
    assert status.videos_by_status == {"ok": 2, "failed": 2, "deleted": 1}
    assert status.rows == {"shots": 0, "scenes": 0, "keyframes": 0}
    assert status.failures == [
        Failure("c", "file:///v/c.mp4", "probe", "empty object (0 bytes)", "r2"),
        Failure("b", "file:///v/z.mp4", "decode", "no frame could be decoded", "r2"),
    ]
    text = format_status(status)
    assert "videos: 2 ok, 2 failed, 1 deleted (5 in all)" in text
    assert "last 2 of 3 runs, newest first:" in text
    lines = text.splitlines()
    runs_header = lines.index("last 2 of 3 runs, newest first:")
    assert lines[runs_header + 3].split()[:4] == ["r3", "2026-01-02", "03:20:00", "2026-01-02"]
    assert lines[runs_header + 4].split()[0] == "r2"
    failed_header = lines.index("failed videos (2):")
    assert lines[failed_header + 3].split(None, 2) == ["file:///v/c.mp4", "probe", "empty object (0 bytes)"]
    assert lines[failed_header + 4].split(None, 2) == ["file:///v/z.mp4", "decode", "no frame could be decoded"]


def test_status_of_an_empty_index(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    text = format_status(index_status(index))
    assert "videos: 0 ok, 0 failed, 0 deleted (0 in all)" in text
    assert "no runs yet" in text and "no failed videos" in text


def test_status_of_a_folder_that_is_not_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path)]) == EXIT_USAGE
    assert "is it a vindex index" in capsys.readouterr().err


@pytest.fixture(scope="module")
def index_with_failures(ray_local, tmp_path_factory: pytest.TempPathFactory) -> str:  # type: ignore[no-untyped-def]
    """One good clip and three bad inputs, indexed with `vindex run` through Ray."""
    folder = tmp_path_factory.mktemp("status-src")
    synthetic.write_clip(folder / "good.mp4", synthetic.simple_spec([40, 40], "cut", contents=[1, 2], width=160, height=96))
    synthetic.write_zero_byte(folder / "empty.mp4")
    synthetic.write_random_bytes(folder / "noise.mp4", 20000, seed=3)
    synthetic.write_audio_only(folder / "audio.mp4")
    index_path = str(tmp_path_factory.mktemp("status") / "idx")
    assert main(["run", str(folder), "--index", index_path, "--quiet"]) == EXIT_SOME_FAILED
    return index_path


def test_cli_status_lists_failed_videos_with_their_reasons(
    index_with_failures: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["status", index_with_failures]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"index {index_with_failures}"
    assert lines[1] == "videos: 1 ok, 3 failed, 0 deleted (4 in all)"
    rows = dict(part.split() for part in lines[2].removeprefix("rows: ").split(", "))
    assert (rows["shots"], rows["keyframes"]) == ("2", "2") and rows["scenes"] in ("1", "2")
    assert "runs, newest first:" in lines
    run_row = lines[lines.index("runs, newest first:") + 3].split()
    # run_id, started (2 words), finished (2 words), status, then the counts in COUNT_KEYS order
    assert run_row[5:14] == ["partial", "4", "4", "0", "0", "0", "1", "3", "80"]
    failed = lines[lines.index("failed videos (3):") + 3 : lines.index("failed videos (3):") + 6]
    by_name = {Path(row.split(None, 2)[0]).name: row.split(None, 2)[1:] for row in failed}
    assert by_name["empty.mp4"] == ["probe", "empty object (0 bytes)"]
    assert by_name["noise.mp4"][0] == "probe" and by_name["noise.mp4"][1].startswith("not a readable video container")
    assert by_name["audio.mp4"][0] == "probe" and by_name["audio.mp4"][1].startswith("no video stream (streams: audio)")
    assert [Path(row.split(None, 1)[0]).name for row in failed] == ["audio.mp4", "empty.mp4", "noise.mp4"]
