"""Each vindex stage alone, the decode ceiling, end to end, and PySceneDetect, on the same files.

    python benchmarks/stages.py [--quick] [--clips 8] [--shots 30] [--long-minutes 0] [--config vindex.yaml]
                                [--rounds 1]

The corpus is the hard generated set of benchmarks/accuracy.py (several sizes and frame
rates), or with --long-minutes one generated 480p clip of that length. Rows, in one run:

* decode ceiling: decord alone reading every frame at the size the pipeline decodes to;
* each stage alone, in this process, one after the other, each on the previous one's
  output rows: plan (probe + split), decode, models (and the two networks each alone:
  TransNetV2 on every frame, the embedding network on the sampled frames), stitch + commit
  (shots, keyframes, scenes, one Delta commit per batch of videos);
* end to end: ``run_index`` through an embedded Ray, warmed up on the sample corpus first
  (Ray's start-up is excluded and printed separately);
* PySceneDetect 0.7 ContentDetector and AdaptiveDetector at their defaults (OpenCV decoding).

frames/s counts video frames covered per second. The last line is end to end divided by
the slowest stage alone: 1.0 would mean the stages overlap perfectly. With --rounds N the
model stage alone and end to end run N times in turn and each pair's ratio is printed with
their median: the machine's speed can drift between two runs minutes apart. Peak memory is the
whole process tree's while the row ran; stage rows include the previous stage's output
rows, held in memory.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from pipeline.synthetic import sample_corpus
from pipeline.config import Config, load_config
from pipeline.index.store import Index
from pipeline.models.inference import embed_frames, predict_transitions
from pipeline.execution.ray_runtime import init_local_ray
from pipeline.execution.assembler import VideoAssembler
from pipeline.execution.records import SegmentRecord
from pipeline.digests import Digests, versions
from pipeline.execution.committer import Committer
from pipeline.execution.runner import new_run_id
from pipeline.sources.listing import list_videos
from pipeline.execution.records import unpack
from pipeline.execution.stages import DecodeStage, ModelStage, PlanStage, Stage

from benchmarks.cpu import CpuSampler
from benchmarks.measure import (
    CACHE,
    QUICK_CLIPS,
    QUICK_SHOTS,
    SCENEDETECT_DETECTORS,
    SCENEDETECT_MISSING,
    add_hard_set_options,
    decode_only,
    hard_corpus,
    long_clip,
    machine_header,
    measure,
    pipeline_run,
    scenedetect_cuts,
    scenedetect_installed,
)

Row = tuple[str, int, float, int]  # name, frames, seconds, peak bytes


def run_stage(stage: Stage, rows: list[SegmentRecord]) -> list[SegmentRecord]:
    out = []
    for row in rows:
        produced = stage(row)
        failed = [r for r in produced if r.get("error_stage")]
        if failed:
            raise RuntimeError(f"{stage.name} failed: {failed[0]['uri']}: {failed[0]['error_message']}")
        out.extend(produced)
    return out


def stitch_and_commit(rows: list[SegmentRecord], config: Config) -> int:
    """Stitch every video from its model rows and commit them in batches to a fresh index,
    as the driver of a run does (rows in the order the stages produced them)."""
    run_id, digest = new_run_id(), Digests.of(versions(config))
    with tempfile.TemporaryDirectory() as folder:
        index = Index(folder)
        index.ensure()
        committer = Committer(index, config.write.commit_every_videos)
        with VideoAssembler(config, run_id, digest.outputs, digest.derived) as assembler:
            for video in assembler.add_all(rows):
                committer.add(video)
            assembler.check_complete()
        committer.flush()
    return sum(r["decoded_frames"] for r in rows)


def fps(row: Row) -> float:
    """A row's frames per second."""
    return row[1] / row[2]


def stage_rows(folder: Path, config: Config, *, keep_decoded: bool = False) -> tuple[list[Row], Callable[[], Row]]:
    """Each stage alone, in order, each fed the previous stage's output; and a function that
    measures the model stage alone again (on the decoded rows, which ``keep_decoded`` keeps in
    memory for it)."""
    out: list[Row] = []
    held: dict[str, list[SegmentRecord]] = {}

    def add(name: str, fn: Callable[[], int]) -> None:
        frames, seconds, peak = measure(fn)
        out.append((name, frames, seconds, peak))
        print(f"{name}: {frames} frames in {seconds:.1f} s", flush=True)

    def plan() -> int:
        listing = [cast(SegmentRecord, video.to_row()) for video in list_videos(str(folder), config.source)]
        held["planned"] = run_stage(PlanStage(config), listing)
        return sum(r["end_frame"] - r["start_frame"] for r in held["planned"])

    def decode() -> int:
        held["decoded"] = run_stage(DecodeStage(config), held["planned"])
        return sum(r["decoded_frames"] for r in held["decoded"])

    model = ModelStage(config)
    model.setup()  # model loading is start-up, not throughput

    def models() -> int:
        held["modelled"] = run_stage(model, held["decoded"])
        return sum(r["decoded_frames"] for r in held["modelled"])

    def shot_network() -> int:
        inference = config.inference
        for row in held["decoded"]:
            predict_transitions(
                model.shot_model, unpack(cast(bytes, row["shot_input"])), window=config.shots.window_frames,
                batch_windows=inference.shot_batch_windows, device=model.device, precision=model.shot_precision,
            )
        return sum(r["decoded_frames"] for r in held["decoded"])

    def embedding_network() -> int:
        for row in held["decoded"]:
            embed_frames(
                model.embed_model, unpack(cast(bytes, row["samples"])), batch_size=config.inference.embed_batch_frames,
                device=model.device, precision=model.embed_precision,
            )
        return sum(r["decoded_frames"] for r in held["decoded"])

    add("plan (probe + split)", plan)
    add("decode stage", decode)
    add(MODEL_ROW, models)
    add(f"  TransNetV2 alone ({model.shot_precision})", shot_network)
    add(f"  embedding alone (1/{config.embed.stride_frames} frames, {model.embed_precision})", embedding_network)
    if not keep_decoded:
        del held["decoded"]
    add("stitch + commit", lambda: stitch_and_commit(held["modelled"], config))

    def model_again() -> Row:
        frames, seconds, peak = measure(models)
        print(f"model stage (both networks), again: {frames} frames in {seconds:.1f} s", flush=True)
        return (MODEL_ROW, frames, seconds, peak)

    return out, model_again


#: The model stage's row, and the stage that end to end is divided by with --rounds.
MODEL_ROW = "model stage (both networks)"


def print_tree_cpu(cpu: CpuSampler, seconds: float) -> None:
    """The end-to-end row's CPU seconds per kind of process, against what the cores offered."""
    offered = seconds * (os.cpu_count() or 1)
    groups = sorted(cpu.by_group().items(), key=lambda item: -item[1])
    print(f"\nend to end, CPU seconds by process ({offered:.0f} offered: {os.cpu_count()} CPUs x {seconds:.1f} s)")
    for group, cpu_s in groups:
        if cpu_s >= 0.05:
            print(f"  {group:<48} {cpu_s:7.1f}")
    tree = sum(cpu_s for _, cpu_s in groups)
    print(f"  {'other processes of the machine':<48} {max(0.0, cpu.machine_s - tree):7.1f}")
    print(f"  {'idle':<48} {max(0.0, offered - max(cpu.machine_s, tree)):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_hard_set_options(parser, "2 clips of 8 shots: a smoke test")
    parser.add_argument("--long-minutes", type=float, default=0.0, help="use one generated 480p clip of this length")
    parser.add_argument("--config", help="YAML config for the pipeline")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure the model stage alone and end to end this many times, in turn, and print each pair's ratio "
        "(the machine's speed drifts between two runs minutes apart)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.clips, args.shots = QUICK_CLIPS, QUICK_SHOTS
    print(machine_header(), flush=True)
    config = load_config(args.config)
    if args.long_minutes > 0:
        folder, corpus = long_clip(args.long_minutes), f"{args.long_minutes:g} min 854x480"
    else:
        folder = hard_corpus(args.clips, args.shots)[0]
        corpus = f"hard set, {args.clips} clips of {args.shots} shots"
    paths = sorted(folder.glob("*.mp4"))

    rows: list[Row] = []
    frames, seconds, peak = measure(lambda: decode_only(paths, config))
    rows.append(("decode ceiling (decord alone)", frames, seconds, peak))
    stages, model_again = stage_rows(folder, config, keep_decoded=args.rounds > 1)
    rows.extend(stages)
    slowest = min((r for r in stages if not r[0].startswith(" ")), key=fps)

    others: list[Row] = []  # before Ray starts, so that their memory is their own
    for detector in SCENEDETECT_DETECTORS if scenedetect_installed() else ():
        frames, seconds, peak = measure(lambda: sum(scenedetect_cuts(p, detector)[1] for p in paths))
        others.append((f"PySceneDetect {detector}", frames, seconds, peak))
    if not scenedetect_installed():
        print(SCENEDETECT_MISSING, flush=True)

    started = time.perf_counter()
    init_local_ray()
    ray_seconds = time.perf_counter() - started
    sample = CACHE / "sample"
    sample_corpus(sample)
    pipeline_run(sample, config)  # warm-up: workers, model load
    with CpuSampler([os.getpid()]) as cpu:
        frames, seconds, peak = measure(lambda: pipeline_run(folder, config))
    end_to_end = ("end to end (Ray, warm)", frames, seconds, peak)
    rows += [end_to_end, *others]
    model = next(r for r in stages if r[0] == MODEL_ROW)
    pairs = [(model, end_to_end)]
    for _ in range(1, args.rounds):
        again = model_again()
        frames, seconds, peak = measure(lambda: pipeline_run(folder, config))
        print(f"end to end, again: {frames} frames in {seconds:.1f} s", flush=True)
        pairs.append((again, ("end to end (Ray, warm), again", frames, seconds, peak)))

    print(f"\ncorpus: {corpus}, {len(paths)} files; ray start-up {ray_seconds:.1f} s (excluded)")
    header = f"{'stage':<36} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'peak RSS':>9}"
    print(header)
    print("-" * len(header))
    for name, frames, seconds, peak in rows:
        print(f"{name:<36} {frames:>7} {seconds:>8.1f} {frames / seconds:>9.0f} {peak / 2**20:>7.0f}MB")
    print_tree_cpu(cpu, seconds)
    ratio = fps(end_to_end) / fps(slowest)
    print(f"end to end / slowest stage alone ({slowest[0]}): {ratio:.2f}")
    if len(pairs) > 1:
        ratios = [fps(e2e) / fps(alone) for alone, e2e in pairs]
        print(
            "end to end / model stage alone, each round (model stage s, end to end s): "
            + ", ".join(f"{r:.2f} ({alone[2]:.1f}, {e2e[2]:.1f})" for r, (alone, e2e) in zip(ratios, pairs))
            + f"; median {statistics.median(ratios):.2f}"
        )
    print(
        f"config: precision={config.inference.precision} window={config.shots.window_frames} "
        f"decode box={config.decode.width}x{config.decode.height} threads={config.decode.threads} "
        f"embed stride={config.embed.stride_frames}; {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
