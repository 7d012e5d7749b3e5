"""Scenes derived again from what the index stores, without decoding.

A video whose decoded outputs are current (same object, same weights, same settings for
decoding and the networks) but whose scene settings changed keeps its shots and keyframes:
its scenes are grouped again from the shots' stored embeddings and colour histograms, and its
keyframes get their new ``scene_index``. Every row is written again under the new run, so that all of a video's
rows belong to the run its ``videos`` row names.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc

from pipeline.config import Config
from pipeline.index.store import Index
from pipeline.algorithms.stitch import VideoRows, scene_of_shot, scene_rows


@dataclass(frozen=True)
class Rederived:
    """The outcome for one batch: rows of the re-derived videos, and the ids of videos that
    cannot be (their shots were stored before shots kept an embedding and a colour histogram):
    those are re-indexed, so that every video's scenes come from one rule."""

    rows: list[VideoRows]
    not_derivable: list[str]


def scenes_from_stored_shots(
    index: Index, video_ids: list[str], config: Config, run_id: str, derived_digest: str
) -> Rederived:
    """New scenes for ``video_ids`` from their stored shot embeddings and colour histograms;
    keyframes re-labelled."""
    where = pc.field("video_id").isin(video_ids)
    videos = {row["video_id"]: row for row in index.read("videos", filter=where).to_pylist()}
    shots = _by_video(index.read("shots", filter=where).to_pylist())
    keyframes = _by_video(index.read("keyframes", filter=where).to_pylist())
    now = dt.datetime.now(dt.timezone.utc)
    rows, missing = [], []
    for video_id in video_ids:
        video = videos.get(video_id)
        video_shots = sorted(shots.get(video_id, []), key=lambda s: s["shot_index"])
        if video is None or any(s["embedding"] is None or s.get("colour_histogram") is None for s in video_shots):
            missing.append(video_id)
            continue
        shot_rows = [{**s, "run_id": run_id} for s in video_shots]
        embeddings = (
            np.asarray([s["embedding"] for s in video_shots], np.float32) if video_shots else np.zeros((0, 0), np.float32)
        )
        scenes = scene_rows(shot_rows, embeddings, config.scenes, run_id)
        scene_index = scene_of_shot(scenes)
        keyframe_rows = [
            {**k, "scene_index": scene_index[k["shot_index"]], "run_id": run_id} for k in keyframes.get(video_id, [])
        ]
        marker = {**video, "num_scenes": len(scenes), "derived_digest": derived_digest, "run_id": run_id, "indexed_at": now}
        rows.append(VideoRows(marker, shot_rows, scenes, keyframe_rows))
    return Rederived(rows, missing)


def _by_video(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["video_id"]].append(row)
    return grouped


__all__ = ["Rederived", "scenes_from_stored_shots"]
