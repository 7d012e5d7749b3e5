"""Scenes and keyframes on the real-footage sets: vindex end to end against simple baselines.

    python benchmarks/scenes.py [--refresh] [--per-video] [--methods module:function,...]
    python benchmarks/scenes.py --set DIR [--refresh] [--per-video] [--methods ...]

Without ``--set``: one table of every development set, each set's rows the scenes vindex
wrote and the baselines (every shot a scene, one scene per video, colour-histogram and
embedding merging tuned on that set), all on vindex's own shots; then the sets pooled. The
sets are the committed ones (``COMMITTED_SETS``: ``benchmarks/scenes_set``,
``benchmarks/scenes_set2``) and, when it is present, the scenes-dev set read in place
(``$VINDEX_SCENES_DEV``, else ``../shared/scenes-dev`` beside the checkout), then the
held-out set ``benchmarks/scenes_set3`` (``HELD_OUT_SETS``: committed, but no scene setting
was chosen on it; its rows stand apart from the pooled "all sets" rows, which pool the
development sets only). With ``--set``:
the full report of one set (both shot sources, leave-one-video-out, keyframes).

A set (``build_scenes_set.py``) holds videos edited from real camera footage with exact
truth. The first run indexes every video once with ``vindex run``'s own path
(``runner.run_index`` into a temporary index, default settings, embedded Ray) and reads the
shots, scenes and keyframes it wrote; it also runs the two networks once per video, in
process, at the pipeline's decode size and precision, and caches per video, in
``~/.cache/vindex/scenes/<video>-<hash>.npz``:

* ``sample_frames``, ``embeddings``: the sampled frames (every 6th) and their
  EfficientNet-Lite0 embeddings (L2-normalised, float32);
* ``single``, ``many``: TransNetV2's two per-frame transition probabilities;
* ``histograms``: per sampled frame, an 8x8x8 RGB colour histogram (sums to 1);
* ``frame_luma``, ``frame_sharpness``: per frame of the file, mean luma and the variance of
  the Laplacian of its luma, at the file's own size;
* ``vindex_shots`` (start, end), ``vindex_scenes`` (first_shot, last_shot),
  ``vindex_keyframes`` (frames), ``vindex_shot_embeddings``: what the pipeline wrote to the
  index (scene methods on vindex's shots compare the embeddings it stored).

Later runs read the cache and score everything in seconds. A scene method is a function

    method(video: CachedVideo, shots: np.ndarray, threshold: float) -> Sequence[int]

that returns the indices of the shots that start a scene (``shots`` is int [n, 2], each
shot's first and last frame, inclusive; ``threshold`` is its one setting). ``--methods
mod:fn`` scores such functions (found on ``sys.path``; ``fn.thresholds``, a sequence, is the
grid to tune over, else one run at threshold 0), given vindex's shots and the true shots,
with the threshold tuned on the whole set and leave-one-video-out (``leave_one_out``).
From Python: ``load_set()``, ``load_cached(video)``, ``evaluate(...)``.

A scene boundary between two shots lies at the middle of the frames between them (the cut,
or the middle of a dissolve or fade), as in the truth. Scores are pooled over videos
(boundaries counted, coverage and overflow weighted by frames; mIoU over all true scenes).
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.measure import machine_header
from benchmarks.scene_metrics import (
    BLACK_LUMA,
    BoundaryCounts,
    CoverageOverflow,
    coverage_overflow,
    in_ranges,
    match_boundaries,
    scene_ious,
    boundaries,
    scenes_from_starts,
)

SET_DIR = Path(__file__).with_name("scenes_set")
#: The committed sets, in the one-table order.
COMMITTED_SETS = (SET_DIR, Path(__file__).with_name("scenes_set2"))
#: Committed sets no scene setting was chosen on (nor may be): scored in the one table after
#: the development sets, never pooled with them or tuned on by the settings' scripts.
HELD_OUT_SETS = (Path(__file__).with_name("scenes_set3"),)
#: The shared scenes-dev set (videos/, gt/), read in place where it is present.
DEV_SET = Path(os.environ.get("VINDEX_SCENES_DEV", Path(__file__).resolve().parents[2] / "shared" / "scenes-dev"))
CACHE_DIR = Path(os.environ.get("VINDEX_CACHE", Path.home() / ".cache" / "vindex")) / "scenes"
HIST_BINS = 8
#: Threshold grids for the tuned baselines.
HIST_THRESHOLDS = tuple(np.round(np.arange(0.05, 0.95, 0.025), 3))
COSINE_THRESHOLDS = tuple(np.round(np.arange(0.30, 0.99, 0.01), 3))

SceneMethod = Callable[["CachedVideo", np.ndarray, float], Sequence[int]]


@dataclass
class CachedVideo:
    """One video of the set: its truth and the cached model outputs and vindex results."""

    name: str
    path: Path
    truth: dict
    sample_frames: np.ndarray
    embeddings: np.ndarray
    single: np.ndarray
    many: np.ndarray
    histograms: np.ndarray
    #: float32 [num_frames, 36]: every frame's colour layout as the decode stage measures it
    #: (``frame_stats.colour_layout`` of the 48x27 copy): what the pipeline's shots can keep.
    frame_colours: np.ndarray
    frame_luma: np.ndarray
    frame_sharpness: np.ndarray
    vindex_shots: np.ndarray
    vindex_scenes: np.ndarray
    vindex_keyframes: np.ndarray
    #: float32 [shots, 1280]: the ``embedding`` the index stored for each of vindex's shots (the
    #: pipeline's own inference, precision and sampling: scenes are derived from these); None
    #: in a cache written before it was kept.
    vindex_shot_embeddings: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return int(self.truth["num_frames"])

    @property
    def true_shots(self) -> np.ndarray:
        return np.array([[s["start_frame"], s["end_frame"]] for s in self.truth["shots"]], np.int64)

    @property
    def true_scenes(self) -> list[tuple[int, int]]:
        return [(s["start_frame"], s["end_frame"]) for s in self.truth["scenes"]]

    @property
    def mixed_ranges(self) -> list[tuple[int, int]]:
        """Blend frames of every dissolve and fade."""
        return [(t["first_frame"], t["last_frame"]) for t in self.truth["transitions"] if t["kind"] != "cut"]

    @property
    def flash_ranges(self) -> list[tuple[int, int]]:
        return [tuple(f) for f in self.truth["flashes"]]

    def shot_samples(self, shots: np.ndarray) -> list[np.ndarray]:
        """Per shot, the indices of its sampled frames (the nearest one where it holds none)."""
        out = []
        for start, end in shots:
            inside = np.flatnonzero((self.sample_frames >= start) & (self.sample_frames <= end))
            if not len(inside):
                inside = np.array([int(np.argmin(np.abs(self.sample_frames - (start + end) / 2)))])
            out.append(inside)
        return out

    def shot_embeddings(self, shots: np.ndarray) -> np.ndarray:
        """Mean embedding of each shot's sampled frames, L2-normalised. For vindex's own shots,
        the embeddings the index stored (what the pipeline derives scenes from; on scenes2_04
        a stored shot's embedding and this benchmark's mean of its own frames' are only 0.989
        alike, which moved one boundary's cohesion by 0.09)."""
        if self.vindex_shot_embeddings is not None and np.array_equal(shots, self.vindex_shots):
            stored = self.vindex_shot_embeddings.astype(np.float64)
            return stored / np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
        means = np.array([self.embeddings[i].mean(axis=0) for i in self.shot_samples(shots)])
        return means / np.linalg.norm(means, axis=1, keepdims=True)

    def shot_histograms(self, shots: np.ndarray) -> np.ndarray:
        return np.array([self.histograms[i].mean(axis=0) for i in self.shot_samples(shots)])


#: The arrays a cache file holds for :class:`CachedVideo` (it also holds ``derived_fingerprint``).
CACHED_ARRAYS = frozenset(f for f in CachedVideo.__dataclass_fields__ if f not in ("name", "path", "truth"))


# --- the set and the cache ----------------------------------------------------------------


def set_videos(set_dir: Path = SET_DIR) -> list[Path]:
    """The set's videos that have truth: ``NAME.mp4`` beside ``NAME.json`` (``benchmarks/scenes_set``),
    or ``videos/NAME.mp4`` with ``gt/NAME.json`` (the layout of a scenes-dev set, read in place)."""
    if (set_dir / "videos").is_dir() and (set_dir / "gt").is_dir():
        return sorted(p for p in (set_dir / "videos").glob("*.mp4") if (set_dir / "gt" / f"{p.stem}.json").exists())
    return sorted(p for p in set_dir.glob("*.mp4") if p.with_suffix(".json").exists())


def truth_of(video: Path) -> dict:
    """A video's truth in this benchmark's form (``build_scenes_set.py``'s): shots and scenes as
    dicts of inclusive frames, transitions with ``kind``, ``first_frame``, ``last_frame``.

    A scenes-dev truth (``gt/NAME.json``: shots, scenes as shot ranges, ``scene_frames``,
    transitions as [last frame before, first frame after] with ``transition_types``) is converted.
    """
    beside = video.with_suffix(".json")
    if beside.exists():
        return json.loads(beside.read_text())
    gt = json.loads((video.parent.parent / "gt" / f"{video.stem}.json").read_text())
    return {
        "video": video.name,
        "fps": gt["fps"],
        "width": gt["width"],
        "height": gt["height"],
        "num_frames": gt["num_frames"],
        "shots": [{"start_frame": a, "end_frame": b} for a, b in gt["shots"]],
        "transitions": [
            {"kind": "cut" if kind == "cut" else "dissolve" if kind.startswith("dissolve") else "fade",
             "first_frame": a + 1, "last_frame": b - 1}
            for (a, b), kind in zip(gt["transitions"], gt["transition_types"])
        ],
        "scenes": [
            {"first_shot": first, "last_shot": last, "start_frame": start, "end_frame": end}
            for (first, last), (start, end) in zip(gt["scenes"], gt["scene_frames"])
        ],
        "flashes": [],
    }


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def derived_fingerprint() -> str:
    """What the shots, scenes and keyframes vindex wrote depend on besides the networks: the
    settings with a derived effect and the code of ``pipeline/algorithms``. A cache made under
    another fingerprint has its ``vindex_*`` arrays indexed again (the networks' outputs stay)."""
    from pipeline.config import DERIVED, config_from_dict

    digest = hashlib.sha256(config_from_dict({}).digest(DERIVED).encode())
    for path in sorted((Path(__file__).resolve().parents[1] / "pipeline" / "algorithms").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def cache_path(video: Path) -> Path:
    from pipeline.config import config_from_dict

    digest = config_from_dict({}).digest()[:8]
    return CACHE_DIR / f"{video.stem}-{_file_hash(video)}-{digest}.npz"


def load_cached(video: Path | str) -> CachedVideo:
    """The cached outputs of one video of the set (``build_cache`` must have run)."""
    video = Path(video)
    if not video.suffix:
        video = SET_DIR / f"{video}.mp4"
    data = np.load(cache_path(video))
    return CachedVideo(video.stem, video, truth_of(video), **{k: data[k] for k in data.files if k in CACHED_ARRAYS})


def load_set(set_dir: Path = SET_DIR) -> list[CachedVideo]:
    return [load_cached(p) for p in set_videos(set_dir)]


def development_sets(dev_set: Path = DEV_SET) -> dict[str, Path]:
    """Every development set by name: the committed ones, then scenes-dev where it is present."""
    sets = {d.name: d for d in COMMITTED_SETS if set_videos(d)}
    if dev_set.is_dir() and set_videos(dev_set):
        sets["scenes-dev"] = dev_set
    return sets


def held_out_sets() -> dict[str, Path]:
    """The held-out sets by name (``HELD_OUT_SETS`` that hold videos with truth)."""
    return {d.name: d for d in HELD_OUT_SETS if set_videos(d)}


def _run_vindex(videos: list[Path]) -> dict[str, dict[str, np.ndarray]]:
    """Index ``videos`` with the pipeline (default settings); per file name its shots, scenes, keyframes."""
    from pipeline.config import config_from_dict
    from pipeline.execution.ray_runtime import init_local_ray
    from pipeline.index.reader import open_index
    from pipeline.execution.runner import run_index

    import ray

    config = config_from_dict({})
    if not ray.is_initialized():  # one embedded Ray serves every set of a run
        init_local_ray(object_store_memory=config.compute.embedded_object_store_mb * 2**20)
    out: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus, index = Path(tmp) / "corpus", Path(tmp) / "index"
        corpus.mkdir()
        for video in videos:
            shutil.copy(video, corpus / video.name)
        started = time.perf_counter()
        summary = run_index(str(corpus), str(index), config, full=True, show_progress=False)
        if summary.counts["failed"]:
            raise RuntimeError(f"videos failed: {summary.failures}")
        print(f"vindex indexed {len(videos)} videos ({summary.counts['frames']} frames) in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        reader = open_index(str(index))
        names = {r["video_id"]: Path(r["uri"]).name for r in reader.table("videos", columns=["video_id", "uri"]).to_pylist()}
        tables = {t: reader.table(t).to_pandas() for t in ("shots", "scenes", "keyframes")}
    for video_id, name in names.items():
        shots = tables["shots"][tables["shots"].video_id == video_id].sort_values("shot_index")
        scenes = tables["scenes"][tables["scenes"].video_id == video_id].sort_values("scene_index")
        keyframes = tables["keyframes"][tables["keyframes"].video_id == video_id].sort_values("frame")
        out[name] = {
            "vindex_shots": shots[["start_frame", "end_frame"]].to_numpy(np.int64).reshape(-1, 2),
            "vindex_scenes": scenes[["first_shot", "last_shot"]].to_numpy(np.int64).reshape(-1, 2),
            "vindex_keyframes": keyframes["frame"].to_numpy(np.int64),
            "vindex_shot_embeddings": np.array(shots["embedding"].tolist(), np.float32).reshape(len(shots), -1),
        }
    return out


def _histograms(samples: np.ndarray) -> np.ndarray:
    """8x8x8 RGB histogram of each frame, each summing to 1."""
    bins = (samples // (256 // HIST_BINS)).astype(np.int64)
    codes = (bins[..., 0] * HIST_BINS + bins[..., 1]) * HIST_BINS + bins[..., 2]
    out = np.zeros((len(samples), HIST_BINS**3), np.float32)
    for i, frame_codes in enumerate(codes.reshape(len(samples), -1)):
        out[i] = np.bincount(frame_codes, minlength=HIST_BINS**3) / frame_codes.size
    return out


def _frame_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean luma and Laplacian variance of every frame at the file's own size."""
    import av

    from benchmarks.scene_metrics import laplacian_variance, luma

    lumas, sharpness = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            y = luma(frame.to_ndarray(format="rgb24"))
            lumas.append(y.mean())
            sharpness.append(laplacian_variance(y))
    return np.array(lumas, np.float32), np.array(sharpness, np.float32)


def _raw_outputs(path: Path, num_frames: int) -> dict[str, np.ndarray]:
    """Both networks on one whole video, as the model stage runs them (one segment)."""
    import torch

    from pipeline.config import config_from_dict
    from pipeline.algorithms.segments import Segment, decode_size
    from pipeline.media.decode import decode_segment
    from pipeline.media.probe import probe
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import embed_frames, predict_transitions, prepare_for_inference
    from pipeline.models.transnetv2 import load_transnetv2

    config = config_from_dict({})
    device = torch.device("cpu")
    models = _raw_outputs.__dict__
    if "shot" not in models:
        models["shot"] = prepare_for_inference(load_transnetv2(device), device, config.inference.precision)
        models["embed"] = load_efficientnet_lite0(device)
    info = probe(str(path))
    size = decode_size(*info.display_size, config.decode.width, config.decode.height)
    decoded = decode_segment(str(path), Segment(0, 1, 0, num_frames), config, size=size)
    single, many = predict_transitions(
        models["shot"], decoded.shot_frames, window=config.shots.window_frames,
        batch_windows=config.inference.shot_batch_windows, device=device, precision=config.inference.precision,
    )
    embeddings = embed_frames(models["embed"], decoded.samples, batch_size=0, device=device, precision=config.inference.precision)
    luma, sharpness = _frame_stats(path)
    return {
        "sample_frames": np.asarray(decoded.sample_frames, np.int64),
        "embeddings": embeddings.astype(np.float32),
        "single": single[: decoded.num_frames].astype(np.float32),
        "many": many[: decoded.num_frames].astype(np.float32),
        "histograms": _histograms(decoded.samples),
        "frame_colours": decoded.frame_colours[: decoded.num_frames].astype(np.float32),
        "frame_luma": luma,
        "frame_sharpness": sharpness,
    }


def _frame_colours(path: Path, num_frames: int) -> np.ndarray:
    """Every frame's colour layout, decoded as the pipeline decodes (no network runs)."""
    from pipeline.algorithms.segments import Segment, decode_size
    from pipeline.config import config_from_dict
    from pipeline.media.decode import decode_segment
    from pipeline.media.probe import probe

    config = config_from_dict({})
    size = decode_size(*probe(str(path)).display_size, config.decode.width, config.decode.height)
    decoded = decode_segment(str(path), Segment(0, 1, 0, num_frames), config, size=size)
    return decoded.frame_colours[: decoded.num_frames].astype(np.float32)


def _add_frame_colours(video: Path) -> None:
    """Add ``frame_colours`` to a cache written before it was kept."""
    data = dict(np.load(cache_path(video)))
    if "frame_colours" in data:
        return
    data["frame_colours"] = _frame_colours(video, truth_of(video)["num_frames"])
    np.savez_compressed(cache_path(video), **data)
    print(f"added frame colours to the cache of {video.name}", flush=True)


def _cached_fingerprint(video: Path) -> str:
    with np.load(cache_path(video)) as data:
        return str(data["derived_fingerprint"]) if "derived_fingerprint" in data.files else ""


def _has_stored_embeddings(video: Path) -> bool:
    with np.load(cache_path(video)) as data:
        return "vindex_shot_embeddings" in data.files


def build_cache(set_dir: Path = SET_DIR, refresh: bool = False) -> None:
    """Run vindex and the networks on every video of the set whose cache is missing; index
    again (networks' outputs kept) every video whose cache another ``derived_fingerprint`` made."""
    fingerprint = derived_fingerprint()
    missing = [p for p in set_videos(set_dir) if refresh or not cache_path(p).exists()]
    stale = [p for p in set_videos(set_dir) if p not in missing and (_cached_fingerprint(p) != fingerprint or not _has_stored_embeddings(p))]
    for video in set_videos(set_dir):
        if video not in missing:
            _add_frame_colours(video)
    if not missing and not stale:
        return
    found = _run_vindex(missing + stale)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for video in stale:
        arrays = {**dict(np.load(cache_path(video))), **found[video.name], "derived_fingerprint": np.array(fingerprint)}
        np.savez_compressed(cache_path(video), **arrays)
        print(f"indexed {video.name} again (pipeline code or derived settings changed, or no stored shot embeddings)", flush=True)
    for video in missing:
        started = time.perf_counter()
        arrays = {**_raw_outputs(video, truth_of(video)["num_frames"]), **found[video.name],
                  "derived_fingerprint": np.array(fingerprint)}
        np.savez_compressed(cache_path(video), **arrays)
        print(f"cached {video.name} ({time.perf_counter() - started:.0f} s)", flush=True)


# --- scene methods ------------------------------------------------------------------------


def every_shot(video: CachedVideo, shots: np.ndarray, threshold: float = 0.0) -> list[int]:
    """Every shot its own scene."""
    return list(range(len(shots)))


def one_scene(video: CachedVideo, shots: np.ndarray, threshold: float = 0.0) -> list[int]:
    """The whole video one scene."""
    return [0]


def histogram_merge(video: CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
    """A new scene where neighbouring shots' mean colour histograms differ by more than
    ``threshold`` (total variation distance, 0 to 1)."""
    hists = video.shot_histograms(shots)
    distance = 0.5 * np.abs(np.diff(hists, axis=0)).sum(axis=1)
    return [0] + [int(i) + 1 for i in np.flatnonzero(distance > threshold)]


histogram_merge.thresholds = HIST_THRESHOLDS  # type: ignore[attr-defined]


def embedding_merge(video: CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
    """A new scene where neighbouring shots' mean embeddings have cosine below ``threshold``."""
    emb = video.shot_embeddings(shots)
    cosine = (emb[:-1] * emb[1:]).sum(axis=1)
    return [0] + [int(i) + 1 for i in np.flatnonzero(cosine < threshold)]


embedding_merge.thresholds = COSINE_THRESHOLDS  # type: ignore[attr-defined]


def vindex_attention(video: CachedVideo, shots: np.ndarray, threshold: float) -> list[int]:
    """vindex's own scene rule (``pipeline.algorithms.scenes``) at its default settings but ``threshold``,
    over the shots' mean embeddings and colour histograms (from the decode stage's colour layouts)."""
    import dataclasses

    from pipeline.config import config_from_dict
    from pipeline.algorithms.scenes import colour_histogram, scene_starts

    config = dataclasses.replace(config_from_dict({}).scenes, threshold=float(threshold))
    histograms = np.array([colour_histogram(video.frame_colours[a : b + 1]) for a, b in shots])
    return scene_starts(video.shot_embeddings(shots), config, histograms)


vindex_attention.thresholds = tuple(np.round(np.arange(0.01, 0.5, 0.01), 3))  # type: ignore[attr-defined]


# --- scoring ------------------------------------------------------------------------------


def scene_frames(shots: np.ndarray, starts: Sequence[int], num_frames: int) -> list[tuple[int, int]]:
    """Scenes as frame ranges: each starts halfway between its first shot and the shot before."""
    frames = [0 if i == 0 else (int(shots[i - 1][1]) + 1 + int(shots[i][0])) // 2 for i in sorted(set(starts)) if 0 <= i < len(shots)]
    return scenes_from_starts(frames, num_frames)


@dataclass
class SceneScore:
    boundaries: BoundaryCounts
    co: CoverageOverflow
    ious: list[float]

    def __add__(self, other: "SceneScore") -> "SceneScore":
        return SceneScore(self.boundaries + other.boundaries, self.co + other.co, self.ious + other.ious)

    @property
    def miou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else 1.0

    def row(self) -> str:
        b = self.boundaries
        return (f"{b.precision:5.2f} {b.recall:5.2f} {b.f1:5.2f}  {self.co.coverage:5.2f} {self.co.overflow:5.2f} "
                f"{self.co.f_co:5.2f}  {self.miou:5.2f}")


def score_video(video: CachedVideo, predicted: list[tuple[int, int]]) -> SceneScore:
    truth = video.true_scenes
    return SceneScore(match_boundaries(boundaries(truth), boundaries(predicted)), coverage_overflow(truth, predicted),
                      scene_ious(truth, predicted))


ShotSource = Callable[[CachedVideo], np.ndarray]
SHOT_SOURCES: dict[str, ShotSource] = {"vindex shots": lambda v: v.vindex_shots, "true shots": lambda v: v.true_shots}


def evaluate(method: SceneMethod, videos: Sequence[CachedVideo], shots_of: ShotSource, threshold: float) -> list[SceneScore]:
    """Per video, the score of ``method`` at ``threshold`` on the shots ``shots_of`` gives."""
    out = []
    for video in videos:
        shots = shots_of(video)
        out.append(score_video(video, scene_frames(shots, method(video, shots, threshold), video.num_frames)))
    return out


def total(scores: Sequence[SceneScore]) -> SceneScore:
    out = scores[0]
    for s in scores[1:]:
        out = out + s
    return out


def tune(method: SceneMethod, videos: Sequence[CachedVideo], shots_of: ShotSource, thresholds: Sequence[float]) -> tuple[float, SceneScore]:
    """The threshold with the best pooled boundary F1 on ``videos`` (ties: the first), and its score."""
    best: tuple[float, SceneScore] | None = None
    for threshold in thresholds:
        score = total(evaluate(method, videos, shots_of, threshold))
        if best is None or score.boundaries.f1 > best[1].boundaries.f1:
            best = (float(threshold), score)
    assert best is not None
    return best


def leave_one_out(method: SceneMethod, videos: Sequence[CachedVideo], shots_of: ShotSource,
                  thresholds: Sequence[float]) -> list[tuple[str, float, SceneScore]]:
    """For each video: the threshold tuned on all the others, and the held-out video's score at it."""
    out = []
    for k, video in enumerate(videos):
        others = [v for i, v in enumerate(videos) if i != k]
        threshold, _ = tune(method, others, shots_of, thresholds)
        out.append((video.name, threshold, evaluate(method, [video], shots_of, threshold)[0]))
    return out


# --- keyframes ----------------------------------------------------------------------------


@dataclass
class KeyframeScore:
    count: int
    on_mixed: int
    black: int
    flash: int
    sharpness: list[float]

    def __add__(self, other: "KeyframeScore") -> "KeyframeScore":
        return KeyframeScore(self.count + other.count, self.on_mixed + other.on_mixed, self.black + other.black,
                             self.flash + other.flash, self.sharpness + other.sharpness)

    def row(self) -> str:
        return (f"{self.count:5d} {self.on_mixed:6d} {self.black:6d} {self.flash:6d}  "
                f"{np.median(self.sharpness) if self.sharpness else 0:9.1f}")


def keyframe_score(video: CachedVideo, frames: np.ndarray) -> KeyframeScore:
    frames = np.asarray(frames, np.int64)
    return KeyframeScore(
        len(frames),
        in_ranges(frames.tolist(), video.mixed_ranges),
        int((video.frame_luma[frames] < BLACK_LUMA).sum()),
        in_ranges(frames.tolist(), video.flash_ranges),
        video.frame_sharpness[frames].astype(float).tolist(),
    )


def shot_middles(shots: np.ndarray) -> np.ndarray:
    return (shots[:, 0] + shots[:, 1]) // 2


# --- report -------------------------------------------------------------------------------

HEADER = f"{'':54s}{'P':>5s} {'R':>5s} {'F1':>5s}  {'C':>5s} {'O':>5s} {'F_CO':>5s}  {'mIoU':>5s}"


def report(videos: list[CachedVideo], methods: list[SceneMethod], per_video: bool) -> None:
    frames = sum(v.num_frames for v in videos)
    print(f"\n{len(videos)} videos, {frames} frames, {sum(len(v.truth['scenes']) for v in videos)} scenes, "
          f"{sum(len(v.truth['shots']) for v in videos)} shots; scene boundary tolerance ±12 frames")
    vindex_scores = [score_video(v, scene_frames(v.vindex_shots, v.vindex_scenes[:, 0].tolist(), v.num_frames)) for v in videos]
    rows: list[tuple[str, list[SceneScore]]] = [("vindex today (index)", vindex_scores)]
    fixed: list[tuple[str, SceneMethod]] = [("every shot a scene", every_shot), ("one scene per video", one_scene)]
    for label, shots_of in SHOT_SOURCES.items():
        for name, method in fixed:
            rows.append((f"{name}, {label}", evaluate(method, videos, shots_of, 0.0)))
    tuned_notes = []
    for method in methods:
        grid = getattr(method, "thresholds", (0.0,))
        for label, shots_of in SHOT_SOURCES.items():
            if method is vindex_attention:
                from pipeline.config import config_from_dict

                default = config_from_dict({}).scenes.threshold
                rows.append((f"vindex attention t={default}, {label}", evaluate(method, videos, shots_of, default)))
            threshold, _ = tune(method, videos, shots_of, grid)
            rows.append((f"{method.__name__} t={threshold:g} (tuned), {label}", evaluate(method, videos, shots_of, threshold)))
            if len(grid) > 1:
                held = leave_one_out(method, videos, shots_of, grid)
                rows.append((f"{method.__name__} leave-one-video-out, {label}", [s for _, _, s in held]))
                tuned_notes.append(f"{method.__name__}, {label}: held-out thresholds "
                                   + ", ".join(f"{n}={t:g}" for n, t, _ in held))
    print(HEADER)
    for label, scores in rows:
        print(f"{label:54s}{total(scores).row()}")
    for note in tuned_notes:
        print("  " + note)
    if per_video:
        for label, scores in rows:
            print(f"\n{label}")
            for video, score in zip(videos, scores):
                print(f"  {video.name:52s}{score.row()}")
    print(f"\nkeyframes{'':45s}{'count':>5s} {'mixed':>6s} {'black':>6s} {'flash':>6s}  {'sharpness':>9s} (median var. of Laplacian)")
    kf_rows = [
        ("vindex keyframes (index)", [keyframe_score(v, v.vindex_keyframes) for v in videos]),
        ("middle frame of each vindex shot", [keyframe_score(v, shot_middles(v.vindex_shots)) for v in videos]),
        ("middle frame of each true shot", [keyframe_score(v, shot_middles(v.true_shots)) for v in videos]),
    ]
    for label, scores in kf_rows:
        pooled = scores[0]
        for s in scores[1:]:
            pooled = pooled + s
        print(f"{label:54s}{pooled.row()}")
        if per_video:
            for video, score in zip(videos, scores):
                print(f"  {video.name:52s}{score.row()}")
    shots_found = sum(len(v.vindex_shots) for v in videos)
    print(f"\nvindex shots: {shots_found} found, {sum(len(v.truth['shots']) for v in videos)} true")


ALL_SETS_HEADER = f"{'set':12s}{'method (on vindex shots)':44s}{'P':>5s} {'R':>5s} {'F1':>5s}  {'C':>5s} {'O':>5s} {'F_CO':>5s}  {'mIoU':>5s}"


def set_rows(videos: Sequence[CachedVideo], methods: Sequence[SceneMethod]) -> list[tuple[str, list[SceneScore]]]:
    """One set's rows of the one table, on vindex's own shots: the scenes vindex wrote, the two
    fixed baselines, and every tuned method at its best threshold on this set."""
    shots_of = SHOT_SOURCES["vindex shots"]
    rows: list[tuple[str, list[SceneScore]]] = [
        ("vindex (index, default settings)",
         [score_video(v, scene_frames(v.vindex_shots, v.vindex_scenes[:, 0].tolist(), v.num_frames)) for v in videos]),
        ("every shot a scene", evaluate(every_shot, videos, shots_of, 0.0)),
        ("one scene per video", evaluate(one_scene, videos, shots_of, 0.0)),
    ]
    for method in methods:
        grid = getattr(method, "thresholds", (0.0,))
        threshold, _ = tune(method, videos, shots_of, grid)
        tuned = " (tuned on the set)" if len(grid) > 1 else ""
        rows.append((f"{method.__name__} t={threshold:g}{tuned}", evaluate(method, videos, shots_of, threshold)))
    return rows


def report_all(sets: dict[str, list[CachedVideo]], methods: Sequence[SceneMethod], per_video: bool,
               held_out: Collection[str] = ()) -> None:
    """Every set's figures and the baselines in one table, then the sets pooled (the tuned
    baselines tuned on all of them together); the sets named in ``held_out`` are scored on
    their own and left out of the pooled rows."""
    print("\nscene boundary tolerance ±12 frames; P/R/F1 of scene boundaries, C/O/F_CO coverage/overflow, "
          "mIoU of true scenes")
    for name, videos in sets.items():
        print(f"{name}: {len(videos)} videos, {sum(v.num_frames for v in videos)} frames, "
              f"{sum(len(v.truth['scenes']) for v in videos)} scenes, {sum(len(v.truth['shots']) for v in videos)} shots "
              f"({sum(len(v.vindex_shots) for v in videos)} found by vindex)"
              + ("; held out: no setting chosen on it, not in \"all sets\"" if name in held_out else ""))
    print(ALL_SETS_HEADER)
    groups = {**sets, "all sets": [v for name, videos in sets.items() if name not in held_out for v in videos]}
    for name, videos in groups.items():
        rows = set_rows(videos, methods)
        for label, scores in rows:
            print(f"{name[:11]:12s}{label[:44]:44s}{total(scores).row()}")
        if per_video and name != "all sets":
            for video, score in zip(videos, rows[0][1]):
                print(f"{'':12s}  vindex: {video.name[:34]:34s}{score.row()}")
        print()


def _import(spec: str) -> SceneMethod:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", type=Path, default=None, help="one set's full report (default: every set, one table)")
    parser.add_argument("--refresh", action="store_true", help="run vindex and the networks again")
    parser.add_argument("--per-video", action="store_true")
    parser.add_argument("--methods", default="", help="extra scene methods, module:function,...")
    args = parser.parse_args()
    print(machine_header(), flush=True)
    extra = [_import(s) for s in args.methods.split(",") if s]
    if args.set is None:
        held = held_out_sets()
        found = {**development_sets(), **held}
        if not found:
            sys.exit("no set with videos and truth: benchmarks/build_scenes_set.py builds them")
        for set_dir in found.values():
            build_cache(set_dir, refresh=args.refresh)
        sets = {name: load_set(set_dir) for name, set_dir in found.items()}
        report_all(sets, [histogram_merge, embedding_merge, *extra], args.per_video, held_out=set(held))
        return
    if not set_videos(args.set):
        sys.exit(f"no videos with truth in {args.set}: benchmarks/build_scenes_set.py builds them "
                 "(sources in benchmarks/scenes_set/PROVENANCE.md)")
    build_cache(args.set, refresh=args.refresh)
    videos = [load_cached(p) for p in set_videos(args.set)]
    methods: list[SceneMethod] = [histogram_merge, embedding_merge, vindex_attention, *extra]
    report(videos, methods, args.per_video)


if __name__ == "__main__":
    main()
