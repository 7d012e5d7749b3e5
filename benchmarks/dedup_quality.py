"""How well `vindex dedup` finds copies of footage, on real footage altered in known ways.

    python benchmarks/dedup_quality.py [--refresh]

The corpus (``benchmarks/dedup_corpus.py``) holds three original videos, two videos of other
takes of the same places (look-alike, never copies), and 22 copies of parts of the originals:
re-encoded smaller at a low bitrate, cropped 10 % and 5 %, brightened, darkened, mirrored,
slowed to 0.9x, sped to 1.1x, with a logo or subtitles burned in (two of each), part of a shot
cut out, two shots inserted into other footage. It is indexed with vindex (default settings,
embedded Ray) in two runs, originals and distractors first, then the copies, and the index is
cached in ``$XDG_CACHE_HOME/vindex/dedup/`` (``--refresh`` indexes again).

Truth: each shot vindex found is traced, through the frame mapping the corpus recorded, to the
frames of original footage it shows; two shots are duplicates when at least half of the
shorter one's footage is in the other. Scores are over pairs of shots in different videos: precision (pairs grouped
that are duplicates), recall (duplicate pairs grouped), per alteration (pairs with a shot of a
copy of that kind) and overall; for the chosen signal at a sweep of thresholds, for the other
signals measured, and for the common rule "shot embedding cosine >= 0.9". Then how far the
sequence rule (a pair below the threshold held up by the shots around it, ``SEQUENCE_SLACK``)
can be trusted: the pairs it raises, true and false, at a sweep of slacks, and the slack chosen
with each alteration left out, scored on that alteration's pairs.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


from benchmarks.dedup_corpus import corpus_dir, ensure_corpus


def index_dir() -> Path:
    return corpus_dir().with_name(corpus_dir().name.replace("corpus-", "index-"))


def ensure_index(refresh: bool = False) -> Path:
    """The corpus indexed with vindex (default settings), in two runs: originals and
    distractors first, then the copies; cached beside the corpus."""
    from pipeline.config import config_from_dict
    from pipeline.execution.ray_runtime import init_local_ray
    from pipeline.execution.runner import run_index

    root = index_dir()
    if (root / "done").exists() and not refresh:
        return root / "index"
    corpus = ensure_corpus()
    shutil.rmtree(root, ignore_errors=True)
    truth = json.loads((corpus / "truth.json").read_text())["videos"]
    for part, kinds in (("base", ("original", "distractor")), ("copies", ("copy",))):
        folder = root / "sources" / part
        folder.mkdir(parents=True)
        for name, video in truth.items():
            if video["kind"] in kinds:
                shutil.copy(corpus / name, folder / name)
    config = config_from_dict({})
    import ray

    if not ray.is_initialized():
        init_local_ray(object_store_memory=config.compute.embedded_object_store_mb * 2**20)
    for part in ("base", "copies"):
        started = time.perf_counter()
        summary = run_index(str(root / "sources" / part), str(root / "index"), config, show_progress=False)
        if summary.counts["failed"]:
            raise RuntimeError(f"videos failed: {summary.failures}")
        print(f"indexed {part}: {summary.counts['ok']} videos, {summary.counts['frames']} frames in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    ray.shutdown()
    (root / "done").write_text("ok")
    return root / "index"


# --- truth ------------------------------------------------------------------------------------


def trace(truth: dict, video: str, start_frame: int, end_frame: int) -> set[tuple[str, int]]:
    """The frames of original footage (video name, frame) a shot shows."""
    frames = set()
    for origin, out_first, out_last, origin_first, speed in truth["videos"][video]["origin"]:
        for frame in range(max(start_frame, out_first), min(end_frame, out_last) + 1):
            frames.add((origin, origin_first + int((frame - out_first) * speed)))
    return frames


def duplicates(a: set[tuple[str, int]], b: set[tuple[str, int]]) -> bool:
    """Two shots are duplicates when at least half of the shorter one's footage is in the other."""
    return bool(a) and bool(b) and 2 * len(a & b) >= min(len(a), len(b))


@dataclass
class Labelled:
    """The indexed shots with their truth."""

    shots: Any  # pipeline.index.dedup.Shots
    video: list[str]  # file name per shot
    footage: list[set[tuple[str, int]]]  # per shot: the frames of original footage it shows
    alteration: dict[str, str | None]  # per file name
    keyframes: list[np.ndarray]  # per shot: its keyframes' unit embeddings [k, 1280]
    colour: np.ndarray  # per shot: its colour histogram [64]
    _truth: set[tuple[int, int]] | None = None

    def true_pairs(self) -> set[tuple[int, int]]:
        if self._truth is None:
            self._truth = {(a, b) for a in range(len(self.video)) for b in range(a + 1, len(self.video))
                           if self.video[a] != self.video[b] and duplicates(self.footage[a], self.footage[b])}
        return self._truth

    def kinds(self, pair: tuple[int, int]) -> set[str]:
        """The alterations a pair tests: of the copies among its two shots ('original' where neither is one)."""
        found = {self.alteration[self.video[r]] for r in pair} - {None}
        return {k for k in found if k is not None} or {"original"}


def label(index_uri: str) -> Labelled:
    from pipeline.index.dedup import read_shots
    from pipeline.index.reader import open_index

    truth = json.loads((ensure_corpus() / "truth.json").read_text())
    index = open_index(index_uri)
    shots = read_shots(index)
    names = {r["video_id"]: Path(r["uri"]).name for r in index.table("videos", columns=["video_id", "uri"]).to_pylist()}
    frames = index.table("shots", columns=["video_id", "shot_index", "start_frame", "end_frame"]).to_pylist()
    span = {(r["video_id"], r["shot_index"]): (r["start_frame"], r["end_frame"]) for r in frames}
    video = [names[v] for v in shots.video_id.tolist()]
    footage = [trace(truth, name, *span[(v, s)]) for name, v, s in zip(video, shots.video_id.tolist(), shots.shot_index.tolist())]
    keyframe_rows = index.table("keyframes", columns=["video_id", "shot_index", "embedding"])
    vectors: dict[tuple[str, int], list[np.ndarray]] = {}
    matrix = keyframe_rows.column("embedding").combine_chunks().flatten().to_numpy().reshape(keyframe_rows.num_rows, -1)
    for (v, s), vector in zip(zip(keyframe_rows.column("video_id").to_pylist(), keyframe_rows.column("shot_index").to_pylist()), matrix):
        vectors.setdefault((v, s), []).append(vector / max(np.linalg.norm(vector), 1e-12))
    keyframes = [np.stack(vectors.get((v, s), [np.zeros(matrix.shape[1], np.float32)]))
                 for v, s in zip(shots.video_id.tolist(), shots.shot_index.tolist())]
    alteration = {name: v["alteration"] for name, v in truth["videos"].items()}
    colours = {(r["video_id"], r["shot_index"]): r["colour_histogram"] for r in
               index.table("shots", columns=["video_id", "shot_index", "colour_histogram"]).to_pylist()}
    colour = np.array([colours[(v, s)] for v, s in zip(shots.video_id.tolist(), shots.shot_index.tolist())], np.float32)
    return Labelled(shots, video, footage, alteration, keyframes, colour)


# --- scoring ----------------------------------------------------------------------------------


def grouped_pairs(labelled: Labelled, group_of: np.ndarray) -> set[tuple[int, int]]:
    by_group: dict[str, list[int]] = {}
    for row, group in enumerate(group_of.tolist()):
        by_group.setdefault(group, []).append(row)
    return {(a, b) for rows in by_group.values() for a in rows for b in rows
            if a < b and labelled.video[a] != labelled.video[b]}


def scores_by_kind(labelled: Labelled, predicted: set[tuple[int, int]]) -> dict[str, tuple[float, float, int, int]]:
    """Per alteration and overall: precision, recall, true pairs, predicted pairs."""
    truth = labelled.true_pairs()
    kinds = ["reencode", "crop10", "crop5", "brighter", "darker", "mirror", "slower", "faster", "logo", "subtitles",
             "excerpt", "inserted", "original"]
    out = {}
    for kind in [*kinds, "overall"]:
        t = {p for p in truth if kind == "overall" or kind in labelled.kinds(p)}
        p = {p for p in predicted if kind == "overall" or kind in labelled.kinds(p)}
        hit = len(t & p)
        out[kind] = (hit / len(p) if p else float("nan"), hit / len(t) if t else float("nan"), len(t), len(p))
    return out


def signals(labelled: Labelled) -> dict[str, Any]:
    """Pair scores to compare: each ``(shots, left, right) -> scores``, or None for vindex
    dedup's own (:func:`pipeline.index.dedup.sequence_similarity` at each threshold)."""
    import dataclasses

    from pipeline.index.dedup import EMBEDDING_SLACK, pair_similarity

    def cosine(shots: Any, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->i", shots.embedding[left].astype(np.float32), shots.embedding[right].astype(np.float32))

    def with_colour(weight: float) -> Any:
        def score(shots: Any, left: np.ndarray, right: np.ndarray) -> np.ndarray:
            shared = np.minimum(labelled.colour[left], labelled.colour[right]).sum(axis=1)
            return (1 - weight) * cosine(shots, left, right) + weight * shared
        return score

    def layout(shots: Any, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        plain = dataclasses.replace(shots, embedding=np.ones_like(shots.embedding[:, :1]))
        return pair_similarity(plain, left, right) if len(left) else np.zeros(0, np.float32)

    def keyframe_best(shots: Any, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.array([float((labelled.keyframes[a] @ labelled.keyframes[b].T).max()) for a, b in zip(left, right)],
                        np.float32)

    return {
        "shot embedding": cosine,
        "embedding + colour histogram 0.2": with_colour(0.2),
        "keyframe embeddings, best pair": keyframe_best,
        "luma layout alone (mirror-aware)": layout,
        f"layout capped by embedding + {EMBEDDING_SLACK:.2f}, the pair alone": pair_similarity,
        "the same, or held up by the shots around it (vindex dedup)": None,
    }


def sweep(labelled: Labelled, score: Any, thresholds: list[float]) -> list[tuple[float, dict[str, tuple[float, float, int, int]]]]:
    from pipeline.index.dedup import group_shots

    out = []
    for threshold in thresholds:
        grouping = group_shots(labelled.shots, threshold, similarity=score)  # score None: vindex dedup's
        out.append((threshold, scores_by_kind(labelled, grouped_pairs(labelled, grouping.group_of))))
    return out


def nemo_rule(labelled: Labelled, cosine: float = 0.9) -> dict[str, tuple[float, float, int, int]]:
    """The common rule: a pair is a duplicate where its shot embeddings' cosine is at least 0.9."""
    vectors = labelled.shots.embedding.astype(np.float32)
    sims = vectors @ vectors.T
    pairs = {(a, b) for a, b in zip(*np.nonzero(np.triu(sims >= cosine, 1)))
             if labelled.video[a] != labelled.video[b]}
    return scores_by_kind(labelled, {(int(a), int(b)) for a, b in pairs})


def fmt(value: float) -> str:
    return "  -  " if value != value else f"{value:.3f}"


KINDS_SHOWN = ["reencode", "crop10", "crop5", "brighter", "darker", "mirror", "slower", "faster", "logo", "subtitles",
               "excerpt", "inserted", "overall"]


def print_kinds(title: str, scores: dict[str, tuple[float, float, int, int]]) -> None:
    print(f"\n{title}\n")
    print("| alteration | precision | recall | duplicate pairs | pairs grouped |")
    print("|---|---|---|---|---|")
    for kind in KINDS_SHOWN:
        p, r, t, n = scores[kind]
        print(f"| {kind} | {fmt(p)} | {fmt(r)} | {t} | {n} |")


def video_scores(labelled: Labelled, threshold: float) -> str:
    """Video level: a copy belongs with the video most of its frames come from."""
    from pipeline.index.dedup import group_shots, group_videos

    truth = json.loads((ensure_corpus() / "truth.json").read_text())["videos"]

    def source(name: str) -> str:
        spans: dict[str, int] = {}
        for origin, first, last, _, _ in truth[name]["origin"]:
            spans[origin + ".mp4"] = spans.get(origin + ".mp4", 0) + last - first + 1
        return max(spans, key=lambda k: spans[k])

    names = dict(zip(labelled.shots.video_id.tolist(), labelled.video))
    videos = sorted(set(labelled.video))
    expected = {(a, b) for a in videos for b in videos if a < b and source(a) == source(b)}
    groups: dict[str, list[str]] = {}
    for video in group_videos(labelled.shots, group_shots(labelled.shots, threshold)):
        groups.setdefault(video.group_id, []).append(names[video.video_id])
    found = {(a, b) for members in groups.values() for a in members for b in members if a < b}
    hit = len(expected & found)
    return (f"videos (a copy belongs with the video most of its frames come from): {len(expected)} duplicate pairs, "
            f"{len(found)} grouped, precision {hit / max(len(found), 1):.3f}, recall {hit / max(len(expected), 1):.3f}")


def signal_spread(labelled: Labelled) -> None:
    """Per alteration, the signals of its duplicate pairs (median and lowest), beside those of
    the look-alike pairs that are not duplicates: how far each signal holds under each change."""
    shots = labelled.shots
    rows, cols = 9, 16

    def plain_layout(a: int, b: int) -> float:
        return float(shots.layout[a].astype(np.float32) @ shots.layout[b].astype(np.float32))

    def mirrored_layout(a: int, b: int) -> float:
        flipped = shots.layout[b].astype(np.float32).reshape(rows, cols)[:, ::-1].ravel()
        return max(plain_layout(a, b), float(shots.layout[a].astype(np.float32) @ flipped))

    def cosine(a: int, b: int) -> float:
        return float(shots.embedding[a].astype(np.float32) @ shots.embedding[b].astype(np.float32))

    truth = labelled.true_pairs()
    vectors = shots.embedding.astype(np.float32)
    alike = [(a, b) for a, b in zip(*np.nonzero(np.triu(vectors @ vectors.T >= 0.9, 1)))
             if labelled.video[a] != labelled.video[b] and (a, b) not in truth]
    print("\nsignals of the duplicate pairs per alteration (median / lowest), and of the look-alike pairs "
          "(embedding cosine >= 0.9, not duplicates: median / highest)\n")
    print("| pairs | n | embedding cosine | layout correlation | layout, mirror-aware |")
    print("|---|---|---|---|---|")
    for kind in KINDS_SHOWN[:-1]:
        pairs = [p for p in truth if kind in labelled.kinds(p)]
        cells = []
        for measure in (cosine, plain_layout, mirrored_layout):
            values = [measure(a, b) for a, b in pairs]
            cells.append(f"{np.median(values):.3f} / {min(values):.3f}" if values else "-")
        print(f"| {kind} | {len(pairs)} | " + " | ".join(cells) + " |")
    cells = []
    for measure in (cosine, plain_layout, mirrored_layout):
        values = [measure(int(a), int(b)) for a, b in alike]
        cells.append(f"{np.median(values):.3f} / {max(values):.3f}" if values else "-")
    print(f"| look-alikes, not duplicates | {len(alike)} | " + " | ".join(cells) + " |")


SLACKS = [0.0, 0.1, 0.2, 0.25, 0.3, 0.34, 0.4, 0.45, 0.5, 0.6]


def sequence_robustness(labelled: Labelled, threshold: float) -> None:
    """The sequence rule at a sweep of slacks: the pairs it raises over the threshold (true and
    false, among all pairs of shots of different videos), and the groups' precision / recall;
    then, per alteration left out, the slack the other pairs choose (the most recall at
    precision 0.95 or more; the middle of the slacks tied), scored on the left-out pairs."""
    from functools import partial

    from pipeline.index.dedup import SEQUENCE_SLACK, group_shots, pair_similarity, sequence_similarity

    shots, truth = labelled.shots, labelled.true_pairs()
    left, right = np.triu_indices(len(shots), 1)
    other = shots.video_id[left] != shots.video_id[right]
    left, right = left[other], right[other]
    alone = pair_similarity(shots, left, right)
    print(f"\nthe sequence rule at threshold {threshold} (vindex dedup: slack {SEQUENCE_SLACK}): pairs raised over "
          "the threshold by the shots around them, duplicates / not, and the groups\n")
    print("| slack | raised: duplicates | raised: not duplicates | lowest duplicate raised | highest other raised "
          "| precision | recall | pairs grouped |")
    print("|---|---|---|---|---|---|---|---|")
    grouped: dict[float, set[tuple[int, int]]] = {}
    for slack in SLACKS:
        measure = partial(sequence_similarity, threshold=threshold, slack=slack)
        raised = (measure(shots, left, right) >= threshold) & (alone < threshold)
        good = [bool((int(a), int(b)) in truth) for a, b in zip(left[raised], right[raised])]
        values = alone[raised]
        low_true = min((v for v, g in zip(values, good) if g), default=float("nan"))
        high_false = max((v for v, g in zip(values, good) if not g), default=float("nan"))
        grouped[slack] = grouped_pairs(labelled, group_shots(shots, threshold, similarity=measure).group_of)
        hit = len(grouped[slack] & truth)
        print(f"| {slack:.2f} | {sum(good)} | {len(good) - sum(good)} | {fmt(low_true)} | {fmt(high_false)} "
              f"| {fmt(hit / max(len(grouped[slack]), 1))} | {fmt(hit / len(truth))} | {len(grouped[slack])} |")

    def score(pairs: set[tuple[int, int]], keep: Any) -> tuple[float, float, int, int]:
        t = {p for p in truth if keep(p)}
        found = {p for p in pairs if keep(p)}
        hit = len(t & found)
        return (hit / len(found) if found else float("nan"), hit / len(t) if t else float("nan"), len(t), len(found))

    print("\nleave one alteration out: the slack chosen on the other pairs, scored on the pairs of the one left out\n")
    print("| left out | slack chosen | its pairs: precision | recall | duplicate pairs | pairs grouped "
          "| same pairs, slack 0: recall |")
    print("|---|---|---|---|---|---|---|")
    for kind in KINDS_SHOWN[:-1]:
        rest = [s for s in SLACKS if score(grouped[s], lambda p: kind not in labelled.kinds(p))[0] >= 0.95]
        if not rest:
            print(f"| {kind} | none reaches 0.95 | | | | | |")
            continue
        recall = {s: score(grouped[s], lambda p: kind not in labelled.kinds(p))[1] for s in rest}
        tied = [s for s in rest if recall[s] == max(recall.values())]
        chosen = tied[len(tied) // 2]
        p, r, t, n = score(grouped[chosen], lambda p: kind in labelled.kinds(p))
        r0 = score(grouped[0.0], lambda p: kind in labelled.kinds(p))[1]
        print(f"| {kind} | {chosen:.2f} | {fmt(p)} | {fmt(r)} | {t} | {n} | {fmt(r0)} |")


def incremental_check(labelled: Labelled, threshold: float) -> str:
    """Group the first run's videos, then let the copies join those groups; compare with one pass."""
    from pipeline.index.dedup import group_shots, shots_from_arrays

    shots = labelled.shots
    base = np.array([labelled.alteration[v] is None for v in labelled.video])
    first = shots_from_arrays(shots.video_id[base].tolist(), shots.shot_index[base].tolist(),
                              shots.embedding[base].astype(np.float32), video_run_id=shots.video_run_id[base].tolist(),
                              duration_s=shots.duration_s[base], pixels=shots.pixels[base],
                              layout=shots.layout[base].astype(np.float32))
    grouping = group_shots(first, threshold)
    earlier = {(v, int(s), r): (g, grouping.representative[g] == row)
               for row, (v, s, r, g) in enumerate(zip(first.video_id, first.shot_index, first.video_run_id, grouping.group_of))}
    joined = group_shots(shots, threshold, earlier)
    once = group_shots(shots, threshold)
    a, b = grouped_pairs(labelled, joined.group_of), grouped_pairs(labelled, once.group_of)
    return (f"incremental (base videos first, then the copies joining): {len(a)} pairs grouped, one pass: {len(b)}, "
            f"differing: {len(a ^ b)}; shots compared in the second pass: {int((~base).sum())} of {len(shots)}")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.measure import machine_header

    from pipeline.index.dedup import DEFAULT_THRESHOLD

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refresh", action="store_true", help="index the corpus again")
    args = parser.parse_args(argv)
    print(machine_header())
    index = ensure_index(args.refresh)
    labelled = label(str(index))
    truth = labelled.true_pairs()
    print(f"\ncorpus: {len(set(labelled.video))} videos, {len(labelled.shots)} shots, {len(truth)} duplicate pairs "
          f"(shots of different videos showing the same footage)")
    thresholds = [0.80, 0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98]
    print("\nsignals: overall precision / recall of the groups at each threshold\n")
    print("| signal | " + " | ".join(f"{t:.2f}" for t in thresholds) + " |")
    print("|---|" + "---|" * len(thresholds))
    results = {}
    for name, score in signals(labelled).items():
        results[name] = sweep(labelled, score, thresholds)
        cells = [f"{fmt(s['overall'][0])} / {fmt(s['overall'][1])}" for _, s in results[name]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    chosen = list(signals(labelled).values())[-1]
    print_kinds(f"vindex dedup (threshold {DEFAULT_THRESHOLD}), per alteration:",
                sweep(labelled, chosen, [DEFAULT_THRESHOLD])[0][1])
    print_kinds(f"the pair alone (no sequence rule, threshold {DEFAULT_THRESHOLD}), per alteration:",
                sweep(labelled, list(signals(labelled).values())[-2], [DEFAULT_THRESHOLD])[0][1])
    sequence_robustness(labelled, DEFAULT_THRESHOLD)
    print_kinds("the common rule, shot embedding cosine >= 0.9, pair by pair:", nemo_rule(labelled, 0.9))
    print("\n" + video_scores(labelled, DEFAULT_THRESHOLD))
    signal_spread(labelled)
    print("\n" + incremental_check(labelled, DEFAULT_THRESHOLD))
    return 0


if __name__ == "__main__":
    sys.exit(main())
