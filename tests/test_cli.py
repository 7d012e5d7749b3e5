"""Command-line errors fail fast, before any Ray or model work, with the fix in the message."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.index import writer as index_writer
from pipeline.cli import EXIT_INFRASTRUCTURE, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, build_parser, job_outcome, main
from pipeline.index.schemas import to_table
from pipeline.index.store import Index
from pipeline.execution.submit import JobRow
from testkit import synthetic


def test_missing_source_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "nowhere"), "--index", str(tmp_path / "idx")]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err


def test_misspelt_setting_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(tmp_path), "--index", str(tmp_path / "idx"), "--set", "shots.treshold=0.3"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "'shots.treshold'" in err and "threshold" in err


def test_override_must_name_a_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path), "--set", "threshold=0.3"]) == EXIT_USAGE
    assert "SECTION.KEY=VALUE" in capsys.readouterr().err


def test_query_on_a_folder_that_is_not_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", str(tmp_path), "select 1"]) == EXIT_USAGE
    assert "is it a vindex index" in capsys.readouterr().err


def test_defaults() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.source, args.index, args.full) == (None, "./vindex-index", False)


def test_every_exit_code_is_distinct() -> None:
    assert len({EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INFRASTRUCTURE}) == 4
    assert EXIT_INFRASTRUCTURE == 3


def _disk_full() -> None:
    """In the child: files may not grow past 4 KB, as on a full disk (EFBIG instead of ENOSPC)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_full_disk_under_the_index_is_an_infrastructure_failure(tmp_path: Path) -> None:
    Index(str(tmp_path / "idx")).ensure()  # an existing index, then the disk fills up
    (tmp_path / "src").mkdir()
    synthetic.write_random_bytes(tmp_path / "src" / "a.mp4", 100)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", str(tmp_path / "src"), "--index", str(tmp_path / "idx"), "--quiet"],
        preexec_fn=_disk_full, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == EXIT_INFRASTRUCTURE, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vindex: infrastructure error: cannot write to table 'runs'") and "File too large" in last
    assert "Traceback" not in result.stderr


def test_commits_that_keep_conflicting_are_an_infrastructure_failure(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import deltalake
    from deltalake.exceptions import CommitFailedError

    Index(str(tmp_path / "idx")).ensure()

    def conflicting(*args: object, **kwargs: object) -> None:
        raise CommitFailedError("a concurrent transaction wrote first")

    monkeypatch.setattr(index_writer, "COMMIT_BACKOFF_S", 0.0)
    monkeypatch.setattr(deltalake, "write_deltalake", conflicting)
    (tmp_path / "src").mkdir()
    synthetic.write_random_bytes(tmp_path / "src" / "a.mp4", 100)
    code = main(["run", str(tmp_path / "src"), "--index", str(tmp_path / "idx"), "--quiet"])
    err = capsys.readouterr().err
    assert code == EXIT_INFRASTRUCTURE
    assert f"after {index_writer.COMMIT_ATTEMPTS} attempts: other runs keep writing" in err


def test_submit_wait_passes_the_runs_exit_code_through() -> None:
    for code in (EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INFRASTRUCTURE):
        row = JobRow("j", "FAILED", "", "python -m jobs.index_corpus", "driver exited", code)
        assert job_outcome(row) == code
    assert job_outcome(JobRow("j", "FAILED", "", "x", "killed", None)) == EXIT_SOME_FAILED
    assert job_outcome(JobRow("j", "SUCCEEDED", "", "x", "", 0)) == EXIT_OK


def test_an_empty_listing_where_the_index_holds_videos_stops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = Index(str(tmp_path / "idx"))
    index.ensure()
    video = {"video_id": "v", "uri": f"file://{tmp_path}/mnt/a.mp4", "status": "ok", "run_id": "r0"}
    index.commit_videos({"videos": to_table("videos", [video])})
    (tmp_path / "mnt").mkdir()
    assert main(["run", str(tmp_path / "mnt"), "--index", str(tmp_path / "idx"), "--quiet"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "found no videos" in err and "--allow-empty-source" in err and "nothing was deleted" in err
    assert Index(str(tmp_path / "idx")).read("videos").column("status").to_pylist() == ["ok"]
    assert main(["run", str(tmp_path / "mnt"), "--index", str(tmp_path / "idx"), "--quiet", "--allow-empty-source"]) == EXIT_OK
    assert Index(str(tmp_path / "idx")).read("videos").column("status").to_pylist() == ["deleted"]
