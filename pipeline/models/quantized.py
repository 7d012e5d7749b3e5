"""TransNetV2 with int8 convolution blocks, for CPUs.

The shot network spends nearly all its CPU time in its three stacked blocks of dilated
Conv3d (``TransNetV2.SDDCNN``). Those blocks run here as int8 kernels (PyTorch's FX
graph-mode static quantization, ``x86`` backend: per-channel int8 weights, uint8
activations); the colour histograms, frame similarities and the two heads stay float32.
Measured by ``benchmarks/networks.py``: about 2x the bf16 network on a 2-core AMX CPU, with
the same shot F1 on the generated hard set and on real footage.

Static quantization needs each activation's range. Those ranges come from a calibration run
over the built-in sample corpus (``python -m pipeline.models.quantized``), done once and
kept in ``pipeline/models/transnetv2_int8.json`` (package data, read by
:func:`recorded_ranges`) as one (scale, zero point) per observer, so
an actor builds the int8 network in about a second instead of calibrating for six, and
every machine gets the same network. The int8 weights are made from the published float
weights each time: nothing but those small numbers is stored.

Where this torch build has no quantized CPU kernels, or cannot build the network, the float
network is used: :func:`pipeline.models.inference.prepare_for_inference` warns where int8 was
asked for (or where the build failed), and says what ``auto`` chose.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, cast

import numpy as np
import torch
from torch import nn

#: Quantized-kernel backends tried in order; "x86" picks oneDNN or fbgemm per op.
QUANTIZED_ENGINES = ("x86", "fbgemm")
#: Frames of each sample clip used for calibration.
CALIBRATION_FRAMES_PER_CLIP = 120
#: Frames per calibration forward pass (the pipeline's default window).
CALIBRATION_WINDOW_FRAMES = 200
#: Observer name prefix in an FX-prepared block.
_OBSERVER_PREFIX = "activation_post_process_"
#: One observer's recorded range: scale, zero point, dtype name, quant_min, quant_max.
ObserverParams = tuple[float, int, str, int, int]
#: The recorded ranges, package data beside this module (written by :func:`write_recorded`).
RECORDED_RANGES_FILE = "transnetv2_int8.json"


@dataclass(frozen=True)
class RecordedRanges:
    """The int8 blocks' activation ranges as calibration recorded them."""

    #: The weights these ranges were measured with (``weights.recorded_digest``).
    weights_digest: str
    #: One dict per convolution block: observer name -> its range.
    observers: list[dict[str, ObserverParams]]


def _observer_params(value: list[Any]) -> ObserverParams:
    scale, zero_point, dtype, quant_min, quant_max = value
    return float(scale), int(zero_point), str(dtype), int(quant_min), int(quant_max)


def parse_recorded(text: str) -> RecordedRanges:
    """The ranges of a ``transnetv2_int8.json`` text."""
    data = json.loads(text)
    observers = [{name: _observer_params(value) for name, value in block.items()} for block in data["observers"]]
    return RecordedRanges(weights_digest=str(data["weights_digest"]), observers=observers)


@functools.lru_cache(maxsize=1)
def recorded_ranges() -> RecordedRanges:
    """The ranges shipped with vindex (read once per process)."""
    return parse_recorded(resources.files(__package__).joinpath(RECORDED_RANGES_FILE).read_text())


def quantized_engine() -> str | None:
    """The first of :data:`QUANTIZED_ENGINES` this torch build supports, else None."""
    supported = torch.backends.quantized.supported_engines
    return next((engine for engine in QUANTIZED_ENGINES if engine in supported), None)


def int8_available() -> bool:
    """Whether this torch build can run the int8 shot network on the CPU."""
    return quantized_engine() is not None


def _use_quantized_engine() -> str:
    """Make the first supported quantized engine torch's current one, and name it; raise
    RuntimeError where this torch build has none."""
    engine = quantized_engine()
    if engine is None:
        raise RuntimeError("this torch build has no quantized CPU kernels")
    torch.backends.quantized.engine = engine
    return engine


def _qconfig(engine: str) -> Any:
    from torch.ao.quantization import get_default_qconfig_mapping

    return get_default_qconfig_mapping(engine)


def _prepare(block: nn.Module, engine: str, example: torch.Tensor) -> torch.fx.GraphModule:
    from torch.ao.quantization.quantize_fx import prepare_fx

    # No stack trace recorded for each traced node: collecting them imports half of torch
    # (1.2 of the 1.3 s an actor took to build the int8 network, 2-core CPU).
    with warnings.catch_warnings(), _no_stack_traces():  # torch notes that FX quantization moved to torchao
        warnings.simplefilter("ignore")
        return prepare_fx(block, _qconfig(engine), (example,))


@contextlib.contextmanager
def _no_stack_traces() -> Iterator[None]:
    import torch.fx.config as fx_config

    before = getattr(fx_config, "do_not_emit_stack_traces", None)
    fx_config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        if before is None:
            del fx_config.do_not_emit_stack_traces
        else:
            fx_config.do_not_emit_stack_traces = before


def _observers(prepared: nn.Module) -> dict[str, nn.Module]:
    # Shared observers appear under each of their names (one module, several uses).
    return {
        name: module
        for name, module in prepared.named_modules(remove_duplicate=False)
        if name.startswith(_OBSERVER_PREFIX)
    }


def _conv_blocks(model: nn.Module) -> nn.ModuleList:
    """TransNetV2's three stacked blocks of dilated Conv3d."""
    return cast(nn.ModuleList, model.SDDCNN)


def _float_blocks(model: nn.Module) -> nn.Module:
    """A float32, contiguous copy of the network (channels-last memory does not quantize)."""
    float_model = copy.deepcopy(model).float().eval()
    return float_model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


def calibrate(model: nn.Module, frames: np.ndarray) -> list[dict[str, ObserverParams]]:
    """Each convolution block's observer ranges over ``frames`` (uint8 ``[N, 27, 48, 3]``).

    Each block's observers see the activations the float blocks before it produce.
    """
    engine = _use_quantized_engine()
    float_model = _float_blocks(model)
    recorded: list[dict[str, ObserverParams]] = []
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0).float().div_(255.0)
        for block in _conv_blocks(float_model):
            prepared = _prepare(copy.deepcopy(block), engine, x[:, :, :CALIBRATION_WINDOW_FRAMES])
            for start in range(0, x.shape[2], CALIBRATION_WINDOW_FRAMES):
                prepared(x[:, :, start : start + CALIBRATION_WINDOW_FRAMES])
            x = block(x)
            params: dict[str, ObserverParams] = {}
            for name, observer in _observers(prepared).items():
                scale, zero_point = observer.calculate_qparams()  # type: ignore[operator]
                dtype = str(observer.dtype).removeprefix("torch.")
                params[name] = (float(scale), int(zero_point), dtype, int(observer.quant_min), int(observer.quant_max))  # type: ignore[arg-type]
            recorded.append(params)
    return recorded


def quantize_transnetv2(
    model: nn.Module, recorded: list[dict[str, ObserverParams]] | None = None, *, float_autocast: bool = False
) -> Int8TransNetV2:
    """A copy of the float network whose convolution blocks run in int8, from the recorded
    ranges (default: :func:`recorded_ranges`); its float parts under the
    caller's autocast where ``float_autocast``, else in float32. Raises RuntimeError where this
    torch build cannot (no quantized kernels, or an FX API that changed)."""
    from torch.ao.quantization.observer import FixedQParamsObserver
    from torch.ao.quantization.quantize_fx import convert_fx

    if recorded is None:
        recorded = recorded_ranges().observers
    engine = _use_quantized_engine()
    float_model = _float_blocks(model)
    float_blocks = _conv_blocks(float_model)
    if len(recorded) != len(float_blocks):
        raise RuntimeError(f"{len(recorded)} recorded blocks for a network of {len(float_blocks)}")
    example = torch.zeros(1, 3, CALIBRATION_WINDOW_FRAMES, 27, 48)
    blocks = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's notes that it moved to torchao
        for block, params in zip(float_blocks, recorded):
            prepared = _prepare(block, engine, example)
            names = set(_observers(prepared))
            if names != set(params):
                raise RuntimeError(f"the prepared block's observers {sorted(names)} are not the recorded {sorted(params)}")
            for name, (scale, zero_point, dtype, quant_min, quant_max) in params.items():
                fixed = FixedQParamsObserver(
                    scale, zero_point, dtype=getattr(torch, dtype), quant_min=quant_min, quant_max=quant_max
                )
                setattr(prepared, name, fixed)
            blocks.append(swap_concatenation(convert_fx(prepared)))
    float_model.SDDCNN = nn.ModuleList(blocks)
    return Int8TransNetV2(float_model, float_autocast=float_autocast)


def cat_sharing_qparams(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` of quantized tensors that share one scale and zero point, done on their
    int8 values; any other input goes to ``torch.cat``.

    Each dilated-convolution cell of the shot network concatenates its four branches, whose
    outputs FX quantization gives one shared range. torch's quantized ``cat`` (outside the 4D
    channels-last case) dequantizes every input to float32, concatenates and quantizes the
    result again: 40% of the int8 network's CPU time (torch profiler, one 112-frame window).
    With the ranges shared, the int8 values concatenated are the same result.
    """
    first = tensors[0]
    if not first.is_quantized or first.qscheme() != torch.per_tensor_affine:
        return torch.cat(tensors, dim)
    scale, zero_point = first.q_scale(), first.q_zero_point()
    if any(t.qscheme() != torch.per_tensor_affine or t.q_scale() != scale or t.q_zero_point() != zero_point for t in tensors):
        return torch.cat(tensors, dim)
    values = torch.cat([t.int_repr() for t in tensors], dim)
    return torch._make_per_tensor_quantized_tensor(values, scale, zero_point)


def swap_concatenation(
    block: torch.fx.GraphModule, old: Callable[..., torch.Tensor] = torch.cat, new: Callable[..., torch.Tensor] = cat_sharing_qparams
) -> torch.fx.GraphModule:
    """``block`` with each call of ``old`` in its graph made a call of ``new``: by default each
    ``torch.cat`` done by :func:`cat_sharing_qparams` (and back, the other way round)."""
    for node in block.graph.nodes:
        if node.op == "call_function" and node.target is old:
            node.target = new
    block.recompile()
    return block


class Int8TransNetV2(nn.Module):
    """TransNetV2 with int8 convolution blocks; its float parts run in float32 under any
    autocast. bf16 there bought nothing measurable (0.20-0.23 s per 200-frame window either
    way, 2-core AMX CPU), and float32 gives the same outputs on CPUs with and without bf16.

    With ``float_autocast`` the float parts run under the caller's autocast instead: the
    ``int8+bf16`` candidate that ``inference.precision: auto`` measures on each machine
    (:mod:`pipeline.models.calibration`)."""

    def __init__(self, network: nn.Module, *, float_autocast: bool = False) -> None:
        super().__init__()
        self.network = network
        self.float_autocast = float_autocast

    def forward(self, frames: torch.Tensor) -> Any:
        if self.float_autocast:
            return self.network(frames)
        with torch.autocast("cpu", enabled=False):
            return self.network(frames)


def quantize_or_keep(model: nn.Module, *, float_autocast: bool = False) -> tuple[nn.Module, str | None]:
    """The int8 network and None; or, where it cannot be built, ``model`` itself and why not
    (for the caller to log: it knows whether int8 was asked for)."""
    try:
        return quantize_transnetv2(model, float_autocast=float_autocast), None
    except (RuntimeError, ImportError, AttributeError, TypeError) as exc:
        return model, f"the int8 network could not be built: {str(exc).splitlines()[0][:200]}"


def calibration_frames() -> np.ndarray:
    """uint8 ``[N, 27, 48, 3]``: the first frames of each built-in sample clip as the shot
    network sees them (cuts, dissolves and fades among them). Rendered, so always at hand."""
    from pipeline.media.decode import to_shot_input
    from pipeline.synthetic import SAMPLE_CORPUS, render_clip

    frames = [
        np.stack(list(itertools.islice(render_clip(spec), CALIBRATION_FRAMES_PER_CLIP)))
        for spec in SAMPLE_CORPUS.values()
    ]
    return np.concatenate([to_shot_input(torch.from_numpy(f)).numpy() for f in frames])


def format_recorded(recorded: list[dict[str, ObserverParams]], weights_digest: str) -> str:
    """The ranges as the text of ``transnetv2_int8.json``: one observer a line, blocks in
    order, observers by number (so a new calibration reads as a small diff)."""
    blocks = []
    for params in recorded:
        ordered = sorted(params.items(), key=lambda item: int(item[0].removeprefix(_OBSERVER_PREFIX)))
        lines = [f"    {json.dumps(name)}: {json.dumps(list(value))}" for name, value in ordered]
        blocks.append("  {\n" + ",\n".join(lines) + "\n  }")
    return (
        "{\n"
        f' "weights_digest": {json.dumps(weights_digest)},\n'
        ' "observers": [\n' + ",\n".join(blocks) + "\n ]\n}\n"
    )


def write_recorded(recorded: list[dict[str, ObserverParams]], path: Path) -> None:
    """Write the ranges, with the digest of the weights they were measured with, as
    ``transnetv2_int8.json`` at ``path``."""
    from pipeline.models.weights import TRANSNETV2_WEIGHTS, recorded_digest

    path.write_text(format_recorded(recorded, recorded_digest(TRANSNETV2_WEIGHTS)))


def main() -> None:
    """Calibrate the int8 blocks on the sample corpus and write ``transnetv2_int8.json``."""
    from pipeline.models.transnetv2 import load_transnetv2

    torch.manual_seed(0)
    recorded = calibrate(load_transnetv2("cpu"), calibration_frames())
    target = Path(__file__).with_name(RECORDED_RANGES_FILE)
    write_recorded(recorded, target)
    print(f"wrote {sum(len(p) for p in recorded)} observer ranges of {len(recorded)} blocks to {target}")


if __name__ == "__main__":
    main()


__all__ = [
    "CALIBRATION_FRAMES_PER_CLIP",
    "CALIBRATION_WINDOW_FRAMES",
    "QUANTIZED_ENGINES",
    "Int8TransNetV2",
    "ObserverParams",
    "RECORDED_RANGES_FILE",
    "RecordedRanges",
    "calibrate",
    "calibration_frames",
    "format_recorded",
    "int8_available",
    "quantize_or_keep",
    "quantize_transnetv2",
    "quantized_engine",
    "parse_recorded",
    "recorded_ranges",
    "write_recorded",
]
