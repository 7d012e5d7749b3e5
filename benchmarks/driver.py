"""What one `vindex run` driver process costs per frame: the ceiling one driver puts on a cluster.

    python benchmarks/driver.py [--minutes 4] [--no-real]

The driver lists, plans, receives every segment's outputs from Ray, assembles and stitches
each video and commits its rows. Its own CPU time (``/proc/self/stat``: the driver process
only, not Ray's processes) is measured around ``run_index`` in a fresh process for each
corpus, twice: on the corpus's first video alone, and on the whole corpus. The difference
divided by the difference in frames is the driver's cost per added frame, start-up (Ray,
imports, the first commit) taken out; its inverse is the frames/s one driver can feed,
however many nodes decode and run the networks. Peak RSS is the driver process's
(``ru_maxrss``): bounded by streaming, it should not grow with a video's length.

Corpora:

* ``real``: the videos of ``../shared/scenes-dev`` (real camera and film footage, 180p-720p;
  read in place, never copied), where that folder exists; skipped, saying so, where not;
* ``long``: one generated 480p clip of ``--minutes`` (cached), split into segments like
  any long video; ``1 video`` is then the same clip cut to its first segment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# benchmarks/ is on sys.path when a script here runs.
from measure import long_clip, machine_header

SCENES_DEV = ROOT.parent / "shared" / "scenes-dev" / "videos"

#: Runs in a fresh process: index SOURCE into a new index, print the driver's own CPU seconds,
#: peak RSS and the frames it took in, as JSON.
_RUN = """
import json, os, resource, sys
from pipeline.config import load_config
from pipeline.execution.runner import run_index

def cpu_s():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

source, index = sys.argv[1], sys.argv[2]
config = load_config(None, {"write.commit_every_videos": 16})
summary = run_index(source, index, config, show_progress=False)
print(json.dumps({
    "cpu_s": cpu_s(),
    "frames": summary.counts["frames"],
    "ok": summary.counts["ok"],
    "failed": summary.counts["failed"],
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "wall_s": summary.seconds,
}))
"""


@dataclass(frozen=True)
class Driver:
    cpu_s: float
    frames: int
    videos: int
    rss_mb: float
    wall_s: float


def run_driver(source: Path) -> Driver:
    """One `vindex run` of ``source`` in a fresh process: the driver's own costs."""
    with tempfile.TemporaryDirectory(prefix="vindex-driver-") as work:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
        env.pop("RAY_ADDRESS", None)
        result = subprocess.run(
            [sys.executable, "-c", _RUN, str(source), os.path.join(work, "index")],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"the run of {source} failed:\n{result.stderr[-3000:]}")
        out = json.loads(result.stdout.strip().splitlines()[-1])
        if out["failed"]:
            raise SystemExit(f"{out['failed']} videos of {source} failed: the figures would not be comparable")
        return Driver(out["cpu_s"], out["frames"], out["ok"], out["rss_mb"], out["wall_s"])


def first_video(folder: Path, work: Path) -> Path:
    """A folder holding only the first video of ``folder`` (a link to it)."""
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".mp4", ".mkv", ".webm", ".mov"))
    single = work / "one"
    single.mkdir()
    (single / videos[0].name).symlink_to(videos[0])
    return single


def first_segment(clip: Path, work: Path, frames: int) -> Path:
    """A folder holding the first ``frames`` frames of ``clip``, re-encoded."""
    import av

    single = work / "one"
    single.mkdir()
    target = single / "first.mp4"
    with av.open(str(clip)) as src, av.open(str(target), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream("libx264", rate=stream.average_rate)
        out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
        out.options = {"preset": "ultrafast", "crf": "23"}
        for i, frame in enumerate(src.decode(stream)):
            if i >= frames:
                break
            for packet in out.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in out.encode():
            dst.mux(packet)
    return single


def row(name: str, one: Driver, many: Driver) -> list[str]:
    added_frames = many.frames - one.frames
    per_frame_us = (many.cpu_s - one.cpu_s) / added_frames * 1e6 if added_frames > 0 else float("nan")
    ceiling = 1e6 / per_frame_us if per_frame_us > 0 else float("inf")
    return [
        name,
        f"{one.videos} / {many.videos}",
        f"{one.frames:,} / {many.frames:,}",
        f"{one.cpu_s:.1f} / {many.cpu_s:.1f}",
        f"{per_frame_us:,.0f}",
        f"{ceiling:,.0f}",
        f"{one.rss_mb:,.0f} / {many.rss_mb:,.0f}",
        f"{one.wall_s:.1f} / {many.wall_s:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the generated long clip (default 4)")
    parser.add_argument("--no-real", action="store_true", help="skip the real-footage corpus")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vindex-driver-bench-") as scratch:
        if args.no_real:
            print("real footage: skipped (--no-real)")
        elif not SCENES_DEV.is_dir():
            print(f"real footage: skipped ({SCENES_DEV} does not exist on this machine)")
        else:
            work = Path(scratch) / "real"
            work.mkdir()
            one = run_driver(first_video(SCENES_DEV, work))
            many = run_driver(SCENES_DEV)
            rows.append(row(f"real: {SCENES_DEV.parent.name}", one, many))
        folder = long_clip(args.minutes)
        work = Path(scratch) / "long"
        work.mkdir()
        from pipeline.config import Config

        one = run_driver(first_segment(folder / "long.mp4", work, Config().decode.segment_frames))
        many = run_driver(folder)
        rows.append(row(f"long: {args.minutes:g} min 480p, generated", one, many))
    header = [
        "corpus", "videos (1 / all)", "frames (1 / all)", "driver CPU s (1 / all)", "driver CPU µs per added frame",
        "ceiling frames/s per driver", "driver peak RSS MB (1 / all)", "run wall s (1 / all)",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print(
        "\nDriver CPU: utime + stime of the process that calls run_index (Ray's own processes excluded), from\n"
        "/proc/self/stat at the end of the run; per added frame = (all - 1) / (frames all - frames 1)."
    )


if __name__ == "__main__":
    main()
