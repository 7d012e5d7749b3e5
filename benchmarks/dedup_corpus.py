"""The generated corpus of ``benchmarks/dedup_quality.py``: real footage, copies of parts of it
altered in known ways, and look-alike footage that is not a copy.

Built from the committed scenes sets (real camera footage, licences in their PROVENANCE.md):

* originals: ``scenes_01``-``scenes_03`` as they are;
* distractors: ``scenes_04`` and ``scenes2_02``, other takes of the same places (hall, office,
  parking, bottles, signer, ...) with other time offsets and crops: alike, never copies;
* copies: two excerpts of 3-4 whole shots per alteration, each from an original, written as a
  video of its own: re-encoded smaller at a low bitrate, cropped 10 % or 5 %, brightened,
  darkened, mirrored, slowed to 0.9x or sped to 1.1x (frames resampled), a logo box burned in,
  subtitles burned in;
* ``excerpt``: part of one shot (starting inside it), cut out of an original;
* ``inserted``: two shots of an original placed between shots of a distractor.

Every video's truth maps each of its frames to the frame of the original footage it shows
(``origin``: video name and frame), so a shot found by vindex in any video is traced to the
shot of the original footage most of its frames show: two shots are duplicates when they
trace to the same one. Written to ``$XDG_CACHE_HOME/vindex/dedup/corpus-<hash>/`` (the hash is
of this file), once.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
SETS = {"scenes_set": HERE / "scenes_set", "scenes_set2": HERE / "scenes_set2"}
ORIGINALS = ("scenes_set/scenes_01", "scenes_set/scenes_02", "scenes_set/scenes_03")
DISTRACTORS = ("scenes_set/scenes_04", "scenes_set2/scenes2_02")
FPS = 25
SEED = 20261207

Frames = np.ndarray  # (n, h, w, 3) uint8


def decode(path: Path) -> Frames:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def encode(path: Path, frames: Frames, *, crf: int = 20, bit_rate: int | None = None) -> None:
    import av

    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if bit_rate is None:
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            stream.bit_rate = bit_rate
            stream.options = {"preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def resize(frames: Frames, width: int, height: int) -> Frames:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def crop(share: float) -> Callable[[Frames], Frames]:
    """Cut ``share`` of the width and height away (more on the left and top), scaled back."""

    def apply(frames: Frames) -> Frames:
        h, w = frames.shape[1:3]
        left, top = int(w * share * 0.6), int(h * share * 0.6)
        right, bottom = w - int(w * share * 0.4), h - int(h * share * 0.4)
        return resize(frames[:, top:bottom, left:right], w, h)

    return apply


def gain(factor: float, offset: float) -> Callable[[Frames], Frames]:
    def apply(frames: Frames) -> Frames:
        return np.clip(frames.astype(np.float32) * factor + offset, 0, 255).astype(np.uint8)

    return apply


def mirror(frames: Frames) -> Frames:
    return np.ascontiguousarray(frames[:, :, ::-1])


def draw(text_at: Callable[[int], str | None], logo: bool) -> Callable[[Frames], Frames]:
    """Burn in a logo box (top right) or a subtitle line (bottom), text changing with the frame."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)

    def apply(frames: Frames) -> Frames:
        out = []
        for i, frame in enumerate(frames):
            image = Image.fromarray(frame)
            pen = ImageDraw.Draw(image)
            w, h = image.size
            text = text_at(i)
            if logo:
                pen.rectangle((w - 92, 8, w - 8, 34), fill=(200, 30, 40))
                pen.text((w - 86, 12), "NEWS 24", fill=(255, 255, 255), font=font)
            elif text:
                pen.text((w // 2, h - 14), text, fill=(255, 255, 255), font=font, anchor="ms", stroke_width=2,
                         stroke_fill=(0, 0, 0))
            out.append(np.asarray(image))
        return np.stack(out)

    return apply


SUBTITLES = ("Where were you last night?", "I told you, at the office.", "Nobody saw you there.",
             "Then ask the guard at the door.", "He left at six, like always.")


def subtitle(i: int) -> str | None:
    line = i // 50  # a line every two seconds, a gap between lines
    return SUBTITLES[line % len(SUBTITLES)] if i % 50 < 42 else None


@dataclass(frozen=True)
class Alteration:
    name: str
    frames: Callable[[Frames], Frames]
    speed: float = 1.0
    small: bool = False  # re-encoded smaller at a low bitrate


ALTERATIONS = (
    Alteration("reencode", lambda f: f, small=True),
    Alteration("crop10", crop(0.10)),
    Alteration("crop5", crop(0.05)),
    Alteration("brighter", gain(1.15, 35)),
    Alteration("darker", gain(0.65, -5)),
    Alteration("mirror", mirror),
    Alteration("slower", lambda f: f, speed=0.9),
    Alteration("faster", lambda f: f, speed=1.1),
    Alteration("logo", draw(lambda i: None, logo=True)),
    Alteration("subtitles", draw(subtitle, logo=False)),
)


def clean_runs(truth: dict, shots: int) -> list[tuple[int, int]]:
    """Runs of ``shots`` consecutive shots that start and end at cuts (no dissolve or fade
    inside or at either end), as (first frame, last frame)."""
    cut_starts = {0} | {t["first_frame"] for t in truth["transitions"] if t["kind"] == "cut"}
    flagged = truth["shots"]
    runs = []
    for i in range(len(flagged) - shots + 1):
        group = flagged[i : i + shots]
        ends_at_cut = i + shots == len(flagged) or flagged[i + shots]["start_frame"] in cut_starts
        inner = all(s["start_frame"] in cut_starts for s in group)
        contiguous = all(a["end_frame"] + 1 == b["start_frame"] for a, b in zip(group, group[1:]))
        if inner and ends_at_cut and contiguous:
            runs.append((group[0]["start_frame"], group[-1]["end_frame"]))
    return runs


def build(root: Path) -> dict[str, dict]:
    """Write the corpus's videos and ``truth.json`` into ``root``; returns the truth."""
    rng = np.random.default_rng(SEED)
    root.mkdir(parents=True, exist_ok=True)
    truths = {key: json.loads((HERE / (key + ".json")).read_text()) for key in (*ORIGINALS, *DISTRACTORS)}
    sources = {key: decode(HERE / (key + ".mp4")) for key in (*ORIGINALS, *DISTRACTORS)}
    truth: dict[str, dict] = {}

    def name_of(key: str) -> str:
        return key.split("/")[1]

    for key in (*ORIGINALS, *DISTRACTORS):
        name = name_of(key) + ".mp4"
        (root / name).write_bytes((HERE / (key + ".mp4")).read_bytes())
        frames = len(sources[key])
        truth[name] = {"kind": "original" if key in ORIGINALS else "distractor", "alteration": None,
                       "origin": [[name_of(key), 0, frames - 1, 0, 1.0]]}
    used: set[tuple[str, int]] = set()
    for number, alteration in enumerate(ALTERATIONS):
        for copy in range(2):
            key = ORIGINALS[(number * 2 + copy) % len(ORIGINALS)]
            runs = [r for r in clean_runs(truths[key], 3) if 90 <= r[1] - r[0] + 1 <= 260 and (key, r[0]) not in used]
            first, last = runs[int(rng.integers(len(runs)))]
            used.add((key, first))
            source = sources[key][first : last + 1]
            count = int(round(len(source) / alteration.speed))
            picks = np.minimum((np.arange(count) * alteration.speed).astype(int), len(source) - 1)
            frames = alteration.frames(source[picks])
            name = f"copy_{alteration.name}_{copy + 1}.mp4"
            if alteration.small:
                encode(root / name, resize(frames, 192, 108), bit_rate=120_000)
            else:
                encode(root / name, frames)
            truth[name] = {"kind": "copy", "alteration": alteration.name,
                           "origin": [[name_of(key), 0, count - 1, first, alteration.speed]]}
    # Part of one long shot, starting inside it, cut out of an original.
    key = ORIGINALS[0]
    long_shot = max(truths[key]["shots"], key=lambda s: s["end_frame"] - s["start_frame"])
    first = long_shot["start_frame"] + (long_shot["end_frame"] - long_shot["start_frame"]) // 4
    last = long_shot["end_frame"]
    encode(root / "copy_excerpt_1.mp4", sources[key][first : last + 1])
    truth["copy_excerpt_1.mp4"] = {"kind": "copy", "alteration": "excerpt",
                                   "origin": [[name_of(key), 0, last - first, first, 1.0]]}
    # Two shots of an original between shots of a distractor.
    key, other = ORIGINALS[1], DISTRACTORS[1]
    first, last = [r for r in clean_runs(truths[key], 2) if (key, r[0]) not in used][-1]
    host = clean_runs(truths[other], 2)
    (a0, a1), (b0, b1) = host[0], host[-1]
    parts = [sources[other][a0 : a1 + 1], sources[key][first : last + 1], sources[other][b0 : b1 + 1]]
    encode(root / "copy_inserted_1.mp4", np.concatenate(parts))
    n0, n1 = len(parts[0]), len(parts[1])
    truth["copy_inserted_1.mp4"] = {"kind": "copy", "alteration": "inserted", "origin": [
        [name_of(other), 0, n0 - 1, a0, 1.0],
        [name_of(key), n0, n0 + n1 - 1, first, 1.0],
        [name_of(other), n0 + n1, n0 + n1 + len(parts[2]) - 1, b0, 1.0],
    ]}
    shots = {name_of(k) + ".mp4": [(s["start_frame"], s["end_frame"]) for s in truths[k]["shots"]] for k in truths}
    (root / "truth.json").write_text(json.dumps({"videos": truth, "origin_shots": shots}, indent=1))
    return truth


def corpus_dir() -> Path:
    from pipeline.cache import cache_dir

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return cache_dir("dedup") / f"corpus-{digest}"


def ensure_corpus() -> Path:
    """The corpus folder (videos and ``truth.json``), built first if missing."""
    root = corpus_dir()
    if not (root / "truth.json").exists():
        build(root.with_suffix(".tmp"))
        root.with_suffix(".tmp").rename(root)
    return root


if __name__ == "__main__":
    print(ensure_corpus())
