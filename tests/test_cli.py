"""Command-line errors fail fast, before any Ray or model work, with the fix in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import EXIT_USAGE, build_parser, main


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
