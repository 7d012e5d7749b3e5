"""int8 inference of the shot network's 3D-convolution trunk on x86 CPUs.

TransNetV2 spends nearly all its CPU time in the three stacked blocks of dilated Conv3d
(``TransNetV2.SDDCNN``); the rest (colour histograms, frame similarities, two Linear
layers) is small. Those blocks are quantized with PyTorch's FX graph-mode static
quantization (the ``x86`` backend: per-channel int8 weights, histogram-calibrated uint8
activations), which runs Conv3d, BatchNorm3d+ReLU, add and average pooling as int8 kernels
(oneDNN / fbgemm). Everything else keeps its float path.

Calibration is deterministic: frames of the built-in sample corpus
(:data:`pipeline.sample.SAMPLE_CORPUS`), rendered in process and downscaled as the decoder
does, so every worker builds the same quantized network.
"""

from __future__ import annotations

import copy
import itertools
import logging

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

#: Quantized-kernel backends tried in order; "x86" picks oneDNN or fbgemm per op.
QUANTIZED_ENGINES = ("x86", "fbgemm")
#: Frames of each sample clip used to calibrate activation ranges.
CALIBRATION_FRAMES_PER_CLIP = 120
#: Frames per calibration forward pass (the pipeline's default window).
CALIBRATION_WINDOW_FRAMES = 200


def quantized_engine() -> str | None:
    """The first of :data:`QUANTIZED_ENGINES` this torch build supports, else None."""
    supported = torch.backends.quantized.supported_engines
    return next((engine for engine in QUANTIZED_ENGINES if engine in supported), None)


def calibration_frames() -> np.ndarray:
    """uint8 ``[N, 27, 48, 3]``: the first frames of each built-in sample clip, as the shot
    network sees them (cuts, dissolves and fades among them)."""
    from pipeline.media.decode import to_shot_input
    from pipeline.sample import SAMPLE_CORPUS, render_clip

    frames = [
        np.stack(list(itertools.islice(render_clip(spec), CALIBRATION_FRAMES_PER_CLIP)))
        for spec in SAMPLE_CORPUS.values()
    ]
    return np.concatenate([to_shot_input(torch.from_numpy(f)).numpy() for f in frames])


def quantize_shot_network(model: nn.Module, calibration: np.ndarray | None = None) -> nn.Module:
    """A copy of a float TransNetV2 whose convolution blocks run in int8.

    ``calibration``: uint8 ``[N, 27, 48, 3]`` frames (default :func:`calibration_frames`).
    Where this torch build has no quantized CPU kernels, logs a warning and returns ``model``
    itself, unchanged (the float path).
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    engine = quantized_engine()
    if engine is None:
        log.warning("no quantized CPU kernels in this torch build; the shot network stays float")
        return model
    torch.backends.quantized.engine = engine
    frames = calibration_frames() if calibration is None else calibration
    float_model = copy.deepcopy(model).float().eval()
    float_model = float_model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    blocks = float_model.SDDCNN
    qconfig = get_default_qconfig_mapping(engine)
    with torch.no_grad():
        # Each block's observers see the activations the float blocks before it produce.
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0).float().div_(255.0)
        prepared = []
        for block in blocks:
            observed = prepare_fx(copy.deepcopy(block), qconfig, (x[:, :, :CALIBRATION_WINDOW_FRAMES],))
            for start in range(0, x.shape[2], CALIBRATION_WINDOW_FRAMES):
                observed(x[:, :, start : start + CALIBRATION_WINDOW_FRAMES])
            x = block(x)
            prepared.append(observed)
    float_model.SDDCNN = nn.ModuleList([convert_fx(p) for p in prepared])
    return float_model
