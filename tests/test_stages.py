"""Stages called directly on hand-built rows, without Ray."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pyarrow as pa

from pipeline.config import Config, config_from_dict
from pipeline.execution.adapter import run_rows
from pipeline.execution.assembler import PLAN_FIELDS, segment_result
from pipeline.execution.records import SEGMENT, SegmentRecord, unpack
from pipeline.execution.stages import DecodeAndModelStage, DecodeStage, LastVideo, ModelStage, PlanStage, on_own_thread
from testkit import synthetic


def listing_row(path: Path, size: int | None = None) -> dict[str, object]:
    uri = f"file://{path}"
    return {"video_id": "v1", "uri": uri, "location": uri, "size_bytes": path.stat().st_size if size is None else size}


def test_plan_decode_and_models_on_a_clip(mixed_clip: tuple[Path, synthetic.ClipTruth]) -> None:
    path, truth = mixed_clip
    config = config_from_dict({"decode": {"segment_frames": 300}})
    segments = PlanStage(config)(listing_row(path))
    assert [(s["segment_index"], s["start_frame"], s["end_frame"]) for s in segments] == [
        (0, 0, 300), (1, 300, truth.num_frames)
    ]
    assert {s["segment_count"] for s in segments} == {2} and segments[0]["fps"] == 25.0

    decoded = DecodeStage(config)(segments[1])[0]
    assert decoded["decoded_frames"] == truth.num_frames - 300
    assert unpack(decoded["sample_frames"]).tolist() == list(range(300, truth.num_frames, 6))
    assert all(t[:2] == b"\xff\xd8" for t in decoded["thumbnails"])  # JPEG

    models = ModelStage(config)
    models.setup()
    out = models(decoded)[0]
    assert out["shot_input"] is None and out["samples"] is None  # heavy inputs dropped
    assert unpack(out["single"]).shape == unpack(out["many"]).shape == (truth.num_frames - 300,)
    assert unpack(out["embeddings"]).shape == (len(decoded["thumbnails"]), 1280)
    # Rows fit the inter-stage schema.
    assert pa.Table.from_pylist([out], schema=SEGMENT).num_rows == 1
    # The driver's segment result carries the decode statistics that shots and keyframes use.
    result = segment_result(pa.Table.from_pylist([out], schema=SEGMENT).to_pylist()[0])
    assert result.frame_luma is not None and result.frame_luma.shape == (truth.num_frames - 300,)
    assert result.frame_colours is not None and len(result.frame_colours) == truth.num_frames - 300
    assert result.sample_sharpness is not None and result.sample_sharpness.shape == result.sample_frames.shape


def test_the_run_s_last_video_has_its_last_segments_planned_at_half_length(
    mixed_clip: tuple[Path, synthetic.ClipTruth],
) -> None:
    path, truth = mixed_clip
    end = truth.num_frames
    assert 300 < end <= 450
    config = config_from_dict({"decode": {"segment_frames": 300}})  # the shot network's step: 150

    def planned(last: LastVideo | None) -> list[tuple[int, int, int, int]]:
        rows = PlanStage(config, last=last)(listing_row(path))
        return [(r["segment_index"], r["segment_count"], r["start_frame"], r["end_frame"]) for r in rows]

    whole = [(0, 2, 0, 300), (1, 2, 300, end)]
    assert planned(None) == planned(LastVideo("another video", 2)) == whole
    # Its last two segments in halves where the actors take two at once; its last one, already
    # no longer than half a segment, as it was where they take one.
    assert planned(LastVideo("v1", 1)) == whole
    assert planned(LastVideo("v1", 2)) == [(0, 3, 0, 150), (1, 3, 150, 300), (2, 3, 300, end)]


def test_a_failure_becomes_one_row_and_passes_through_later_stages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    synthetic.write_random_bytes(bad, 4000, seed=1)
    config = Config()
    table = run_rows(PlanStage(config), pa.Table.from_pylist([listing_row(bad)], schema=SEGMENT))
    rows = table.to_pylist()
    assert len(rows) == 1 and rows[0]["error_stage"] == "probe"
    # Later stages hand the failure on untouched (no decoding, no model loading needed).
    assert DecodeStage(config)(rows[0]) == [rows[0]]
    assert ModelStage(config)(rows[0]) == [rows[0]]


def test_empty_object_fails_without_opening_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    (row,) = PlanStage(Config())(listing_row(empty))
    assert (row["error_stage"], row["error_message"]) == ("probe", "empty object (0 bytes)")


def test_one_actor_decoding_and_running_the_models_gives_the_same_rows(
    mixed_clip: tuple[Path, synthetic.ClipTruth], tmp_path: Path
) -> None:
    path, _ = mixed_clip
    config = config_from_dict({"decode": {"segment_frames": 300}})
    segment = PlanStage(config)(listing_row(path))[1]
    fused = DecodeAndModelStage(config)
    fused.setup()
    (out,) = fused(segment)
    (decoded,) = DecodeStage(config)(segment)
    (separate,) = fused.models(decoded)
    # Inside one actor the frames go from decoding to the models as arrays, not .npy bytes.
    (handed,) = fused.decode(segment)
    assert isinstance(decoded["shot_input"], bytes) and isinstance(handed["shot_input"], np.ndarray)
    assert isinstance(decoded["samples"], bytes) and isinstance(handed["samples"], np.ndarray)
    assert out.keys() == separate.keys()
    for key in out:
        assert out[key] == separate[key], key
    # A decode failure keeps its stage, and the models never see the video.
    short = tmp_path / "short.mp4"
    synthetic.write_clip(short, synthetic.simple_spec([30], "cut"))
    missing = {**PlanStage(config)(listing_row(short))[0], "location": str(tmp_path / "gone.mp4")}
    (row,) = fused(missing)
    assert row["error_stage"] == "decode" and "No such file or directory" in row["error_message"]


def test_a_last_stage_makes_a_lost_segment_again_from_the_plan_a_finisher_builds(
    mixed_clip: tuple[Path, synthetic.ClipTruth],
) -> None:
    """What :class:`VideoFinisher` hands ``remake`` (another segment's listing and plan, this
    segment's span) is enough to model the segment again, as the pipeline first did."""
    path, _ = mixed_clip
    config = config_from_dict({"decode": {"segment_frames": 300}})
    first, second = PlanStage(config)(listing_row(path))
    models = ModelStage(config)
    models.setup()
    (original,) = models(DecodeStage(config)(first)[0])
    (other,) = models(DecodeStage(config)(second)[0])
    plan = {name: other.get(name) for name in PLAN_FIELDS}
    plan.update(segment_index=0, start_frame=first["start_frame"], end_frame=first["end_frame"], warnings=[])

    (remade,) = models.remake(plan)  # type: ignore[arg-type]
    for key in ("decoded_frames", "single", "many", "embeddings", "sample_frames", "frame_times", "thumbnails"):
        assert remade[key] == original[key], key
    fused = DecodeAndModelStage(config)
    fused.setup()
    (again,) = fused.remake(plan)  # type: ignore[arg-type]
    assert again["decoded_frames"] == original["decoded_frames"] and again["sample_frames"] == original["sample_frames"]
    with pytest.raises(NotImplementedError, match="plan"):
        PlanStage(config).remake(plan)  # type: ignore[arg-type]


class _Step:
    """A stand-in for the fused stage's decode or models step: records what it does, and may
    wait for an event while it works on one video."""

    def __init__(self, name: str, events: list[str], died_on: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.name, self.events, self.dead = name, events, died_on
        self.hold: dict[str, tuple[threading.Event, threading.Event]] = {}

    def died_on(self, row) -> bool:  # type: ignore[no-untyped-def]
        return row["video_id"] in self.dead

    def __call__(self, row):  # type: ignore[no-untyped-def]
        self.events.append(f"{self.name} {row['video_id']} begin")
        if row["video_id"] in self.hold:
            entered, release = self.hold[row["video_id"]]
            entered.set()
            release.wait(2)
        self.events.append(f"{self.name} {row['video_id']} end")
        return [row]


def _fused_with(events: list[str], died_on: set[str] = frozenset()) -> tuple[DecodeAndModelStage, _Step, _Step]:  # type: ignore[assignment]
    fused = DecodeAndModelStage(Config())
    decode, models = _Step("decode", events, died_on), _Step("models", events)
    fused.decode, fused.models = decode, models  # type: ignore[assignment]
    return fused, decode, models


def _a_held_in_the_networks(fused: DecodeAndModelStage, models: _Step) -> tuple[threading.Thread, threading.Event]:
    """Video "a" sent through ``fused`` on a thread of its own and held inside the networks
    until the returned event is set."""
    entered, release = threading.Event(), threading.Event()
    models.hold["a"] = (entered, release)
    first = threading.Thread(target=fused, args=({"video_id": "a"},))
    first.start()
    assert entered.wait(10)
    return first, release


def test_the_fused_stage_decodes_one_segment_while_another_is_in_the_networks() -> None:
    """Two calls at once: one may decode while the other runs the networks, but never two
    decodes or two network passes together (each would take the cores from the other)."""
    events: list[str] = []
    fused, _, models = _fused_with(events)
    assert fused.concurrent_calls == 2
    first, release = _a_held_in_the_networks(fused, models)
    second = threading.Thread(target=fused, args=({"video_id": "b"},))
    second.start()
    deadline = time.monotonic() + 10
    while "decode b end" not in events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "decode b end" in events and "models a end" not in events  # b decoded beside a's networks
    release.set()
    first.join()
    second.join()
    assert events.index("models b begin") > events.index("models a end")  # one network pass at a time


def test_a_segment_a_worker_died_on_runs_alone_in_the_fused_stage() -> None:
    """A crash with two segments in the actor cannot say which one caused it; the retries run
    alone, so the next crash counts against its own segment only."""
    events: list[str] = []
    fused, decode, _ = _fused_with(events, died_on={"x"})
    entered, release = threading.Event(), threading.Event()
    decode.hold["x"] = (entered, release)
    first = threading.Thread(target=fused, args=({"video_id": "x"},))
    first.start()
    assert entered.wait(10)  # x (died on before) decodes, holding both steps
    second = threading.Thread(target=fused, args=({"video_id": "b"},))
    second.start()
    time.sleep(0.3)
    assert not any(" b " in e for e in events)  # b waits: nothing runs beside x
    release.set()
    first.join()
    second.join()
    assert events == [
        "decode x begin", "decode x end", "models x begin", "models x end",
        "decode b begin", "decode b end", "models b begin", "models b end",
    ]


def test_with_two_network_passes_two_segments_are_in_the_networks_at_once() -> None:
    events: list[str] = []
    fused, _, models = _fused_with(events)
    fused.allow_network_passes(2)
    first, release = _a_held_in_the_networks(fused, models)
    second = threading.Thread(target=fused, args=({"video_id": "b"},))
    second.start()
    second.join(10)
    assert not second.is_alive() and "models b end" in events and "models a end" not in events
    release.set()
    first.join()


def test_a_segment_a_worker_died_on_waits_for_every_network_pass_and_runs_alone() -> None:
    events: list[str] = []
    fused, _, models = _fused_with(events, died_on={"x"})
    fused.allow_network_passes(2)
    a_in, a_release = threading.Event(), threading.Event()
    x_in, x_release = threading.Event(), threading.Event()
    models.hold["a"], models.hold["x"] = (a_in, a_release), (x_in, x_release)
    threads = [threading.Thread(target=fused, args=({"video_id": "a"},))]
    threads[0].start()
    assert a_in.wait(10)  # a holds one of the two passes
    threads.append(threading.Thread(target=fused, args=({"video_id": "x"},)))
    threads[1].start()
    time.sleep(0.3)
    assert "models x begin" not in events  # x waits for a's pass, though the other one is free
    a_release.set()
    assert x_in.wait(10)
    threads.append(threading.Thread(target=fused, args=({"video_id": "b"},)))
    threads[2].start()
    time.sleep(0.3)
    assert not any(" b " in e for e in events)  # nothing runs beside x
    x_release.set()
    for thread in threads:
        thread.join(10)
    assert events[-4:] == ["decode b begin", "decode b end", "models b begin", "models b end"]


def test_a_cpu_actor_with_two_threads_runs_two_network_passes_of_one_thread() -> None:
    import torch

    before = torch.get_num_threads()
    models = ModelStage(Config())
    models.device = torch.device("cpu")
    try:
        models.call_threads = 2  # what setup gave the actor
        assert models.one_thread_per_pass(1) == 1 and models.call_threads == 2  # one call: all threads
        assert models.one_thread_per_pass(2) == 2 and models.call_threads == 1 and torch.get_num_threads() == 1
        assert models.one_thread_per_pass(2) == 1  # one thread left: one pass
        models.device = torch.device("cuda")
        models.call_threads = 4
        assert models.one_thread_per_pass(2) == 1 and models.call_threads == 4
    finally:
        torch.set_num_threads(before)


def test_the_fused_stage_decodes_its_first_segment_while_the_networks_load() -> None:
    """Setting up starts loading the weights on a thread of its own: the first segment decodes
    meanwhile, and only its modelling waits for them."""
    events: list[str] = []
    fused, decode, models = _fused_with(events)
    loading, loaded = threading.Event(), threading.Event()
    decode.setup = lambda: events.append("decode set up")  # type: ignore[attr-defined]

    def load_models() -> None:
        loading.set()
        assert loaded.wait(10)
        events.append("networks loaded")

    models.setup = load_models  # type: ignore[attr-defined]
    models.one_thread_per_pass = lambda most: 1  # type: ignore[attr-defined]
    fused.setup()  # returns while the networks load
    assert loading.wait(10)
    call = threading.Thread(target=fused, args=({"video_id": "a"},))
    call.start()
    deadline = time.monotonic() + 10
    while "decode a end" not in events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events == ["decode set up", "decode a begin", "decode a end"]  # decoded; modelling waits
    loaded.set()
    call.join(10)
    assert events[3:] == ["networks loaded", "models a begin", "models a end"]


def test_a_fused_stage_whose_networks_failed_to_load_raises_it() -> None:
    events: list[str] = []
    fused, decode, models = _fused_with(events)
    decode.setup = lambda: None  # type: ignore[attr-defined]

    def broken() -> None:
        raise RuntimeError("no weights")

    models.setup = broken  # type: ignore[attr-defined]
    fused.setup()
    with pytest.raises(RuntimeError, match="no weights"):
        fused({"video_id": "a"})  # type: ignore[arg-type]


def test_planning_records_each_segment_s_span_from_the_index_probing_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two numbers a segment: the packets it decodes, or 0 frames for the whole file."""
    path, mkv = tmp_path / "gop30.mp4", tmp_path / "gop30.mkv"
    synthetic.write_clip(path, synthetic.simple_spec([100, 130, 130], "cut"), gop=30)
    synthetic.remux(path, mkv)
    config = config_from_dict({"decode": {"segment_frames": 150}})
    rows = PlanStage(config)(listing_row(path))
    assert [(r["span_first"], r["span_frames"]) for r in rows] == [(0, 180), (90, 240), (240, 120)]
    assert [(r["span_first"], r["span_frames"]) for r in PlanStage(config)(listing_row(mkv))] == [(0, 0)] * 3
    (one,) = PlanStage(Config())(listing_row(path))
    assert (one["span_first"], one["span_frames"]) == (0, 0)  # one segment: the whole file
    # The span travels through Arrow and reaches the decoder, which does not read the index again.
    from pipeline.media import spans

    read, real_index = [], spans.span_index
    monkeypatch.setattr(spans, "span_index", lambda stream: read.append(stream) or real_index(stream))
    (decoded,) = DecodeStage(config)(pa.Table.from_pylist([rows[1]], schema=SEGMENT).to_pylist()[0])
    assert decoded["decoded_frames"] == 150 and decoded["warnings"] == [] and read == []
    unplanned = {**rows[1], "span_first": None, "span_frames": None}  # a segment made again: no plan
    (again,) = DecodeStage(config)(unplanned)
    assert len(read) == 1 and again["sample_frames"] == decoded["sample_frames"]


def test_on_own_thread_runs_the_call_on_a_named_thread_of_its_own_and_returns_its_future() -> None:
    release = threading.Event()

    def held(a: int, *, b: int) -> tuple[str, int]:
        release.wait()
        return threading.current_thread().name, a + b

    future = on_own_thread("some-setup", held, 2, b=3)
    assert not future.done()  # returned before the call ended
    release.set()
    name, total = future.result()
    assert name.startswith("some-setup") and name != threading.current_thread().name and total == 5

    def failing() -> None:
        raise ValueError("setup failed")

    with pytest.raises(ValueError, match="setup failed"):
        on_own_thread("other-setup", failing).result()


@pytest.mark.parametrize("exact", [True, False], ids=["int8 shots", "float shots"])
def test_a_segment_alone_in_a_cpu_actor_takes_all_its_threads_from_its_next_pass(monkeypatch: pytest.MonkeyPatch, exact: bool) -> None:
    """Two segments in a 2-thread actor: one thread per shot-network pass; once the other has
    left and no new one came for ALONE_BEFORE_WIDENING_S, the one left runs its next pass on
    both, where its outputs do not depend on the threads (int8), else still on one."""
    import torch

    from pipeline.execution import stages

    monkeypatch.setattr(stages, "ALONE_BEFORE_WIDENING_S", 0.3)
    events: list[str] = []
    fused = DecodeAndModelStage(Config())
    decode = _Step("decode", events)
    fused.decode = decode  # type: ignore[assignment]
    models = fused.models
    models.device = torch.device("cpu")
    models.actor_threads, models.call_threads = 2, 1  # what one_thread_per_pass left a 2-CPU actor
    models.shots_exact_on_any_threads = exact
    fused.allow_network_passes(2)
    threads_by_pass: dict[str, list[int]] = {"a": [], "b": []}
    gates = {name: threading.Event() for name in ("a second pass", "a third pass")}
    at_gate = {name: threading.Event() for name in gates}

    def networks(decoded: list[SegmentRecord]) -> list[SegmentRecord]:
        video = decoded[0]["video_id"]
        passes = 3 if video == "a" else 1
        for number in range(passes):
            if number:
                gate = ("a second pass", "a third pass")[number - 1]
                at_gate[gate].set()
                assert gates[gate].wait(10)
            models.before_each_shot_pass()
            threads_by_pass[video].append(torch.get_num_threads())
        return decoded

    fused._models = networks  # type: ignore[method-assign]
    before = torch.get_num_threads()
    try:
        first = threading.Thread(target=fused, args=({"video_id": "a"},))
        first.start()
        assert at_gate["a second pass"].wait(10)  # a's first pass ran: a alone, but only just
        b_in, b_release = threading.Event(), threading.Event()
        decode.hold["b"] = (b_in, b_release)
        second = threading.Thread(target=fused, args=({"video_id": "b"},))
        second.start()
        assert b_in.wait(10)
        gates["a second pass"].set()  # b is decoding: a's second pass keeps one thread
        assert at_gate["a third pass"].wait(10)
        b_release.set()
        second.join(10)
        time.sleep(0.5)  # a alone for longer than ALONE_BEFORE_WIDENING_S
        gates["a third pass"].set()
        first.join(10)
    finally:
        torch.set_num_threads(before)
    assert threads_by_pass == {"a": [1, 1, 2 if exact else 1], "b": [1]}


def test_the_shot_network_and_the_embeddings_call_the_hook_before_each_pass() -> None:
    import torch

    from pipeline.models.inference import embed_frames, predict_transitions

    class Shots(torch.nn.Module):
        def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            zeros = torch.zeros(frames.shape[:2])
            return zeros, zeros

    class Embeddings(torch.nn.Module):
        def features(self, frames: torch.Tensor) -> torch.Tensor:
            return torch.ones(frames.shape[0], 4)

    calls: list[str] = []
    cpu = torch.device("cpu")
    frames = np.zeros((25 + 250 + 25, 27, 48, 3), np.uint8)  # two windows of 200: 150 + 100 frames
    single, _ = predict_transitions(Shots(), frames, window=200, batch_windows=1, device=cpu, before_each_pass=lambda: calls.append("shots"))
    samples = np.zeros((5, 64, 64, 3), np.uint8)
    embedded = embed_frames(Embeddings(), samples, batch_size=2, device=cpu, before_each_pass=lambda: calls.append("embed"))
    assert len(single) == 250 and embedded.shape == (5, 4)
    assert calls == ["shots", "shots", "embed", "embed", "embed"]
