"""A short check of vindex on a CUDA machine: shots as on the CPU, and where the time goes.

    python benchmarks/gpu_check.py [--force-cpu] [--clip-seconds 60] [--copies 8]
    (benchmarks/gpu_check.sh wraps it in a time limit)

Installs nothing: run it in the repository's environment (``pip install -e '.[test]'`` with a
CUDA build of torch). Where torch sees no CUDA device it says so and exits 0 without
measuring. In order, each step timed:

1. shots: ``vindex run`` on a small generated hard set (2 clips of 8 shots) with
   ``inference.device=cpu``, then on the GPU (default precision: fp16 autocast); every
   video must get the same number of shots, each starting within one frame of the CPU's;
2. networks alone: frames/s of TransNetV2 and EfficientNet-Lite0 at the pipeline's default
   precision for the device (fp16 autocast on CUDA) and batch sizes, inputs already in memory;
3. decode alone: decord on every CPU of the machine (one process per clip, as many at once
   as there are cores), at the pipeline's decode size;
4. end to end: ``vindex run`` with ``inference.device=cuda`` on the same clips; frames/s over
   the wall time (interpreter, imports and Ray start-up included) and the run's own (its
   summary line: from listing to the last commit, Ray start-up included, imports not), and
   end to end / decode alone.

``--force-cpu`` runs every step on the CPU instead (step 1 then compares fp32 with the CPU's
default precision), at a small size unless sizes are given: a smoke test of the script on a
machine without a GPU. Exit status 1 when the shots differ.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from benchmarks.measure import (
    CACHE,
    QUICK_CLIPS,
    QUICK_SHOTS,
    decode_only,
    hard_corpus,
    machine_header,
    run_vindex,
    vindex_run_args,
)
from benchmarks.small_corpus import CorpusClip, encode_clip

from pipeline.config import Config, load_config
from pipeline.models.spec import SHOT_CONTEXT_FRAMES

#: Shot starts of the GPU run may differ from the CPU run's by this many frames (fp16 moves a
#: probability peak across a frame at most at a gradual transition's flat top).
SHOT_TOLERANCE_FRAMES = 1
#: The end-to-end corpus: one generated 480p clip, hard-linked --copies times (each copy is a
#: video of its own to vindex), so generating it takes seconds and decoding has a clip per core.
E2E_SIZE = (854, 480)
DEFAULT_CLIP_SECONDS, DEFAULT_COPIES = 60.0, 8
#: --force-cpu without sizes: small enough for a 2-core machine in about a minute.
FORCE_CPU_CLIP_SECONDS, FORCE_CPU_COPIES = 10.0, 2
#: Network timing: a segment of this many frames (the default decode.segment_frames), repeated;
#: with --force-cpu a fifth of it once (the CPU smoke test took 150 s for the whole segment on
#: a busy 2-core machine).
NETWORK_FRAMES_GPU, NETWORK_REPEATS_GPU = 1500, 5
NETWORK_FRAMES_CPU, NETWORK_REPEATS_CPU = 300, 1

T = TypeVar("T")


def step(title: str, fn: Callable[[], T]) -> T:
    """Run one step, printing its title and how long it took."""
    print(f"\n== {title}", flush=True)
    started = time.perf_counter()
    result = fn()
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
    return result


def vindex_run(folder: Path, index: Path, settings: list[str], config_path: str | None) -> tuple[int, float, float]:
    """(frames, wall seconds, the run's own frames/s) of `vindex run --full` into ``index``."""
    run = run_vindex(*vindex_run_args(folder, index, settings, config_path), "--full").check()
    frames, run_fps = run.run_summary()
    return frames, run.seconds, run_fps


def shot_starts(index: Path) -> dict[str, list[int]]:
    """Each video's shot start frames, by file name."""
    from pipeline.index.store import Index

    store = Index(str(index))
    names = {row["video_id"]: Path(row["uri"]).name for row in store.read("videos", columns=["video_id", "uri"]).to_pylist()}
    starts: dict[str, list[int]] = {name: [] for name in names.values()}
    for row in store.read("shots", columns=["video_id", "start_frame"]).to_pylist():
        starts[names[row["video_id"]]].append(row["start_frame"])
    return {name: sorted(frames) for name, frames in starts.items()}


def check_shots(device_settings: list[str], reference_settings: list[str], config_path: str | None) -> bool:
    """Shots on the device against the CPU's, on the quick hard set; prints each video's verdict."""
    folder, _ = hard_corpus(QUICK_CLIPS, QUICK_SHOTS)
    with tempfile.TemporaryDirectory(prefix="vindex-gpu-check-") as tmp:
        vindex_run(folder, Path(tmp, "cpu"), reference_settings, config_path)
        vindex_run(folder, Path(tmp, "device"), device_settings, config_path)
        cpu, device = shot_starts(Path(tmp, "cpu")), shot_starts(Path(tmp, "device"))
    same = True
    for name in sorted(cpu):
        a, b = cpu[name], device.get(name, [])
        ok = len(a) == len(b) and all(abs(x - y) <= SHOT_TOLERANCE_FRAMES for x, y in zip(a, b))
        worst = max((abs(x - y) for x, y in zip(a, b)), default=0)
        print(f"   {name}: {len(a)} shots on the CPU, {len(b)} on the device, largest start difference {worst} frames: "
              f"{'same' if ok else 'DIFFERENT'}")  # fmt: skip
        same &= ok
    print(f"   shots {'MATCH' if same else 'DIFFER'} (within {SHOT_TOLERANCE_FRAMES} frame)")
    return same


def network_rates(config: Config, device_name: str, num_frames: int, repeats: int) -> None:
    """Frames/s of each network alone at the pipeline's precision and batch sizes for the device."""
    import torch

    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import (
        embed_frames,
        pick_device,
        predict_transitions,
        prepare_for_inference,
        uses_reduced_precision,
    )
    from pipeline.models.transnetv2 import load_transnetv2

    device = pick_device(device_name)
    precision = config.inference.precision
    reduced = uses_reduced_precision(device, precision)
    label = ("fp16" if device.type == "cuda" else "bf16") if reduced else "fp32"
    step = config.shots.step
    num_frames = max(step, num_frames // step * step)  # the shot network's windows tile the segment
    rng = np.random.default_rng(0)
    padded = rng.integers(0, 256, (num_frames + 2 * SHOT_CONTEXT_FRAMES, 27, 48, 3), np.uint8)
    sampled = rng.integers(0, 256, (num_frames // config.embed.stride_frames, config.decode.height, config.decode.width, 3), np.uint8)
    shot_model = prepare_for_inference(load_transnetv2(device), device, precision)
    embed_model = load_efficientnet_lite0(device)

    def shots() -> None:
        predict_transitions(shot_model, padded, window=config.shots.window_frames,
                            batch_windows=config.inference.shot_batch_windows, device=device, precision=precision)  # fmt: skip

    def embeddings() -> None:
        embed_frames(embed_model, sampled, batch_size=config.inference.embed_batch_frames, device=device, precision=precision)

    stride = config.embed.stride_frames
    for name, fn, frames in (("TransNetV2", shots, num_frames), ("EfficientNet-Lite0", embeddings, len(sampled))):
        fn()  # warm-up: cuDNN's algorithm search, lazy CUDA initialisation
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            fn()  # returns numpy arrays: the device's work is done when it returns
        seconds = time.perf_counter() - started
        rate = repeats * frames / seconds
        # The embedding network sees every stride-th frame: its rate in video frames is stride times more.
        video_rate = rate if fn is shots else rate * stride
        print(f"   {name:<19} {label} on {device.type}: {rate:>9.0f} frames/s, {video_rate:>9.0f} video frames/s "
              f"({frames} frames per call, {repeats} calls)")  # fmt: skip
    print(f"   (EfficientNet-Lite0 sees every {stride}th frame, at {config.decode.width}x{config.decode.height})")


def e2e_corpus(seconds: float, copies: int) -> Path:
    """A folder of ``copies`` hard links to one generated 480p H.264 clip of ``seconds``, cached."""
    folder = CACHE / f"gpu_check_{seconds:g}s_x{copies}"
    source = folder / "source" / "clip.mp4"
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        encode_clip(source, CorpusClip("clip", E2E_SIZE[0], E2E_SIZE[1], "h264", seconds, seed=11))
    corpus = folder / "corpus"
    corpus.mkdir(exist_ok=True)
    for i in range(copies):
        link = corpus / f"copy{i:02d}.mp4"
        if not link.exists():
            os.link(source, link)
    return corpus


def _decode_one(path: str, config_path: str | None) -> int:
    return decode_only([Path(path)], load_config(config_path))


def decode_rate(corpus: Path, config_path: str | None) -> float:
    """Frames/s of decord on every core: one process per clip, as many at once as there are cores."""
    paths = sorted(map(str, corpus.glob("*.mp4")))
    config = load_config(config_path)
    workers = max(1, min(len(paths), (os.cpu_count() or 1) // max(1, config.decode.threads)))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_decode_one, paths[:workers], [config_path] * workers))  # warm-up: imports, page cache
        started = time.perf_counter()
        frames = sum(pool.map(_decode_one, paths, [config_path] * len(paths)))
        seconds = time.perf_counter() - started
    rate = frames / seconds
    print(f"   decord, {workers} processes x {config.decode.threads} threads: {frames} frames at {rate:.0f} frames/s "
          f"({config.decode.width}x{config.decode.height})")  # fmt: skip
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force-cpu", action="store_true", help="run every step on the CPU (a smoke test)")
    parser.add_argument("--clip-seconds", type=float, help=f"end-to-end clip length (default {DEFAULT_CLIP_SECONDS:g})")
    parser.add_argument("--copies", type=int, help=f"copies of the clip in the end-to-end corpus (default {DEFAULT_COPIES})")
    parser.add_argument("--config", help="YAML config for vindex")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import torch

    print(machine_header(), flush=True)
    if not args.force_cpu and not torch.cuda.is_available():
        print(f"no CUDA: torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) sees no GPU; "
              "nothing checked. Install a CUDA build of torch on a GPU machine, or pass --force-cpu for a smoke test.")  # fmt: skip
        return 0
    device = "cpu" if args.force_cpu else "cuda"
    small = args.force_cpu
    seconds = args.clip_seconds or (FORCE_CPU_CLIP_SECONDS if small else DEFAULT_CLIP_SECONDS)
    copies = args.copies or (FORCE_CPU_COPIES if small else DEFAULT_COPIES)
    config = load_config(args.config)
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {os.cpu_count()} CPUs")
        reference = ["inference.device=cpu"]
        on_device = ["inference.device=cuda"]
    else:
        print(f"--force-cpu: every step on the CPU, {os.cpu_count()} CPUs; step 1 compares fp32 with the CPU's default precision")
        reference = ["inference.device=cpu", "inference.precision=fp32"]
        on_device = ["inference.device=cpu"]
    same = step("1. shots: device against CPU, quick hard set", lambda: check_shots(on_device, reference, args.config))
    frames, repeats = (NETWORK_FRAMES_CPU, NETWORK_REPEATS_CPU) if small else (NETWORK_FRAMES_GPU, NETWORK_REPEATS_GPU)
    step("2. networks alone", lambda: network_rates(config, device, frames, repeats))
    corpus = step(f"generating the end-to-end corpus ({copies} x {seconds:g} s at 480p)", lambda: e2e_corpus(seconds, copies))
    decode_fps = step("3. decode alone, every CPU", lambda: decode_rate(corpus, args.config))

    def end_to_end() -> None:
        with tempfile.TemporaryDirectory(prefix="vindex-gpu-check-") as tmp:
            frames, wall_s, run_fps = vindex_run(corpus, Path(tmp, "idx"), on_device, args.config)
        wall_fps = frames / wall_s
        print(f"   vindex run ({device}): {frames} frames in {wall_s:.1f} s: {wall_fps:.0f} frames/s over the wall time, "
              f"{run_fps:.0f} frames/s the run's own (its summary line: listing to last commit, Ray start-up included)")  # fmt: skip
        print(f"   end to end / decode alone: {wall_fps / decode_fps:.2f} (wall), {run_fps / decode_fps:.2f} (run's own)")

    step("4. end to end", end_to_end)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
