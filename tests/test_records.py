"""The segment record: its schema and its measures generated from one definition each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypedDict

import numpy as np
import pyarrow as pa
import pytest

from pipeline.algorithms.frame_stats import SegmentMeasures, measure, measured, measures, no_measures
from pipeline.algorithms.stitch import SegmentResult
from pipeline.config import config_from_dict
from pipeline.execution.records import (
    LIKE_VIDEOS,
    SEGMENT,
    measures_type,
    pack_measures,
    record_schema,
    unpack,
    unpack_measures,
)
from pipeline.execution.stages import DecodeStage, PlanStage
from pipeline.media.decode import DecodedSegment
from testkit import synthetic


@dataclass(kw_only=True)
class WithRedness(SegmentMeasures):
    """A measure added in one place: a field of the definition."""

    frame_redness: np.ndarray | None = measure("frame", "float32", 2)


def filled(definition: type[SegmentMeasures], frames: int, samples: int) -> dict[str, np.ndarray]:
    """A value of the declared shape and type for every measure of ``definition``."""
    rng = np.random.default_rng(7)
    return {
        name: (rng.uniform(0, 200, spec.shape(frames if spec.per == "frame" else samples))).astype(spec.dtype)
        for name, spec in measures(definition).items()
    }


def through_arrow(row: dict[str, object], schema: pa.Schema) -> dict[str, object]:
    return dict(pa.Table.from_pylist([row], schema=schema).to_pylist()[0])


def test_every_measure_goes_through_a_record_and_back() -> None:
    values = filled(SegmentMeasures, frames=12, samples=3)
    assert list(values) == ["frame_luma", "frame_colours", "sample_sharpness", "frame_motion", "frame_layout"]
    row = through_arrow({"video_id": "v", "measures": pack_measures(SegmentMeasures(**values))}, SEGMENT)
    back = unpack_measures(row, SegmentResult)
    assert list(back) == list(values)
    for name, array in values.items():
        got = back[name]
        assert got is not None and got.dtype == array.dtype
        np.testing.assert_array_equal(got, array)
    # A measure a record was made without stays None; so does a failure's whole column.
    partial = through_arrow({"measures": pack_measures(SegmentMeasures(frame_luma=values["frame_luma"]))}, SEGMENT)
    assert [name for name, array in unpack_measures(partial).items() if array is not None] == ["frame_luma"]
    assert unpack_measures(through_arrow({"video_id": "v"}, SEGMENT)) == dict.fromkeys(values)


def test_a_measure_added_to_the_definition_reaches_the_schema_and_both_directions() -> None:
    assert measures_type(WithRedness).names == [*measures_type().names, "frame_redness"]
    values = filled(WithRedness, frames=5, samples=2)
    packed = pack_measures(WithRedness(**values))
    assert set(packed) == set(values)
    row = through_arrow({"measures": packed}, pa.schema([("measures", measures_type(WithRedness))]))
    redness = unpack_measures(row, WithRedness)["frame_redness"]
    assert redness is not None and redness.shape == (5, 2)
    np.testing.assert_array_equal(redness, values["frame_redness"])
    # The decoder's output and the stitcher's input are the same definition, not copies of it.
    assert measures(DecodedSegment) == measures(SegmentResult) == measures()
    assert {name: array.shape for name, array in no_measures(WithRedness).items()}["frame_redness"] == (0, 2)


def test_the_schema_is_generated_from_the_fields_declared_types() -> None:
    class Small(TypedDict, total=False):
        video_id: Annotated[str, LIKE_VIDEOS]
        rotation: Annotated[int, pa.int32()]

    assert record_schema(Small) == pa.schema([("video_id", pa.string()), ("rotation", pa.int32())])

    class Undeclared(TypedDict, total=False):
        rotation: int

    with pytest.raises(TypeError, match="Undeclared.rotation must declare one Arrow type"):
        record_schema(Undeclared)
    assert SEGMENT.field("mtime").type == pa.timestamp("us", tz="UTC")  # as the videos table has it
    assert SEGMENT.field("measures").type == measures_type()


def test_the_decode_stage_fills_what_the_schema_declares(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    synthetic.write_clip(path, synthetic.simple_spec([100, 70], "cut"))
    config = config_from_dict({"decode": {"segment_frames": 150}})
    uri = f"file://{path}"
    listing = {"video_id": "v", "uri": uri, "location": uri, "size_bytes": path.stat().st_size, "etag": None, "mtime": None}
    planned = PlanStage(config)(listing)
    (out,) = DecodeStage(config)(planned[1])
    models = ("single", "many", "embeddings", "error_stage", "error_message")
    assert sorted(out) == sorted(name for name in SEGMENT.names if name not in models)
    assert set(out["measures"]) == set(measures())
    row = through_arrow(dict(out), SEGMENT)
    decoded_frames = row["decoded_frames"]
    assert decoded_frames == 20
    samples = len(unpack(row["sample_frames"]))
    for name, array in unpack_measures(row).items():
        spec = measures()[name]
        assert array is not None and array.dtype == np.dtype(spec.dtype), name
        assert array.shape == spec.shape(decoded_frames if spec.per == "frame" else samples), name
    assert measured(SegmentResult(0, 1, 0, 0, *[np.zeros(0)] * 4, [], **no_measures())).keys() == measures().keys()
