"""Opening one segment: CPU seconds of ``open_segment`` with and without the span planned.

    python benchmarks/segment_open.py [--frames 15000] [--repeats 5]

A generated clip of ``--frames`` frames (160x96, 25 fps, a keyframe every 30 frames, so its
MP4 index holds one entry a frame) is probed once; then each middle segment of 1,500 frames
(the default ``decode.segment_frames``) is opened and closed ``--repeats`` times by
:func:`pipeline.media.decode.open_segment`: its span cut to a local file and decord opened on
it, no frame decoded. "found" reads the container's index through to find the span (a
segment with no plan, as every segment was opened before planning recorded spans);
"planned" is given the span planning found. Printed: CPU seconds per open (process time, all
threads), the median over the repeats, so that a shared machine disturbs it less than wall time.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.measure import machine_header
from pipeline.algorithms.segments import frames_to_decode, plan_segments
from pipeline.execution.stages import planned_span
from pipeline.media.decode import open_segment
from pipeline.media.probe import probe
from pipeline.media.spans import PlannedSpan
from testkit import synthetic

SEGMENT_FRAMES = 1500


def cpu_per_open(path: Path, frames: tuple[int, int | None], planned: PlannedSpan | None, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        with open_segment(str(path), None, frames=frames, planned=planned, size=(256, 144), threads=1) as opened:
            assert opened.reader is not None and opened.reader.media.kind == "span"
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=15000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        shots = [250] * (args.frames // 250)
        synthetic.write_clip(path, synthetic.simple_spec(shots, "cut", width=160, height=96), gop=30)
        info = probe(str(path))
        segments = plan_segments(info.num_frames, SEGMENT_FRAMES)[1:-1]
        found, planned = [], []
        for segment in segments:
            frames = frames_to_decode(segment)
            found.append(cpu_per_open(path, frames, None, args.repeats))
            planned.append(cpu_per_open(path, frames, planned_span(info.span_index, segment), args.repeats))
    print(machine_header())
    print(f"{info.num_frames} frames, {len(segments)} middle segments of {SEGMENT_FRAMES}, {args.repeats} opens each")
    print(f"{'span':<10}{'CPU ms per open (mean of segments)':>36}")
    print(f"{'found':<10}{1000 * statistics.mean(found):>36.1f}")
    print(f"{'planned':<10}{1000 * statistics.mean(planned):>36.1f}")


if __name__ == "__main__":
    main()
