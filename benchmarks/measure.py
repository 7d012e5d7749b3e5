"""Shared helpers for the benchmark scripts: the machine a figure was measured on, peak memory
of a process tree, cached clips, the decode ceiling, a whole pipeline run, a video decoded
whole, ``vindex`` and other commands timed in a child process, precision and recall of
matched events, and PySceneDetect's cuts."""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Config
from pipeline.execution.processes import descendants, pss_bytes
from pipeline.models.machine import ISA_FLAGS, cpu_model_and_flags  # noqa: F401 (the scripts import them from here)
from testkit import synthetic

if TYPE_CHECKING:
    from pipeline.media.decode import DecodedSegment

#: The checkout's root (``pipeline/``, ``testkit/``, ``benchmarks/``).
ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vindex" / "bench"
#: PySceneDetect detectors compared with vindex, each at its defaults.
SCENEDETECT_DETECTORS = ("ContentDetector", "AdaptiveDetector")

#: Asks a fresh interpreter for torch's version, threads and kernel capability.
TORCH_PROBE = (
    "import json, torch; "
    "print(json.dumps([torch.__version__, torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()]))"
)


def torch_description() -> str:
    """torch's version, its threads and the kernel capability it dispatches to.

    Where the benchmark has not imported torch, a fresh interpreter (same environment, so
    the same caps and thread settings) answers: importing torch here would add about 200 MB of
    RSS to the process tree that ``memory.py`` measures (205 MB, torch 2.13 CPU build).
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        version, threads, capability = torch.__version__, torch.get_num_threads(), torch.backends.cpu.get_cpu_capability()
    else:
        done = subprocess.run([sys.executable, "-c", TORCH_PROBE], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"torch unavailable ({(done.stderr.strip().splitlines() or ['no output'])[-1]})"
        version, threads, capability = json.loads(done.stdout.strip().splitlines()[-1])
    return f"torch {version}, {threads} threads, capability {capability}"


def machine_header() -> str:
    """Two lines naming what a benchmark's figures were measured on: the CPU and its
    instruction-set extensions, then torch and any cap put on the instruction set."""
    model, flags = cpu_model_and_flags()
    present = " ".join(f for f in ISA_FLAGS if f in flags) or f"none of {' '.join(ISA_FLAGS)}"
    cpus = f"{os.cpu_count()} CPUs"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if usable != os.cpu_count():
        cpus += f", {usable} usable"
    onednn_cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or "none"
    aten_cap = os.environ.get("ATEN_CPU_CAPABILITY") or "unset"
    return (
        f"CPU: {model} ({cpus}); ISA: {present}\n"
        f"{torch_description()}; oneDNN ISA cap: {onednn_cap}, ATEN_CPU_CAPABILITY={aten_cap}"
    )


def tree_rss_bytes(root: int) -> int:
    """Memory of ``root`` and all of its descendants (driver, Ray services, workers).

    Summed as PSS, so the object store's shared pages count once, not once per process.
    """
    return sum(pss_bytes(pid) for pid in [root, *descendants(root)])


#: The most of one core the memory sampler may take. A reading of PSS walks every page of every
#: process in the tree: 33-36 ms for an embedded Ray run's tree on 2 cores (AMD EPYC), so at
#: four readings a second the benchmark took 14% of a core itself, and the end-to-end run it
#: measured took 7-12% longer than unwatched (the actor's memory map is locked while read).
SAMPLER_MAX_CORE_SHARE = 0.02


def sampler_wait_s(interval_s: float, reading_cpu_s: float) -> float:
    """Seconds to wait before the next reading: ``interval_s``, or longer where the last reading
    cost so much CPU that the sampler would take more than :data:`SAMPLER_MAX_CORE_SHARE` of a core."""
    return max(interval_s, reading_cpu_s / SAMPLER_MAX_CORE_SHARE)


class PeakRSS:
    """Samples the process tree's memory (PSS) in a thread; ``peak`` is the maximum seen.

    Readings come every ``interval_s``, or less often where one costs more than
    :data:`SAMPLER_MAX_CORE_SHARE` of a core allows (:func:`sampler_wait_s`); ``readings`` and
    ``cpu_s`` say how many were taken and what they cost."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self.readings = 0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float:
        """Take one reading; returns the CPU seconds it took."""
        started = time.thread_time()
        self.peak = max(self.peak, tree_rss_bytes(os.getpid()))
        spent = time.thread_time() - started
        self.readings += 1
        self.cpu_s += spent
        return spent

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(sampler_wait_s(self.interval_s, self._read()))

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read()


def measure(fn: Callable[[], int]) -> tuple[int, float, int]:
    """(frames, seconds, peak RSS bytes) of ``fn``, which returns the frames it handled."""
    with PeakRSS() as rss:
        started = time.perf_counter()
        frames = fn()
        seconds = time.perf_counter() - started
    return frames, seconds, rss.peak


def long_clip(minutes: float, height: int = 480) -> Path:
    """A folder holding one generated clip of ``minutes`` at 16:9 ``height``p, cached between runs."""
    width = round(height * 16 / 9 / 2) * 2  # 480 -> 854
    folder = CACHE / f"long_{minutes:g}min_{height}p"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "long.mp4"
    if not path.exists():
        spec = synthetic.spec_for_duration(42, minutes * 60, width=width, height=height, fps=25.0)
        started = time.perf_counter()
        tmp = folder / ".long.tmp.mp4"
        synthetic.write_clip(tmp, spec, preset="ultrafast", crf=23)
        tmp.rename(path)
        print(f"generated {path} ({spec.num_frames} frames) in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def add_hard_set_options(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """The options that pick the size of the hard set: --clips, --shots and --quick."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--shots", type=int, default=30, help="shots per clip")


#: --quick: 2 clips of 8 shots.
QUICK_CLIPS, QUICK_SHOTS = 2, 8


def hard_corpus(num_clips: int, num_shots: int) -> tuple[Path, dict[str, synthetic.ClipSpec]]:
    """The hard generated set (``testkit.synthetic.hard_set``) written to a cached folder, and its specs.

    The folder is named after a digest of the specs, so a change of generator never re-uses
    stale files.
    """
    specs = synthetic.hard_set(num_clips, num_shots)
    digest = hashlib.sha256(repr(sorted(specs.items())).encode()).hexdigest()[:12]
    folder = CACHE / f"hard_{num_clips}x{num_shots}_{digest}"
    if not all((folder / f"{name}.mp4").exists() for name in specs):
        started = time.perf_counter()
        synthetic.write_corpus(folder, specs)
        frames = sum(s.num_frames for s in specs.values())
        print(f"generated {folder} ({frames} frames) in {time.perf_counter() - started:.0f} s", flush=True)
    return folder, specs


def decode_only(paths: list[Path], config: Config) -> int:
    """Read every frame with decord at the size the pipeline decodes each video to, in its chunks."""
    import decord

    from pipeline.algorithms.segments import decode_size
    from pipeline.media.decode import DECODE_CHUNK_FRAMES
    from pipeline.media.probe import probe

    frames = 0
    for path in paths:
        info = probe(str(path))
        width, height = decode_size(*info.display_size, config.decode.width, config.decode.height)
        reader = decord.VideoReader(str(path), width=width, height=height, num_threads=config.decode.threads)
        for start in range(0, len(reader), DECODE_CHUNK_FRAMES):
            batch = reader.get_batch(list(range(start, min(start + DECODE_CHUNK_FRAMES, len(reader)))))
            frames += batch.shape[0]
    return frames


def pipeline_run(folder: Path, config: Config) -> int:
    """Index ``folder`` into a fresh temporary index (Ray must be up); returns the frames indexed."""
    from pipeline.execution.runner import run_index

    with tempfile.TemporaryDirectory() as index:
        summary = run_index(str(folder), index, config, full=True, show_progress=False)
        if summary.counts["failed"]:
            raise RuntimeError(f"benchmark videos failed: {summary.failures}")
        return summary.counts["frames"]


#: What a benchmark prints where it leaves PySceneDetect's rows out.
SCENEDETECT_MISSING = "PySceneDetect rows left out: it is not installed (pip install -e '.[bench]')"


def scenedetect_installed() -> bool:
    """Whether PySceneDetect (the ``bench`` extra) can be imported."""
    import importlib.util

    return importlib.util.find_spec("scenedetect") is not None


def scenedetect_cuts(path: Path, detector: str) -> tuple[list[int], int]:
    """PySceneDetect's cuts in ``path`` (first frames of new scenes) and the frames it read.

    The detector runs at its defaults, through a SceneManager at its defaults (OpenCV
    decoding, automatic downscaling).
    """
    import scenedetect

    video = scenedetect.open_video(str(path), backend="opencv")
    manager = scenedetect.SceneManager()
    manager.add_detector(getattr(scenedetect, detector)())
    frames = manager.detect_scenes(video)
    scenes = manager.get_scene_list()
    return [start.frame_num for start, _ in scenes[1:]], frames


def decode_whole(
    path: Path, config: Config, num_frames: int | None = None, size: tuple[int, int] | None = None
) -> DecodedSegment:
    """A video decoded as the pipeline decodes it, in one segment: its first ``num_frames``
    (default: all), at ``size`` (default: the size the pipeline picks for its display size)."""
    from pipeline.algorithms.segments import Segment, decode_size
    from pipeline.media.decode import decode_segment
    from pipeline.media.probe import probe

    if num_frames is None or size is None:
        info = probe(str(path))
        num_frames = num_frames or info.num_frames
        size = size or decode_size(*info.display_size, config.decode.width, config.decode.height)
    return decode_segment(str(path), Segment(0, 1, 0, num_frames), config, size=size)


#: The summary line of ``vindex run``: "... frames 15,000 at 121 frames/s".
RUN_SUMMARY = re.compile(r"frames ([\d,]+) at ([\d,.]+) frames/s")


@dataclass(frozen=True)
class Finished:
    """A command run to its end in a child process."""

    argv: list[str]
    #: When it was started (``time.time()``), to place marks it wrote against.
    started_at: float
    #: Wall seconds from its start to its exit.
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    #: CPU seconds of the command's whole process tree, per kind of process, where sampled.
    cpu_s: dict[str, float] | None = None

    def check(self, ok: Sequence[int] = (0,)) -> Finished:
        """Itself, or SystemExit with the end of its output where its exit status is not in ``ok``."""
        if self.returncode not in ok:
            raise SystemExit(
                f"{' '.join(self.argv[:5])} failed ({self.returncode}):\n{self.stdout[-2000:]}\n{self.stderr[-3000:]}"
            )
        return self

    def run_summary(self) -> tuple[int, float]:
        """(frames, the run's own frames/s) from a ``vindex run`` summary line that says every
        video was indexed; SystemExit otherwise (figures of a partial run are not comparable)."""
        match = RUN_SUMMARY.search(self.stdout)
        if not match or " 0 failed" not in self.stdout:
            raise SystemExit(f"vindex run did not index every video:\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}")
        return int(match.group(1).replace(",", "")), float(match.group(2).replace(",", ""))


def run_timed(
    argv: Sequence[str],
    *,
    checkout: Path = ROOT,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    sample_cpu: bool = False,
) -> Finished:
    """``argv`` run to its end in a child process that imports the code in ``checkout`` (this
    one by default; another copy for an A/B), on an embedded Ray (``RAY_ADDRESS`` dropped,
    ``RAY_AUTH_MODE`` disabled unless set), timed from start to exit; with ``sample_cpu``, the
    CPU seconds of its whole process tree too (:class:`benchmarks.cpu.CpuSampler`)."""
    from benchmarks.cpu import CpuSampler

    environment = {**os.environ, "PYTHONPATH": str(checkout), **(env or {})}
    environment.setdefault("RAY_AUTH_MODE", "disabled")
    environment.pop("RAY_ADDRESS", None)
    started_at, started = time.time(), time.perf_counter()
    child = subprocess.Popen(
        list(argv), cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = CpuSampler([child.pid]) if sample_cpu else contextlib.nullcontext()
    with sampler:
        stdout, stderr = child.communicate()
    seconds = time.perf_counter() - started
    cpu_s = sampler.by_group() if isinstance(sampler, CpuSampler) else None
    return Finished(list(argv), started_at, seconds, child.returncode, stdout, stderr, cpu_s)


def run_vindex(
    *args: str,
    checkout: Path = ROOT,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    sample_cpu: bool = False,
) -> Finished:
    """``vindex ARGS`` (``python -m pipeline.cli``) in a child process, timed (:func:`run_timed`)."""
    argv = [sys.executable, "-m", "pipeline.cli", *args]
    return run_timed(argv, checkout=checkout, cwd=cwd, env=env, sample_cpu=sample_cpu)


def vindex_run_args(
    folder: Path | str, index: Path | str, settings: Sequence[str] = (), config_path: str | None = None
) -> list[str]:
    """The arguments of a quiet ``vindex run FOLDER --index INDEX`` with a config and settings."""
    args = ["run", str(folder), "--index", str(index), "--quiet"]
    return args + (["--config", config_path] if config_path else []) + [a for s in settings for a in ("--set", s)]


class PrecisionRecall:
    """Precision, recall and F1 of ``true_positives`` out of ``predicted`` events against
    ``actual`` ones (a class that counts them defines the three); each is 1.0 with nothing to
    find and nothing found."""

    true_positives: int
    predicted: int
    actual: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.actual if self.actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0
