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
shot of the original footage most of its frames show; two shots are duplicates when they trace
to the same one. Scores are over pairs of shots in different videos: precision (pairs grouped
that are duplicates), recall (duplicate pairs grouped), per alteration (pairs with a shot of a
copy of that kind) and overall; for the chosen signal at a sweep of thresholds, for the other
signals measured, and for the common rule "shot embedding cosine >= 0.9".
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dedup_corpus import corpus_dir, ensure_corpus  # noqa: E402


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
