"""Fit the centre that scene grouping subtracts from shot embeddings, and write it as code.

    python benchmarks/fit_embedding_centre.py [--dev-set DIR] [--check]

Every shot embedding of EfficientNet-Lite0 shares a large component with every other, whatever
it shows (the mean of the stored shot embeddings has norm 0.59, and a shot's cosine to it is
about 0.6): two shots of unrelated places are 0.3-0.5 alike, which leaves little room between
"another place" and "another view of this place". The centre is that shared part: the mean of
the embeddings the index stored for vindex's own shots of every development set
(``benchmarks/scenes.py`` caches them: the committed sets and, where present, scenes-dev's
features, never its videos), each shot counted once. It is written to
``pipeline/algorithms/embedding_centre.py`` at 4 decimals (rounding changes no scene on the
sets). ``--check`` only says whether the committed file is what this fit writes.

A new centre changes the scenes of indexes already written, which a run derives again only
when the digest of the derived settings changes: change a ``scenes.*`` default with it, or
derive them again with ``vindex run --rederive-scenes``.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
from pathlib import Path

import numpy as np

import benchmarks.scenes as bench
from benchmarks.scene_methods import load_videos

TARGET = Path(__file__).resolve().parents[1] / "pipeline" / "algorithms" / "embedding_centre.py"
PER_LINE = 8


def fit(sets: dict[str, list[bench.CachedVideo]]) -> np.ndarray:
    """The mean stored shot embedding over every video of ``sets`` (unit-norm rows)."""
    rows = []
    for videos in sets.values():
        for video in videos:
            if video.vindex_shot_embeddings is None:
                raise SystemExit(f"{video.name}: the cache keeps no stored embeddings; run python benchmarks/scenes.py")
            rows.append(video.shot_embeddings(video.vindex_shots))
    return np.concatenate(rows).mean(axis=0)


def module_text(centre: np.ndarray, sets: dict[str, list[bench.CachedVideo]]) -> str:
    shots = sum(len(v.vindex_shots) for videos in sets.values() for v in videos)
    described = ", ".join(f"{name} ({len(videos)} videos)" for name, videos in sets.items())
    values = [f"{x:.4f}" for x in centre]
    lines = ["    " + ", ".join(values[k : k + PER_LINE]) + "," for k in range(0, len(values), PER_LINE)]
    return (
        '"""The centre of the shot embeddings\' space, which scene grouping subtracts before comparing shots.\n\n'
        "Written by ``python benchmarks/fit_embedding_centre.py`` (do not edit by hand): the mean of the\n"
        f"stored embeddings of vindex's {shots} shots of {described}.\n"
        "EfficientNet-Lite0's embeddings of any two frames share this part; less it, the cosine of two\n"
        "shots measures what differs between them (``pipeline.algorithms.scenes``).\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "import numpy as np\n\n"
        f"#: float32 [{len(centre)}]: EfficientNet-Lite0's embedding width.\n"
        "EMBEDDING_CENTRE = np.array(\n    [\n" + "\n".join("    " + line for line in lines) + "\n    ],\n    np.float32,\n)\n"
        "EMBEDDING_CENTRE.setflags(write=False)\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dev-set", type=Path, default=bench.DEV_SET, help="the scenes-dev set (videos/, gt/), read in place")
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    args = parser.parse_args()
    sets = {name: load_videos(set_dir) for name, set_dir in bench.development_sets(args.dev_set).items()}
    text = module_text(fit(sets), sets)
    if args.check:
        same = TARGET.exists() and TARGET.read_text() == text
        print(f"{TARGET.name}: {'as fitted' if same else 'differs from the fit'}")
        raise SystemExit(0 if same else 1)
    TARGET.write_text(text)
    print(f"wrote {TARGET} from {', '.join(f'{n}: {len(v)} videos' for n, v in sets.items())}")


if __name__ == "__main__":
    main()
