"""Tests for pipeline.errors: one module holds every exception vindex defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import pipeline
from pipeline import errors
from pipeline.cli import EXIT_INFRASTRUCTURE, EXIT_USAGE, main


def defined_exceptions(module_name: str) -> list[type[BaseException]]:
    """Exception classes whose definition is in ``module_name`` (not merely imported there)."""
    module = importlib.import_module(module_name)
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module_name
    ]


def test_every_exception_of_the_package_is_defined_in_pipeline_errors() -> None:
    modules = [info.name for info in pkgutil.walk_packages(pipeline.__path__, prefix="pipeline.")]
    assert "pipeline.index.query" in modules and "pipeline.models.transnetv2" in modules  # the walk reached them
    elsewhere = {
        f"{name}.{cls.__name__}" for name in modules if name != "pipeline.errors" for cls in defined_exceptions(name)
    }
    assert elsewhere == set()


#: Programming errors: they may stop a run, so they are not VindexErrors.
PROGRAMMING_ERRORS = {"IncompleteVideosError"}


def test_the_errors_module_exports_exactly_its_exceptions() -> None:
    assert sorted(errors.__all__) == sorted(cls.__name__ for cls in defined_exceptions("pipeline.errors"))
    deliberate = set(errors.__all__) - PROGRAMMING_ERRORS
    assert all(issubclass(getattr(errors, name), errors.VindexError) for name in deliberate)
    assert not any(issubclass(getattr(errors, name), errors.VindexError) for name in PROGRAMMING_ERRORS)


def test_the_docstring_draws_every_exception() -> None:
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    assert drawn | {"VindexError"} == set(errors.__all__)


def test_a_stitch_failure_is_a_video_error_of_stage_stitch() -> None:
    error = errors.StitchError("file:///v.mp4", "segment 1 starts at frame 120, expected 100")
    assert isinstance(error, errors.VideoError)
    assert (error.stage, error.uri, str(error)) == ("stitch", "file:///v.mp4", "segment 1 starts at frame 120, expected 100")


def test_missing_weights_are_a_vindex_error_and_a_missing_file() -> None:
    assert issubclass(errors.WeightsNotFoundError, errors.VindexError)
    assert issubclass(errors.WeightsNotFoundError, FileNotFoundError)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.WeightsNotFoundError("weights not found; pip install x"), EXIT_USAGE),
        (errors.QueryError("nope"), EXIT_USAGE),
        (errors.SimilarError("nope"), EXIT_USAGE),
        (errors.ReportError("nope"), EXIT_USAGE),
        (errors.ConfigError("nope"), EXIT_USAGE),
        (errors.SpillWriteError("no room"), EXIT_USAGE),
        (errors.SpillReadError("removed meanwhile"), EXIT_USAGE),
        (errors.IndexWriteError("disk full"), EXIT_INFRASTRUCTURE),
        (errors.ClusterUnreachableError("down"), EXIT_INFRASTRUCTURE),
    ],
)
def test_the_command_line_maps_each_error_to_its_exit_status(
    error: Exception, status: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.index import reader

    def fail(*args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(reader, "open_index", fail)
    assert main(["status", "/nonexistent-index"]) == status
    assert str(error) in capsys.readouterr().err
