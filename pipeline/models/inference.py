"""Batched inference for the two networks: device choice, precision, windowing.

Nothing here knows about Ray; the model stage calls these once per segment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from pipeline.models.spec import SHOT_CONTEXT_FRAMES

log = logging.getLogger(__name__)

#: The shot network with int8 convolution blocks and its other layers under bf16 autocast: a
#: precision that only ``inference.precision: auto`` resolves to, where measuring this CPU
#: found it the fastest within tolerance (:mod:`pipeline.models.calibration`).
INT8_WITH_BF16 = "int8+bf16"
#: The settings under which the shot network's convolution blocks run in int8 (on a CPU).
_INT8_PRECISIONS = ("int8", "auto", INT8_WITH_BF16)


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when asked for (or available under "auto"), else CPU."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            log.warning("CUDA requested but not available; using the CPU")
            return torch.device("cpu")
        return torch.device("cuda")
    return torch.device("cpu")


#: CPU flags of native bf16 dot products. oneDNN also calls bf16 "supported" on AVX-512 CPUs
#: without them, where it emulates bf16: there the embedding network ran 1.4x slower under
#: bf16 autocast than in float32, the shot network 1.9x (2-CPU AVX-512 VNNI Xeon,
#: benchmarks/calibration.py --all, docs/precision.md).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """True where the CPU runs bf16 matmuls natively (AMX / AVX512-BF16) and oneDNN may use
    them (no ``ONEDNN_MAX_CPU_ISA`` cap below them). Asked once per process."""
    from pipeline.models.machine import cpu_model_and_flags

    try:
        supported = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    return supported and any(flag in cpu_model_and_flags()[1] for flag in NATIVE_BF16_FLAGS)


def uses_reduced_precision(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` resolves to bf16/fp16 autocast on ``device`` (for the float parts
    of the networks; see :func:`uses_int8` for the shot network's convolutions)."""
    if precision == "fp32":
        return False
    return device.type == "cuda" or precision in ("bf16", INT8_WITH_BF16) or cpu_has_bf16()


def uses_int8(device: torch.device, precision: str) -> bool:
    """Whether the shot network's convolution blocks run in int8: on a CPU, for "int8",
    "auto" (and "int8+bf16"), where this torch build has quantized kernels
    (:mod:`pipeline.models.quantized`)."""
    from pipeline.models.quantized import int8_available

    return device.type == "cpu" and precision in _INT8_PRECISIONS and int8_available()


def prepare_for_inference(
    model: torch.nn.Module,
    device: torch.device,
    precision: str,
    *,
    setting: str | None = None,
    embed_precision: str | None = None,
) -> torch.nn.Module:
    """The shot network as ``precision`` runs it on ``device``.

    int8 convolution blocks where :func:`uses_int8` (measured on a 2-core AMX CPU: about 2x
    the bf16 network, the same F1). Otherwise channels-last memory for reduced precision,
    where oneDNN/cuDNN run 3D convs fastest (measured on an AMX CPU: TransNetV2 with bf16
    autocast runs 1.3x faster channels-last).

    Logs what it chose: a warning where "int8" was asked for and the network stays float (or
    where building the int8 network failed), saying what runs instead and why; under "auto",
    an info line. Where "auto" was resolved by measuring this CPU, ``precision`` is what it
    resolved to for this network, ``setting`` the configured one the messages name, and
    ``embed_precision`` what it resolved to for the embedding network.
    """
    if not any(p.dim() == 5 for p in model.parameters()):  # no 3D convolutions: as it is
        return model
    setting = setting or precision
    embed_precision = embed_precision or precision
    no_int8: str | None = None  # why the convolution blocks stay float, where int8 was an option
    build_failed = False
    if precision in _INT8_PRECISIONS:
        if device.type != "cpu":
            no_int8 = f"the int8 kernels run on CPUs only, and this network runs on {device.type}"
        else:
            from pipeline.models.quantized import int8_available, quantize_or_keep

            if not int8_available():
                no_int8 = "this torch build has no quantized CPU kernels"
            else:
                float_autocast = precision == INT8_WITH_BF16
                quantized, no_int8 = quantize_or_keep(model, float_autocast=float_autocast)
                if no_int8 is None:
                    log.info(
                        "inference.precision %s: the shot network's convolution blocks run in int8 on the CPU "
                        "(its other layers in %s), the embedding network in %s",
                        setting,
                        "bfloat16 autocast" if float_autocast else "float32",
                        _float_precision(device, embed_precision),
                    )
                    return quantized
                build_failed = True
    used = _float_precision(device, precision)
    if no_int8 is not None and (precision in ("int8", INT8_WITH_BF16) or build_failed):
        log.warning(
            "inference.precision is %s, but the shot network runs in %s instead of int8 on %s: %s",
            setting,
            used,
            device.type,
            no_int8,
        )
    elif precision == "auto":
        reason = f" (no int8: {no_int8})" if no_int8 is not None and device.type == "cpu" else ""
        log.info("inference.precision auto: both networks run in %s on %s%s", used, device.type, reason)
    if uses_reduced_precision(device, precision):
        return model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    return model


def _float_precision(device: torch.device, precision: str) -> str:
    """What the float layers run in under :func:`autocast_for`, in words."""
    if not uses_reduced_precision(device, precision):
        return "float32"
    if device.type == "cuda" and precision not in ("bf16", INT8_WITH_BF16):
        return "float16 autocast"
    return "bfloat16 autocast"


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """The autocast context for a precision setting ("fp32", "bf16", "int8", "auto"; and
    "int8+bf16", which "auto" may resolve to): under "int8" the float parts run as under
    "auto", under "int8+bf16" as under "bf16"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if not uses_reduced_precision(device, precision):
        return contextlib.nullcontext()
    if device.type == "cuda":
        dtype = torch.bfloat16 if precision in ("bf16", INT8_WITH_BF16) else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16)


#: Batch sizes when the configuration leaves them to the device (0): (CPU, GPU). On a CPU the
#: shot network ran fastest one window at a time (4.9-5.0 s per 1500-frame segment against
#: 6.2-6.3 s for 4 windows, and 0.7 GB less memory); a GPU wants large batches.
SHOT_BATCH_WINDOWS = (1, 8)
EMBED_BATCH_FRAMES = (16, 64)


def batch_for(configured: int, device: torch.device, defaults: tuple[int, int]) -> int:
    """``configured`` when set (> 0), else the default for the device type."""
    if configured > 0:
        return configured
    return defaults[1] if device.type == "cuda" else defaults[0]


def _windows(padded: torch.Tensor, window: int) -> Iterator[torch.Tensor]:
    """Windows of ``window`` frames one step apart; the last one only as long as what is left
    needs (see :func:`pipeline.algorithms.segments.window_middles`)."""
    step = window - 2 * SHOT_CONTEXT_FRAMES
    middle = len(padded) - 2 * SHOT_CONTEXT_FRAMES
    for start in range(0, middle, step):
        yield padded[start : start + min(step, middle - start) + 2 * SHOT_CONTEXT_FRAMES]


@torch.inference_mode()
def predict_transitions(
    model: torch.nn.Module,
    padded_frames: np.ndarray,
    *,
    window: int,
    batch_windows: int,
    device: torch.device,
    precision: str = "fp32",
    before_each_pass: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame transition probabilities (single-frame head, many-hot head).

    ``padded_frames`` is the padded sequence built by :func:`pipeline.algorithms.segments.shot_input_indices`:
    ``context`` frames, whole steps of ``window - 2 * context`` frames and a shorter rest,
    then ``context`` frames. Windows of one length are batched together. Returns one
    probability per frame of the unpadded middle. ``before_each_pass`` is called before each
    forward pass (a caller sets its torch threads there).
    """
    frames = torch.from_numpy(np.ascontiguousarray(padded_frames))
    if len(frames) <= 2 * SHOT_CONTEXT_FRAMES:
        raise ValueError(f"padded input of {len(frames)} frames holds no frame beyond its context")
    single_out, many_out = [], []
    windows = list(_windows(frames, window))
    batch_windows = batch_for(batch_windows, device, SHOT_BATCH_WINDOWS)
    i = 0
    while i < len(windows):
        length = len(windows[i])
        group = [w for w in windows[i : i + batch_windows] if len(w) == length]
        i += len(group)
        batch = torch.stack(group)
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        if before_each_pass is not None:
            before_each_pass()
        with autocast_for(device, precision):
            single, many = model(batch)
        keep = slice(SHOT_CONTEXT_FRAMES, length - SHOT_CONTEXT_FRAMES)
        single_out.append(torch.sigmoid(single[:, keep].float()).reshape(-1).cpu())
        many_out.append(torch.sigmoid(many[:, keep].float()).reshape(-1).cpu())
    return torch.cat(single_out).numpy(), torch.cat(many_out).numpy()


@torch.inference_mode()
def embed_frames(
    model: torch.nn.Module,
    frames: np.ndarray,
    *,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    before_each_pass: Callable[[], None] | None = None,
) -> np.ndarray:
    """L2-normalised float32 embeddings [N, D] of uint8 RGB frames [N, H, W, 3];
    ``before_each_pass`` as in :func:`predict_transitions`."""
    from pipeline.models.efficientnet_lite import preprocess
    from pipeline.models.spec import EMBEDDING_DIM

    if len(frames) == 0:
        return np.zeros((0, EMBEDDING_DIM), np.float32)
    out = []
    batch_size = batch_for(batch_size, device, EMBED_BATCH_FRAMES)
    for i in range(0, len(frames), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size]))
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        if before_each_pass is not None:
            before_each_pass()
        with autocast_for(device, precision):
            features = model.features(preprocess(batch))  # type: ignore[operator]
        out.append(torch.nn.functional.normalize(features.float(), dim=1).cpu())
    return torch.cat(out).numpy().astype(np.float32, copy=False)
