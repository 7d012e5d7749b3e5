"""What an indexed video's rows depend on, as digests a run compares to decide what to redo:
the networks' weights, the code's :data:`OUTPUTS_VERSION` and the settings that change
outputs (:meth:`pipeline.config.Config.digest` of ``OUTPUTS``) re-decode a video; the settings
of what is derived from stored outputs (scenes, ``DERIVED``) only derive it again."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import dataclass
from typing import Any

from pipeline.config import DERIVED, OUTPUTS, Config

#: Bumped whenever code, not settings, changes what a video's rows hold (stored columns,
#: shot post-processing, keyframe rules), so the next run re-indexes what an older vindex
#: wrote. 2: shots keep their embedding; flash filter; keyframes avoid mixed, black and flash
#: frames and weigh sharpness. 3: shots' curation signals (motion, brightness, sharpness, still):
#: the columns are added to an older index as null, and the next run re-indexes its videos to
#: fill them (the per-frame statistics they come from are not stored). 4: a video's last
#: shot-network window covers only its last frames (``segments.window_middles``), which moves
#: the transition probabilities of those frames slightly; and on CPUs "auto" precision runs
#: the shot network's convolutions in int8 (``pipeline.models.quantized``). 5: black frames next to
#: a transition belong to it (a fade through black is one gradual transition: no shot of black
#: frames alone, no black keyframe; ``pipeline.algorithms.shots.join_black_frames``). 6: shots keep
#: a colour histogram of their frames' colour layouts (``shots.colour_histogram``), which scenes
#: fuse with the embedding: the column is added to an older index as null, and the next run
#: re-indexes its videos to fill it. 7: shots keep the mean luma layout of their frames
#: (``shots.luma_layout``), which ``vindex dedup`` compares: added as null, filled the same way.
OUTPUTS_VERSION = "7"


def versions(config: Config) -> dict[str, str]:
    # From the light weights module, not the networks' own: those import torch (about 1 s of a
    # run's start-up on 2 CPUs), which the driver never needs.
    from pipeline.models.weights import EFFICIENTNET_LITE0_WEIGHTS, TRANSNETV2_WEIGHTS, recorded_digest

    return {
        "vindex": importlib.metadata.version("vindex"),
        "outputs": OUTPUTS_VERSION,
        "transnetv2_weights": recorded_digest(TRANSNETV2_WEIGHTS),
        "efficientnet_lite0_weights": recorded_digest(EFFICIENTNET_LITE0_WEIGHTS),
        "config": config.digest(OUTPUTS),
        "derived": derived_digest(config),
    }


def derived_digest(config: Config) -> str:
    """What scenes, derived from stored outputs, depend on: the ``scenes.*`` settings, and the
    embedding centre they subtract and the within-scene directions they shrink where they do
    (refitted constants change scenes as a setting would, so changed ones derive them again
    too)."""
    settings = config.digest(DERIVED)
    if not config.scenes.centre_embeddings:
        return settings
    import numpy as np

    from pipeline.algorithms.embedding_centre import EMBEDDING_CENTRE

    parts = [settings, hashlib.sha256(np.ascontiguousarray(EMBEDDING_CENTRE, dtype=np.float32).tobytes()).hexdigest()[:16]]
    if config.scenes.shrink_within_scene:
        from pipeline.algorithms.within_scene import within_scene

        parts.append(within_scene().digest())
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def _digested_text(value: Any) -> str:
    # What is hashed: JSON with sorted keys. It must never change: every index's videos carry
    # digests of it, and another text would re-decode them all.
    return json.dumps(value, sort_keys=True, default=str)


def index_digest(version_info: dict[str, str]) -> str:
    """What decoding and the networks produce depends on: weights, :data:`OUTPUTS_VERSION` and
    the settings that change outputs (``videos.config_digest``). A change re-decodes a video."""
    relevant = {k: v for k, v in version_info.items() if k not in ("vindex", "derived")}
    return hashlib.sha256(_digested_text(relevant).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Digests:
    """What a run compares with each indexed video's digests to decide what to do with it."""

    #: Weights and the settings that change outputs: a different one re-decodes.
    outputs: str
    #: Settings of what is derived from stored outputs (scenes): a different one re-derives.
    derived: str

    @classmethod
    def of(cls, version_info: dict[str, str]) -> "Digests":
        return cls(index_digest(version_info), version_info["derived"])


__all__ = ["OUTPUTS_VERSION", "Digests", "derived_digest", "index_digest", "versions"]
