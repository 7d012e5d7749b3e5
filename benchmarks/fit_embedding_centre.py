"""Fit the centre that scene grouping subtracts from shot embeddings, and the within-scene
directions it shrinks, and write both into the package.

    python benchmarks/fit_embedding_centre.py [--dev-set DIR] [--check]

Every shot embedding of EfficientNet-Lite0 shares a large component with every other, whatever
it shows (the mean of the stored shot embeddings has norm 0.59, and a shot's cosine to it is
about 0.6): two shots of unrelated places are 0.3-0.5 alike, which leaves little room between
"another place" and "another view of this place". The centre is that shared part: the mean of
the embeddings the index stored for vindex's own shots of every development set
(``benchmarks/scenes.py`` caches them: the committed sets and, where present, scenes-dev's
features, never its videos), each shot counted once. It is written to
``pipeline/algorithms/embedding_centre.py`` at 4 decimals (rounding changes no scene on the
sets).

The within-scene directions (``pipeline/algorithms/within_scene.py``): each shot's centred
embedding (less the centre as written, at 4 decimals) less the mean of the shots in its true
scene; the ``FIT_DIRECTIONS`` largest eigen-directions of their scatter, each shrunk by
``1 - sqrt(FIT_STRENGTH / (s / s_max + FIT_STRENGTH))``, written to
``pipeline/algorithms/within_scene_directions.npz`` (float16 directions). A shot belongs to
the true scene holding its middle frame; scenes of one shot add nothing.
The strength and the number of directions kept are ``FIT_STRENGTH`` and ``FIT_DIRECTIONS`` of
that module (``python benchmarks/scene_methods.py --shrink-sweep`` compares strengths). The
stored embeddings differ a little with the precision ``inference.precision: auto`` picks on the
machine that indexed the sets, so a fit there can differ in the last digits.

``--check`` only says whether the committed files are what this fit writes.

A new centre or new directions change the scenes of indexes already written: the derived
digest holds a hash of each (``pipeline.digests.derived_digest``), so the next run derives
every video's scenes again, without decoding.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
from pathlib import Path

import numpy as np

import benchmarks.scenes as bench
from benchmarks.scene_methods import load_videos, scene_deviations

from pipeline.algorithms.within_scene import DIRECTIONS_FILE, FIT_DIRECTIONS, FIT_STRENGTH, fit_within_scene

TARGET = Path(__file__).resolve().parents[1] / "pipeline" / "algorithms" / "embedding_centre.py"
DIRECTIONS_TARGET = TARGET.with_name(DIRECTIONS_FILE)
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


def rounded(centre: np.ndarray) -> np.ndarray:
    """The centre as the module holds it (4 decimals, float32)."""
    return np.array([float(f"{x:.4f}") for x in centre], np.float32)


def directions_arrays(sets: dict[str, list[bench.CachedVideo]], centre: np.ndarray) -> dict[str, np.ndarray]:
    """What ``within_scene_directions.npz`` holds."""
    videos = [video for group in sets.values() for video in group]
    directions, shrink = fit_within_scene(scene_deviations(videos, rounded(centre)), FIT_STRENGTH, FIT_DIRECTIONS)
    shots = sum(len(v.vindex_shots) for videos in sets.values() for v in videos)
    described = ", ".join(f"{name} ({len(videos)} videos)" for name, videos in sets.items())
    # A direction's sign is arbitrary: fix it (largest entry positive) so that a refit writes the same file.
    directions = directions * np.sign(directions[np.arange(len(directions)), np.abs(directions).argmax(axis=1)])[:, None]
    return {
        "directions": directions.astype(np.float16),
        "shrink": shrink.astype(np.float32),
        "strength": np.array(FIT_STRENGTH),
        "shots": np.array(shots),
        "sets": np.array(f"vindex's {shots} shots of {described}"),
    }


def same_arrays(path: Path, arrays: dict[str, np.ndarray]) -> bool:
    if not path.exists():
        return False
    with np.load(path) as data:
        return set(data.files) == set(arrays) and all(np.array_equal(data[k], v) for k, v in arrays.items())


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
    centre = fit(sets)
    text = module_text(centre, sets)
    arrays = directions_arrays(sets, centre)
    if args.check:
        same_centre = TARGET.exists() and TARGET.read_text() == text
        same_directions = same_arrays(DIRECTIONS_TARGET, arrays)
        print(f"{TARGET.name}: {'as fitted' if same_centre else 'differs from the fit'}")
        print(f"{DIRECTIONS_TARGET.name}: {'as fitted' if same_directions else 'differs from the fit'}")
        raise SystemExit(0 if same_centre and same_directions else 1)
    TARGET.write_text(text)
    np.savez(DIRECTIONS_TARGET, **arrays)
    print(f"wrote {TARGET} and {DIRECTIONS_TARGET.name} from {', '.join(f'{n}: {len(v)} videos' for n, v in sets.items())}; "
          f"shrink of the {FIT_DIRECTIONS} within-scene directions {arrays['shrink'][0]:.2f} to {arrays['shrink'][-1]:.3f}")


if __name__ == "__main__":
    main()
