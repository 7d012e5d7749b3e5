"""Throughput of vindex against the decode-only ceiling, with peak memory.

    python benchmarks/throughput.py [--long-minutes 10] [--config vindex.yaml]

For each corpus (the built-in sample; a generated 480p clip of --long-minutes minutes) it
measures, in one run on this machine:

* decode ceiling: decord alone reading every frame at the pipeline's decode size;
* vindex end to end: ``run_index`` on a fresh index through an embedded Ray (Ray's start-up
  is excluded and printed separately);

and prints frames per second, their ratio, and the peak resident memory of the whole
process tree (driver, Ray services and workers) during each measurement.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import synthetic
from pipeline.config import Config, load_config
from pipeline.runner import init_local_ray, run_index

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vindex" / "bench"


def tree_rss_bytes(root: int) -> int:
    """Resident memory of ``root`` and all of its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


class PeakRSS:
    """Samples the process tree's RSS in a thread; ``peak`` is the maximum seen."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))


def measure(fn: Callable[[], int]) -> tuple[int, float, int]:
    """(frames, seconds, peak RSS bytes) of ``fn``, which returns the frames it handled."""
    with PeakRSS() as rss:
        started = time.perf_counter()
        frames = fn()
        seconds = time.perf_counter() - started
    return frames, seconds, rss.peak


def decode_only(paths: list[Path], config: Config) -> int:
    """Read every frame with decord at the decode size, in the pipeline's chunk size."""
    import decord

    from pipeline.decode import DECODE_CHUNK_FRAMES

    frames = 0
    for path in paths:
        reader = decord.VideoReader(
            str(path), width=config.decode.width, height=config.decode.height, num_threads=config.decode.threads
        )
        for start in range(0, len(reader), DECODE_CHUNK_FRAMES):
            batch = reader.get_batch(list(range(start, min(start + DECODE_CHUNK_FRAMES, len(reader)))))
            frames += batch.shape[0]
    return frames


def pipeline_run(folder: Path, config: Config) -> int:
    with tempfile.TemporaryDirectory() as index:
        summary = run_index(str(folder), index, config, full=True, show_progress=False)
        if summary.counts["failed"]:
            raise RuntimeError(f"benchmark videos failed: {summary.failures}")
        return summary.counts["frames"]


def long_clip(minutes: float) -> Path:
    folder = CACHE / f"long_{minutes:g}min_480p"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "long.mp4"
    spec = synthetic.spec_for_duration(42, minutes * 60, width=854, height=480, fps=25.0)
    if not path.exists():
        started = time.perf_counter()
        tmp = folder / ".long.tmp.mp4"
        synthetic.write_clip(tmp, spec, preset="ultrafast", crf=23)
        tmp.rename(path)
        print(f"generated {path} ({spec.num_frames} frames) in {time.perf_counter() - started:.0f} s")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the generated 480p clip (0: skip)")
    parser.add_argument("--config", help="YAML config for the pipeline")
    args = parser.parse_args()
    config = load_config(args.config)

    corpora = {"sample (3 clips, 320x180)": CACHE / "sample"}
    synthetic.sample_corpus(corpora["sample (3 clips, 320x180)"])
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
        rows.append((name, p_frames, d_frames / d_seconds, p_frames / p_seconds, d_rss, p_rss))

    header = f"{'corpus':<28} {'frames':>7} {'decode fps':>10} {'vindex fps':>10} {'ratio':>6} {'decode RSS':>11} {'vindex RSS':>11}"
    print(header)
    print("-" * len(header))
    for name, frames, decode_fps, vindex_fps, d_rss, p_rss in rows:
        print(
            f"{name:<28} {frames:>7} {decode_fps:>10.0f} {vindex_fps:>10.1f} {vindex_fps / decode_fps:>6.3f} "
            f"{d_rss / 2**20:>9.0f}MB {p_rss / 2**20:>9.0f}MB"
        )
    print(f"config: precision={config.shots.precision} window={config.shots.window_frames} "
          f"decode={config.decode.width}x{config.decode.height} embed stride={config.embed.stride_frames}; "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
