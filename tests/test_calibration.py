"""Precision calibration for ``inference.precision: auto`` on CPUs: the choice, the cache, the lock.

Fake candidates run on a fake clock, so the choice is exact and nothing depends on how fast
this machine is; one slow test runs the real networks' candidates.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.models import calibration
from pipeline.models.calibration import (
    Calibration,
    Candidate,
    Measured,
    cache_path,
    calibrated,
    embed_agreement,
    fastest_allowed,
    machine_key,
    measure_network,
    network_precisions,
    read_cached,
    shot_agreement,
    write_cached,
)

ROOT = Path(__file__).resolve().parent.parent
#: A shot network's outputs [2 heads, 6 frames] with cuts at frames 1 and 4.
SHOT_REFERENCE = np.array([[0.0, 0.9, 0.1, 0.0, 0.52, 0.0], [0.0, 0.8, 0.2, 0.0, 0.6, 0.0]])


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's cache in its own folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


class FakeClock:
    """A clock that only moves when a fake candidate runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake(clock: FakeClock, name: str, seconds: float, output: np.ndarray, calls: list[str]) -> Candidate:
    """A shot-network candidate whose every pass takes ``seconds`` on ``clock`` and gives ``output``."""

    def run() -> np.ndarray:
        calls.append(name)
        clock.now += seconds
        return output

    return Candidate("shot", name, run)


def test_a_candidate_outside_the_tolerance_is_never_chosen_even_when_fastest() -> None:
    clock, calls = FakeClock(), []
    off = SHOT_REFERENCE.copy()
    off[1, 2] += 0.3  # the many-hot head 0.3 away on one frame
    flipped = SHOT_REFERENCE.copy()
    flipped[0, 4] = 0.47  # within 0.1 of float32 everywhere, but a cut lost
    close = SHOT_REFERENCE + 0.02
    table = measure_network(
        [
            fake(clock, "fp32", 10.0, SHOT_REFERENCE, calls),
            fake(clock, "wrong", 1.0, off, calls),
            fake(clock, "lost-cut", 1.0, flipped, calls),
            fake(clock, "int8", 4.0, close, calls),
            Candidate("shot", "absent", None, "no kernels"),
        ],
        frames=6,
        agreement=shot_agreement,
        clock=clock,
        budget_s=100.0,
    )
    rows = {row.name: row for row in table}
    assert [row.name for row in table] == ["fp32", "wrong", "lost-cut", "int8", "absent"]
    assert (rows["wrong"].allowed, rows["lost-cut"].allowed, rows["int8"].allowed, rows["fp32"].allowed) == (
        False, False, True, True
    )
    assert rows["wrong"].accuracy == pytest.approx(0.3)
    assert "probabilities differ by 0.300" in rows["wrong"].note
    assert rows["lost-cut"].note == "cuts at frames [1], float32 at [1, 4]"
    assert (rows["absent"].frames_per_s, rows["absent"].note) == (None, "no kernels")
    assert rows["int8"].frames_per_s == pytest.approx(6 / 4.0)
    assert rows["fp32"].frames_per_s == pytest.approx(6 / 10.0)
    assert fastest_allowed(table) == "int8"
    # The refused ones ran once (their accuracy), never timed; fp32 timed once, then out of the race.
    assert calls.count("wrong") == calls.count("lost-cut") == 1
    assert calls.count("fp32") == 2


def test_a_reduced_precision_must_be_clearly_faster_than_float32() -> None:
    def row(name: str, rate: float | None, allowed: bool = True) -> Measured:
        return Measured("embed", name, rate, 0.0, allowed)

    assert fastest_allowed([row("fp32", 100.0), row("bf16", 105.0)]) == "fp32"  # within 10%: not worth it
    assert fastest_allowed([row("fp32", 100.0), row("bf16", 120.0)]) == "bf16"
    assert fastest_allowed([row("fp32", 100.0), row("bf16", 500.0, allowed=False)]) == "fp32"
    assert fastest_allowed([row("fp32", None), row("bf16", None, allowed=False)]) == "fp32"


def test_embedding_tolerance_is_the_smallest_cosine_per_frame() -> None:
    reference = np.eye(3, 4)
    nearly = reference.copy()
    nearly[2] = [0.0, 0.1, 0.995, 0.0]
    nearly[2] /= np.linalg.norm(nearly[2])
    assert embed_agreement(reference, nearly) == (pytest.approx(0.995, abs=1e-3), "")
    apart = reference.copy()
    apart[1] = [0.0, 0.98, 0.0, np.sqrt(1 - 0.98**2)]
    cosine, refused = embed_agreement(reference, apart)
    assert cosine == pytest.approx(0.98) and refused == "cosine to float32 0.9800 < 0.99"


def test_a_network_with_one_runnable_candidate_is_not_measured() -> None:
    calls: list[str] = []
    table = measure_network(
        [fake(FakeClock(), "fp32", 1.0, SHOT_REFERENCE, calls), Candidate("shot", "bf16", None, "no native bf16")],
        frames=6,
        agreement=shot_agreement,
    )
    assert calls == [] and fastest_allowed(table) == "fp32"
    assert (table[1].allowed, table[1].note) == (False, "no native bf16")


def test_the_cache_key_changes_with_torch_the_cpu_and_an_isa_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(calibration, "cpu_model_and_flags", lambda: ("Example CPU 9000", {"avx2", "avx512f", "sse2"}))
    base = machine_key(threads=2)
    assert (base["cpu"], base["isa"], base["torch"], base["threads"]) == (
        "Example CPU 9000", ["avx2", "avx512f"], torch.__version__, 2
    )
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    newer_torch = machine_key(threads=2)
    monkeypatch.setattr(calibration, "cpu_model_and_flags", lambda: ("Other CPU 1", {"avx2", "avx512f"}))
    other_cpu = machine_key(threads=2)
    monkeypatch.setattr(calibration, "cpu_model_and_flags", lambda: ("Example CPU 9000", {"avx2", "avx512f", "amx_int8"}))
    other_isa = machine_key(threads=2)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    capped = machine_key(threads=2)
    paths = {cache_path(key) for key in (base, newer_torch, other_cpu, other_isa, capped)}
    assert len(paths) == 5
    assert cache_path(base) == cache_path(json.loads(json.dumps(base)))  # the same key, the same file
    assert cache_path(base).parent == Path(calibration.cache_dir())


def a_calibration(key: dict[str, Any], shot: str = "int8", embed: str = "fp32") -> Calibration:
    table = (
        Measured("shot", "fp32", 10.0, 0.0, True),
        Measured("shot", "int8", 30.0, 0.02, True),
        Measured("embed", "fp32", None, 0.0, True, "the only candidate: not measured"),
    )
    return Calibration(shot, embed, table, key, 1.5, "2026-12-06T20:00:00+00:00")


KEY = {"cpu": "Example CPU 9000", "isa": ["avx2"], "torch": "2.13.0", "threads": 2, "version": 1}


def test_a_cached_choice_is_used_without_measuring_again(cache_home: Path) -> None:
    measured: list[dict[str, Any]] = []

    def measure(shot_model: Any, embed_model: Any, key: dict[str, Any]) -> Calibration:
        measured.append(key)
        return a_calibration(key)

    first = calibrated(None, None, measure=measure, key=KEY)
    second = calibrated(None, None, measure=measure, key=KEY)
    assert measured == [KEY]
    assert first == second and second is not None and (second.shot, second.embed) == ("int8", "fp32")
    assert cache_path(KEY).is_relative_to(cache_home / "vindex" / "precision")
    other = dict(KEY, torch="9.9.9")
    calibrated(None, None, measure=measure, key=other)
    assert measured == [KEY, other]  # another torch measures again


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "",
        json.dumps({"key": KEY, "shot": "fp16", "embed": "fp32", "table": [], "seconds": 1, "measured_at": ""}),
        json.dumps({"key": KEY, "shot": "int8", "embed": "fp32"}),
        json.dumps({"key": dict(KEY, cpu="Other"), "shot": "int8", "embed": "fp32", "table": [], "seconds": 1,
                    "measured_at": ""}),
    ],
    ids=["not-json", "empty", "unknown-choice", "incomplete", "other-key"],
)
def test_a_damaged_cache_file_is_measured_again_with_a_warning(damage: str, caplog: pytest.LogCaptureFixture) -> None:
    path = cache_path(KEY)
    path.parent.mkdir(parents=True)
    path.write_text(damage)
    measured: list[str] = []

    def measure(shot_model: Any, embed_model: Any, key: dict[str, Any]) -> Calibration:
        measured.append("again")
        return a_calibration(key, shot="fp32")

    with caplog.at_level(logging.WARNING, logger="pipeline.models.calibration"):
        found = calibrated(None, None, measure=measure, key=KEY)
    assert measured == ["again"] and found is not None and found.shot == "fp32"
    assert any(f"the precision calibration {path} is unusable" in r.getMessage() for r in caplog.records)
    assert read_cached(path, KEY) == found  # the file is whole again


def test_a_calibration_survives_its_json_round_trip() -> None:
    original = a_calibration(KEY)
    path = cache_path(KEY)
    write_cached(path, original)
    assert read_cached(path, KEY) == original
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


#: A process that asks for the calibration with a measurement that takes a while and leaves a mark.
CONTENDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from pipeline.models.calibration import Calibration, Measured, calibrated

    key, marks = json.loads(sys.argv[1]), Path(sys.argv[2])

    def measure(shot_model, embed_model, key):
        with marks.open("a") as out:
            out.write("measured\\n")
        time.sleep(0.5)
        return Calibration("int8", "fp32", (Measured("shot", "fp32", 1.0, 0.0, True),), key, 0.5, "now")

    found = calibrated(None, None, measure=measure, key=key)
    print(found.shot, found.embed)
    """
)


def test_actors_starting_together_measure_once_and_leave_a_whole_file(tmp_path: Path, cache_home: Path) -> None:
    marks = tmp_path / "marks"
    env = {"XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, json.dumps(KEY), str(marks)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(4)
    ]
    outputs = [c.communicate(timeout=120) for c in contenders]
    assert [c.returncode for c in contenders] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["int8 fp32"] * 4
    assert marks.read_text() == "measured\n"  # one measured; the others waited and read its file
    found = read_cached(cache_path(KEY), KEY)
    assert found is not None and (found.shot, found.embed) == ("int8", "fp32")
    leftovers = sorted(p.name for p in cache_path(KEY).parent.iterdir())
    assert leftovers == sorted([cache_path(KEY).name, cache_path(KEY).name + ".lock"])


def test_a_lock_held_too_long_keeps_the_fixed_rule(caplog: pytest.LogCaptureFixture) -> None:
    from pipeline.models.calibration import calibration_lock

    def measure(shot_model: Any, embed_model: Any, key: dict[str, Any]) -> Calibration:
        raise AssertionError("measured while another process held the lock")

    with calibration_lock(cache_path(KEY)) as held, caplog.at_level(logging.WARNING):
        assert held
        # flock locks belong to the open file: a second open in this process contends like another process.
        assert calibrated(None, None, measure=measure, key=KEY, wait_s=0.3) is None
    assert any("inference.precision auto keeps its fixed rule" in r.getMessage() for r in caplog.records)


def test_only_auto_on_a_cpu_with_calibration_on_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_calibrated(shot_model: Any, embed_model: Any) -> Calibration:
        asked.append("calibrated")
        return a_calibration(KEY, shot="int8+bf16", embed="bf16")

    monkeypatch.setattr(calibration, "calibrated", fake_calibrated)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def precisions(device: torch.device, precision: str, calibrate_cpu: bool = True) -> tuple[str, str]:
        return network_precisions(device, precision, calibrate_cpu=calibrate_cpu, shot_model=None, embed_model=None)

    for explicit in ("fp32", "bf16", "int8"):
        assert precisions(cpu, explicit) == (explicit, explicit)
    assert precisions(cuda, "auto") == ("auto", "auto")  # the GPU's fixed rule: fp16 autocast
    assert precisions(cpu, "auto", calibrate_cpu=False) == ("auto", "auto")  # the CPU's fixed rule
    assert asked == []
    assert precisions(cpu, "auto") == ("int8+bf16", "bf16")
    assert asked == ["calibrated"]
    monkeypatch.setattr(calibration, "calibrated", lambda shot_model, embed_model: None)  # the lock was not had
    assert precisions(cpu, "auto") == ("auto", "auto")


def test_native_bf16_needs_the_cpu_flags_not_only_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.models import inference, machine

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("oneDNN runs no bf16 here at all")
    try:
        for flags, native in (({"avx512f", "avx512_vnni"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True)):
            monkeypatch.setattr(machine, "cpu_model_and_flags", lambda flags=flags: ("Example CPU", flags))
            inference.cpu_has_bf16.cache_clear()
            assert inference.cpu_has_bf16() is native
    finally:
        inference.cpu_has_bf16.cache_clear()


def test_int8_with_bf16_runs_the_int8_blocks_and_its_other_layers_under_bf16(shot_model: torch.nn.Module) -> None:
    from pipeline.models.inference import autocast_for, prepare_for_inference, uses_int8
    from pipeline.models.quantized import Int8TransNetV2, int8_available

    if not int8_available():
        pytest.skip("this torch build has no quantized x86 kernels")
    cpu = torch.device("cpu")
    both = prepare_for_inference(shot_model, cpu, "int8+bf16", setting="auto", embed_precision="fp32")
    assert isinstance(both, Int8TransNetV2) and both.float_autocast and uses_int8(cpu, "int8+bf16")
    only = Int8TransNetV2(both.network)  # the same int8 blocks, as "int8" builds them
    with autocast_for(cpu, "int8+bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    seen: list[torch.dtype] = []
    hook = both.network.fc1.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    frames = torch.zeros(1, 60, 27, 48, 3, dtype=torch.uint8)
    try:
        with torch.inference_mode(), autocast_for(cpu, "int8+bf16"):
            both(frames)
            only(frames)
    finally:
        hook.remove()
    assert seen == [torch.bfloat16, torch.float32]


def test_the_model_stage_runs_each_network_in_its_measured_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.config import Config
    from pipeline.execution.stages import ModelStage
    from pipeline.models.quantized import Int8TransNetV2

    monkeypatch.setattr(calibration, "calibrated", lambda shot_model, embed_model: a_calibration(KEY, "fp32", "fp32"))
    stage = ModelStage(Config())
    stage.setup()
    assert (stage.shot_precision, stage.embed_precision) == ("fp32", "fp32")
    assert not isinstance(stage.shot_model, Int8TransNetV2)


@pytest.mark.slow
def test_the_real_candidates_are_checked_against_float32(shot_model: torch.nn.Module) -> None:
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0

    found = calibration.calibrate(shot_model, load_efficientnet_lite0(), machine_key())
    rows = {(row.network, row.name): row for row in found.table}
    assert list(rows) == [("shot", n) for n in calibration.SHOT_CANDIDATES] + [
        ("embed", n) for n in calibration.EMBED_CANDIDATES
    ]
    assert rows["shot", "fp32"].allowed and rows["shot", "fp32"].accuracy == 0.0
    assert rows["shot", found.shot].allowed and rows["embed", found.embed].allowed
    int8 = rows["shot", "int8"]
    if int8.frames_per_s is not None:  # this torch has quantized kernels
        assert int8.allowed and 0.0 < (int8.accuracy or 0.0) <= calibration.SHOT_MAX_PROBABILITY_DIFFERENCE


@pytest.mark.slow
def test_the_calibration_input_holds_cuts_for_the_cut_check(shot_model: torch.nn.Module) -> None:
    """float32 predicts cuts on the calibration window (a cut, a dissolve, a cut), so a
    candidate that gains or loses one is refused, not waved through on an empty set."""
    from pipeline.media.decode import to_shot_input
    from pipeline.models.inference import predict_transitions

    frames = to_shot_input(torch.from_numpy(calibration.calibration_clip())).numpy()
    single, _ = predict_transitions(
        shot_model, frames, window=calibration.SHOT_WINDOW_FRAMES, batch_windows=1, device=torch.device("cpu")
    )
    assert np.flatnonzero(single >= calibration.SHOT_CUT_THRESHOLD).tolist() == [9, 28, 42]
