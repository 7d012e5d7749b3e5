"""What one `vindex run` driver process costs per frame: the ceiling one driver puts on a cluster.

    python benchmarks/driver.py [--minutes 4] [--no-real]

The driver lists, diffs against the index, runs Ray Data's streaming executor, receives each
finished video's rows (stitched on the workers) and commits them. Its own CPU time (``/proc/self/stat``: the driver process
only, not Ray's processes) is measured around ``run_index`` in a fresh process for each
corpus, twice: on the corpus's first video alone, and on the whole corpus. The difference
divided by the difference in frames is the driver's cost per added frame, start-up (Ray,
imports, the first commit) taken out; its inverse is the frames/s one driver can feed,
however many nodes decode and run the networks. Peak RSS is the driver process's
(``ru_maxrss``): bounded by streaming, it should not grow with a video's length.

The driver's CPU is split into its main thread (vindex's own work: listing, receiving rows,
committing) and its other threads (Ray Data's executor loop, Ray's client threads). Ray
Data's loop wakes several times a second whatever the throughput, so on a slow cluster (this
machine: 2 CPUs) part of "per added frame" is per second of run, not per frame; a faster
cluster spends less of it per frame. ``wall`` says how long each run was.

Corpora:

* ``real``: the videos of ``../shared/scenes-dev`` (real camera and film footage, 180p-720p;
  read in place, never copied), where that folder exists; skipped, saying so, where not;
* ``long``: one generated 480p clip of ``--minutes`` (cached), split into segments like
  any long video; ``1 video`` is then the same clip cut to its first segment.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measure import ROOT, long_clip, machine_header, run_timed

SCENES_DEV = ROOT.parent / "shared" / "scenes-dev" / "videos"

#: Runs in a fresh process: index SOURCE into a new index, print the driver's own CPU seconds,
#: peak RSS and the frames it took in, as JSON.
_RUN = """
import json, os, resource, sys
from pipeline.config import load_config
from pipeline.execution.runner import run_index

def cpu_s(stat="/proc/self/stat"):
    with open(stat) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

source, index = sys.argv[1], sys.argv[2]
config = load_config(None, {"write.commit_every_videos": 16})
summary = run_index(source, index, config, show_progress=False)
print(json.dumps({
    "cpu_s": cpu_s(),
    "main_cpu_s": cpu_s(f"/proc/self/task/{os.getpid()}/stat"),  # the main thread's own
    "frames": summary.counts["frames"],
    "ok": summary.counts["ok"],
    "failed": summary.counts["failed"],
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "wall_s": summary.seconds,
}))
"""


#: Runs in a fresh process: the driver's CPU while Ray Data's executor waits IDLE_S seconds on
#: one task that only sleeps (the same Ray and Ray Data settings as a run): what its loop costs
#: per second of run, whatever the throughput.
IDLE_S = 20
_IDLE = """
import json, os, sys, time
from pipeline.config import load_config
from pipeline.execution.ray_runtime import configure_data, init_ray

def cpu_s():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

config = load_config(None, {})
init_ray(config)
configure_data(config)
import ray.data

seconds = float(sys.argv[1])

def wait(batch):
    time.sleep(seconds)
    return batch

dataset = ray.data.from_items([{"x": 0}]).map_batches(wait, batch_size=1)
start, cpu = time.monotonic(), cpu_s()
list(dataset.iter_batches(batch_size=None))
print(json.dumps({"cpu_s": cpu_s() - cpu, "wall_s": time.monotonic() - start}))
"""


def idle_cpu_per_s() -> float:
    """The driver's CPU per second of run spent by Ray Data's executor with nothing to do."""
    run = run_timed([sys.executable, "-c", _IDLE, str(IDLE_S)], cwd=ROOT).check()
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return float(out["cpu_s"]) / float(out["wall_s"])


@dataclass(frozen=True)
class Driver:
    cpu_s: float
    main_cpu_s: float
    frames: int
    videos: int
    rss_mb: float
    wall_s: float


def run_driver(source: Path) -> Driver:
    """One `vindex run` of ``source`` in a fresh process: the driver's own costs."""
    with tempfile.TemporaryDirectory(prefix="vindex-driver-") as work:
        run = run_timed([sys.executable, "-c", _RUN, str(source), os.path.join(work, "index")], cwd=ROOT).check()
        out = json.loads(run.stdout.strip().splitlines()[-1])
        if out["failed"]:
            raise SystemExit(f"{out['failed']} videos of {source} failed: the figures would not be comparable")
        return Driver(out["cpu_s"], out["main_cpu_s"], out["frames"], out["ok"], out["rss_mb"], out["wall_s"])


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


def row(name: str, one: Driver, many: Driver, idle: float) -> list[str]:
    added_frames = many.frames - one.frames
    added_wall = many.wall_s - one.wall_s
    # The CPU the added frames cost beyond the executor's per-second loop, and the frames/s at
    # which the driver's one core is full: idle + net * frames/s = 1.
    net_us = (many.cpu_s - one.cpu_s - idle * added_wall) / added_frames * 1e6 if added_frames > 0 else float("nan")
    at_full = (1 - idle) / net_us * 1e6 if net_us > 0 else float("inf")
    per_frame_us = (many.cpu_s - one.cpu_s) / added_frames * 1e6 if added_frames > 0 else float("nan")
    main_us = (many.main_cpu_s - one.main_cpu_s) / added_frames * 1e6 if added_frames > 0 else float("nan")
    ceiling = 1e6 / per_frame_us if per_frame_us > 0 else float("inf")
    return [
        name,
        f"{one.videos} / {many.videos}",
        f"{one.frames:,} / {many.frames:,}",
        f"{one.cpu_s:.1f} / {many.cpu_s:.1f}",
        f"{per_frame_us:,.0f}",
        f"{main_us:,.0f} / {per_frame_us - main_us:,.0f}",
        f"{ceiling:,.0f}",
        f"{net_us:,.0f}",
        f"{at_full:,.0f}",
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
    idle = idle_cpu_per_s()
    print(f"Ray Data's executor with nothing to do: {idle * 1000:.1f} ms of driver CPU per second of run ({IDLE_S} s)")
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
            rows.append(row(f"real: {SCENES_DEV.parent.name}", one, many, idle))
        folder = long_clip(args.minutes)
        work = Path(scratch) / "long"
        work.mkdir()
        from pipeline.config import Config

        one = run_driver(first_segment(folder / "long.mp4", work, Config().decode.segment_frames))
        many = run_driver(folder)
        rows.append(row(f"long: {args.minutes:g} min 480p, generated", one, many, idle))
    header = [
        "corpus", "videos (1 / all)", "frames (1 / all)", "driver CPU s (1 / all)", "driver CPU µs per added frame",
        "of which main thread / other threads", "ceiling frames/s per driver",
        "net of the idle loop µs per added frame", "frames/s at a full driver core", "driver peak RSS MB (1 / all)", "run wall s (1 / all)",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")
    print(
        "\nDriver CPU: utime + stime of the process that calls run_index (Ray's own processes excluded), from\n"
        "/proc/self/stat at the end of the run; per added frame = (all - 1) / (frames all - frames 1); the\n"
        "ceiling is its inverse. Net of the idle loop = (CPU all - CPU 1 - idle * (wall all - wall 1)) / added\n"
        "frames; a full core = (1 - idle) / net: the frames/s one driver feeds before its own core is the limit."
    )


if __name__ == "__main__":
    main()
