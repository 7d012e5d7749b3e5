"""Build the real-footage scenes sets: videos edited from openly licensed camera footage.

    python benchmarks/build_scenes_set.py --sources DIR [--recipe scenes_set|scenes_set2|scenes_set3]
                                          [--out FOLDER] [--seed N] [--no-embed]

A *recipe* (``RECIPES``) is one set: its sources, which places look alike, each video's
scenes (shots per scene, places), the seed and the folder it is written to. ``scenes_set``
(the default) builds ``benchmarks/scenes_set``, ``scenes_set2`` builds
``benchmarks/scenes_set2``, ``scenes_set3`` the held-out ``benchmarks/scenes_set3`` (no scene
setting is chosen on it). ``DIR`` holds the recipe's source files named as in its sources
(where each comes from, its licence and its git blob hash are in the set's
``PROVENANCE.md``; every file's hash is checked before use). The edit is fixed by the seed,
so the same sources give the same videos and the same truth; ``--seed`` and ``--out`` build
another edit of the same footage elsewhere.

What a video is made of: scenes, each 1-6 shots of one place. A scene's shots are cut from
the source footage of that place with different crops, zooms, pans and time offsets (a wide
framing, then a close-up of another part, ...), so shots of one scene are not
near-duplicates. Within a scene shots are joined by cuts; scenes are entered by cuts,
dissolves or fades (a dip to black with one black frame in the middle). Some shots hold a
flash (1-3 overexposed frames). Some neighbouring scenes are different places that look
alike (insects on flowers; two car parks from above; two rooms). A recipe may hold a video
that is a single scene, and videos that are softened (scaled down and back up).

The truth, written as JSON next to each video, is exact by construction:

* ``shots``: each shot's pure frames ``[start_frame, end_frame]`` (no blend frames);
* ``transitions``: between consecutive shots, ``kind`` (cut, dissolve, fade), the blend
  frames ``[first_frame, last_frame]`` (a cut has none: ``last_frame == first_frame - 1``),
  ``scene_boundary`` and ``similar`` (the two places look alike);
* ``scenes``: ``first_shot``, ``last_shot``, ``place`` and frames ``[start_frame, end_frame]``
  that tile the video (a scene entered by a gradual transition starts at its middle frame);
* ``flashes``: ``[first_frame, last_frame]`` of each flash.

``SHA256SUMS`` beside the videos records each video file's hash as committed
(``tests/test_scenes_sets.py`` checks the files, the truth and the frame counts).

After writing, the script embeds every shot as vindex does (every 6th frame at the decode
size through EfficientNet-Lite0, the mean of the shot's frames) and prints the cosine
similarity of adjacent shots within scenes and across scene boundaries.
"""

from __future__ import annotations

if not __package__:  # run as `python benchmarks/NAME.py`, not with -m: see benchmarks/_checkout.py
    import _checkout  # noqa: F401

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 320, 180
FPS = 25
CRF = 23
SEED = 20240611
OUT_DIR = Path(__file__).with_name("scenes_set")


@dataclass(frozen=True)
class Source:
    """One source file: a single continuous shot of ``place``."""

    name: str
    place: str
    #: git blob SHA-1 of the file as committed upstream (``git hash-object``).
    blob: str
    #: Output frames each source frame is shown for (2: a 12.5 fps preview plays at its own speed).
    repeat: int = 1
    #: Degrees (clockwise) each decoded frame is turned to stand upright (a file stored on its side).
    rotate: int = 0
    #: The part of the (upright) picture that is used, as fractions (x0, y0, x1, y1): a strip
    #: that carries a burnt-in clock is left out.
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)


SOURCES: tuple[Source, ...] = (
    Source("bee.mp4", "bee", "6225775b4676bd5e768c0742012ab8678165b425"),
    Source("butterfly.mp4", "butterfly", "c8489799f549457b017664d6eb7ccbd82ae5bff4"),
    Source("flower.mp4", "flower", "bd91051dc5b10dc351ea06e5430dd335fb1ffb14"),
    Source("friday.mp4", "office", "99c20761a49aff207fed6c4bd95926e2930c67a9"),
    Source("stream-of-water.mp4", "stream", "ce11f4b3974a00b62f9abf7a21f70fb921487304"),
    Source("bottle-detection.mp4", "bottles", "262b419c271e5a7e81165df751354d74f6950be9"),
    Source("car-detection.mp4", "parking", "9d0f1cf5abf897db23bce9138697ffee92194ce8"),
    Source("one-by-one-person-detection.mp4", "hall", "d5e116ef305bda2b6147b99df568cdb4d789184b"),
    Source("again.mkv", "signer", "60fb989f2c72099c064f64d64b5d0218858c85b5"),
    Source("book.mkv", "signer", "c98705f358dcacc7fcededf605a998e25ca123ec"),
    Source("sister.mkv", "signer", "d9a92969406c573237d7f4fa58d42e81445d452b"),
    Source("walk.mkv", "signer", "186682cc4546cf3f15603940c361a25beb8673ba"),
)
#: Places that look alike (insects and flowers against green): a boundary between two of
#: them is marked ``similar``.
LOOK_ALIKE = frozenset({"bee", "butterfly", "flower"})

#: Scenes per video (each list: shots per scene). The last video is a single scene.
VIDEO_LAYOUTS: tuple[tuple[int, ...], ...] = (
    (3, 2, 4, 1, 3, 5, 2, 3),
    (2, 4, 3, 6, 1, 3, 2, 4),
    (4, 1, 3, 2, 5, 3, 3, 2),
    (3, 3, 2, 4, 2, 1, 4, 3),
    (2, 5, 3, 3, 2, 4, 3, 2),
    (5,),
)
#: Places of each video's scenes, in order (neighbours always differ; look-alikes meet in
#: videos 1, 2, 4 and 5).
VIDEO_PLACES: tuple[tuple[str, ...], ...] = (
    ("hall", "bee", "butterfly", "office", "stream", "bottles", "signer", "parking"),
    ("signer", "flower", "bee", "parking", "office", "hall", "stream", "bottles"),
    ("bottles", "office", "butterfly", "signer", "hall", "flower", "parking", "stream"),
    ("parking", "butterfly", "flower", "bottles", "signer", "office", "bee", "hall"),
    ("office", "stream", "hall", "bee", "flower", "bottles", "parking", "signer"),
    ("signer",),
)

@dataclass(frozen=True)
class Recipe:
    """One set: its footage, its videos' scenes, the seed of the edit and where it is written."""

    sources: tuple[Source, ...]
    #: Groups of places that look alike: a scene boundary between two places of one group is
    #: marked ``similar``.
    look_alike: tuple[frozenset[str], ...]
    #: Per video, shots per scene, and the place of each scene (neighbours always differ).
    layouts: tuple[tuple[int, ...], ...]
    places: tuple[tuple[str, ...], ...]
    seed: int
    out_dir: Path
    #: Video file names: ``{prefix}_01.mp4``, ...
    prefix: str
    #: Per video, the width it is scaled down to and back up from (0: kept sharp).
    soften: tuple[int, ...] = ()

    def look_alike_pair(self, a: str, b: str) -> bool:
        return any(a in group and b in group for group in self.look_alike)


#: The second set: places not in the first (Intel's 480x270 preview GIFs, MDN's toys,
#: windowsill and yellow wall), with look-alike neighbours, softened videos and two videos
#: of one scene; four places of the first set return as look-alike neighbours.
SOURCES_2: tuple[Source, ...] = (
    Source("bolt-multi-size-detection.gif", "bolt", "cd07181ad3847bfbeed0ef2019fdd0a16eecf1f9", 2),
    Source("classroom.gif", "classroom", "eb2b8d13742bf145595b7c99602284cc744bed00", 2),
    Source("face-demographics-walking-and-pause.gif", "corridor", "2c765d806a248d740de98a0e8656fac6729c598c", 2),
    Source("face-demographics-walking.gif", "corridor", "dab4ba219c5128582fb4f0fbaee3f845c8d0263b", 2),
    Source("fruit-and-vegetable-detection.gif", "fruit", "a544ed25afdb045c22e427252f6c8f35672657a2", 2),
    Source("head-pose-face-detection-female-and-male.gif", "studio", "13e353bd54ac43c021cc7d857e35d8b4219d1b26", 2),
    Source("head-pose-face-detection-male.gif", "studio", "ba32a3394ed2207657777672dd3ce20c6bdaaa6e", 2),
    Source("person-bicycle-car-detection.gif", "lot", "b149e88b56cc24a85814a242eac4e694b61eee8b", 2),
    Source("store-aisle-detection.gif", "store", "c58333fbc2057eb657c5a78f300328d67e792c23", 2),
    Source("worker-zone-detection.gif", "warehouse", "2295d2b38d3efd410101b4cd3bce86127121ad1b", 2),
    Source("crystal.mp4", "toys", "bd995c6bb1624a676544aa021b9f4a28a13cfee8"),
    Source("elf.mp4", "toys", "6b3392ae2f5dfac1074624fd17148c7c488a3b5c"),
    Source("frog.mp4", "toys", "29a9ffe71acde2cec93c6c7d08c2886b18638e03"),
    Source("monster.mp4", "toys", "12df95196f5763fa5e44904e01f77b5409e65c2b"),
    Source("pig.mp4", "toys", "7d1b8d38d104bebd468b1351909dc7414e72251e"),
    Source("rabbit.mp4", "toys", "2773b98da14df65507d4be93395ad1924c125a42"),
    Source("windowsill.webm", "windowsill", "c8222ab0e848ef6f88b0bb203087579f7e5dd59e"),
    Source("chroma-keying.mp4", "wall", "02f393e502a3623a8c8dcca04172a6aac31f49a7"),
    Source("car-detection.mp4", "parking", "9d0f1cf5abf897db23bce9138697ffee92194ce8"),
    Source("bottle-detection.mp4", "bottles", "262b419c271e5a7e81165df751354d74f6950be9"),
    Source("one-by-one-person-detection.mp4", "hall", "d5e116ef305bda2b6147b99df568cdb4d789184b"),
    Source("again.mkv", "signer", "60fb989f2c72099c064f64d64b5d0218858c85b5"),
    Source("sister.mkv", "signer", "d9a92969406c573237d7f4fa58d42e81445d452b"),
)

#: The third set, held out (no scene setting was chosen on it): five places in neither of the
#: other sets, from OpenMPF's test media (a city marathon, a reception hall, a forest track,
#: a dashcam on a motorway, a hilltop filmed on its side), with look-alike neighbours and two
#: videos of one scene.
SOURCES_3: tuple[Source, ...] = (
    Source("five-second-marathon-clip.mkv", "race", "bd365d4fcfb86dae2b14b8333240f9e551d34d89"),
    Source("video_01.mp4", "reception", "4cf93172458c755c7d84c0541bbd8c49940fd1ef"),
    Source("video_02.mp4", "track", "56bb2173fafdb04b3c6891f5d504c76a53c61a3e"),
    # The dashcam's bottom fifth (the bonnet and a burnt-in date, time and camera model) and its
    # top quarter (white sky) are left out.
    Source("toronto-highway-shortened.mp4", "motorway", "552ed7093d9a064a4f2569347403609ecfc2bd74",
           region=(0.0, 0.25, 1.0, 0.8)),
    # Stored on its side (the sky to the left): turned a quarter clockwise.
    Source("new_face_video-90.mp4", "summit", "a4b7ed89e0fd22410d5f58593e5da17fc390a4ca", rotate=90),
)

RECIPES: dict[str, Recipe] = {
    "scenes_set": Recipe(SOURCES, (LOOK_ALIKE,), VIDEO_LAYOUTS, VIDEO_PLACES, SEED, OUT_DIR, "scenes"),
    "scenes_set2": Recipe(
        SOURCES_2,
        (
            frozenset({"parking", "lot", "bolt"}),  # grey ground from above
            frozenset({"bottles", "fruit"}),  # things on a light table or belt
            frozenset({"store", "warehouse"}),  # shop and warehouse floors from above
            frozenset({"toys", "windowsill"}),  # toys close up
            frozenset({"studio", "wall", "signer"}),  # people before a plain wall
            frozenset({"classroom", "corridor", "hall"}),  # office rooms
        ),
        (
            (3, 2, 4, 2, 3, 1, 3, 2),
            (2, 3, 2, 4, 1, 3, 2, 3),
            (3, 2, 2, 3, 4, 2, 3, 1),
            (3, 3, 2, 4, 2, 3, 2, 2),
            (6,),
            (4,),
            (2, 3, 3, 2, 4, 1, 3, 2),
            (5,),
        ),
        (
            ("parking", "lot", "bolt", "bottles", "fruit", "store", "warehouse", "classroom"),
            ("corridor", "hall", "studio", "wall", "signer", "toys", "windowsill", "lot"),
            ("windowsill", "toys", "fruit", "bottles", "warehouse", "store", "corridor", "classroom"),
            ("wall", "studio", "bolt", "bottles", "hall", "classroom", "fruit", "toys"),
            ("toys",),
            ("studio",),
            ("classroom", "hall", "bottles", "fruit", "wall", "signer", "windowsill", "toys"),
            ("wall",),
        ),
        20261206,
        Path(__file__).with_name("scenes_set2"),
        "scenes2",
        # Softened: the third video to 128x72 (about a 144p source), the sixth to 192x108, the
        # seventh to 160x90.
        (0, 0, 128, 0, 0, 192, 160, 0),
    ),
    "scenes_set3": Recipe(
        SOURCES_3,
        (
            frozenset({"race", "track"}),  # people coming towards the camera outdoors
            frozenset({"track", "summit"}),  # people outdoors under a white sky, green behind
            frozenset({"race", "motorway"}),  # a road with lane markings at road level
        ),
        (
            (3, 2, 3, 2, 3, 2),
            (2, 3, 2, 3, 2, 3),
            (3, 2, 2, 3, 3),
            (2, 3, 3, 2, 3, 2),
            (5,),
            (4,),
        ),
        (
            ("race", "motorway", "track", "summit", "reception", "track"),
            ("summit", "track", "race", "motorway", "reception", "race"),
            ("motorway", "race", "reception", "track", "summit"),
            ("reception", "summit", "track", "race", "motorway", "race"),
            ("summit",),
            ("track",),
        ),
        20261207,
        Path(__file__).with_name("scenes_set3"),
        "scenes3",
        # Softened: the third video to 160x90, the sixth to 192x108.
        (0, 0, 160, 0, 0, 192),
    ),
}


SHOT_FRAMES = (26, 70)  # length range of a shot's pure frames
DISSOLVE_FRAMES = (8, 20)
FADE_HALF_FRAMES = (5, 10)  # a fade is 2*half + 1 frames, the middle one black
#: Zoom ranges (source width / crop width) of wide and close framings; a scene alternates them.
WIDE_ZOOM = (1.0, 1.25)
CLOSE_ZOOM = (1.9, 2.8)
FLASH_SHOT_SHARE = 0.12
#: A flash frame keeps this share of the picture and is the rest white.
FLASH_KEEP = 0.15


@dataclass
class Framing:
    """A crop box in source pixels, as (centre x, centre y) in [0, 1] and zoom, at the shot's
    first and last frames; between them it moves linearly (a pan or a zoom)."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]

    def box(self, t: float, src_w: int, src_h: int) -> tuple[float, float, float, float]:
        cx, cy, zoom = (a + (b - a) * t for a, b in zip(self.start, self.end))
        w = src_w / zoom
        h = w * HEIGHT / WIDTH
        if h > src_h:  # a source wider than 16:9 is cropped in width instead
            h = src_h / zoom
            w = h * WIDTH / HEIGHT
        x0 = min(max(cx * src_w - w / 2, 0.0), src_w - w)
        y0 = min(max(cy * src_h - h / 2, 0.0), src_h - h)
        return x0, y0, x0 + w, y0 + h


@dataclass
class ShotPlan:
    source: str
    #: Source frame shown at the shot's first displayed frame (blend frames included).
    src_start: int
    #: Frames displayed: lead-in blend frames + pure frames + lead-out blend frames.
    lead_in: int
    pure: int
    lead_out: int
    framing: Framing
    flashes: list[tuple[int, int]] = field(default_factory=list)  # offsets within pure frames

    @property
    def shown(self) -> int:
        return self.lead_in + self.pure + self.lead_out


def blob_hash(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def probe_frames(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a source, counted by decoding."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.width, stream.height


def plan_video(layout: tuple[int, ...], places: tuple[str, ...], rng: np.random.Generator,
               sources: dict[str, list[tuple[Source, int]]]) -> tuple[list[list[ShotPlan]], list[tuple[str, int]]]:
    """Shots of every scene, and the transition (kind, blend frames) into every shot after the first.

    ``sources`` gives, per place, its source files and how many output frames each can fill."""
    scenes: list[list[ShotPlan]] = []
    joins: list[tuple[str, int]] = []
    for scene_index, (count, place) in enumerate(zip(layout, places)):
        if scene_index:
            kind = str(rng.choice(["cut", "dissolve", "fade"], p=[0.45, 0.3, 0.25]))
            blend = {"cut": 0, "dissolve": int(rng.integers(*DISSOLVE_FRAMES, endpoint=True)),
                     "fade": 2 * int(rng.integers(*FADE_HALF_FRAMES, endpoint=True)) + 1}[kind]
            joins.append((kind, blend))
        options = sources[place]
        close_first = bool(rng.integers(2))
        shots = []
        last_centre = (0.5, 0.5)
        for k in range(count):
            if k:
                joins.append(("cut", 0))
            source, src_frames = options[int(rng.integers(len(options)))]
            pure = int(rng.integers(*SHOT_FRAMES, endpoint=True))
            close = (k % 2 == 0) == close_first
            zoom = float(rng.uniform(*(CLOSE_ZOOM if close else WIDE_ZOOM)))
            # A close-up looks somewhere else than the shot before it.
            for _ in range(20):
                centre = (float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.3, 0.7)))
                if abs(centre[0] - last_centre[0]) + abs(centre[1] - last_centre[1]) > 0.25:
                    break
            last_centre = centre
            move = rng.integers(3)  # 0 still, 1 pan, 2 zoom
            end = (centre[0], centre[1], zoom)
            if move == 1:
                end = (min(max(centre[0] + float(rng.uniform(-0.3, 0.3)), 0.1), 0.9), centre[1], zoom)
            elif move == 2:
                end = (centre[0], centre[1], zoom * float(rng.uniform(1.2, 1.5)))
            flashes = []
            if pure >= 40 and rng.random() < FLASH_SHOT_SHARE * 2:
                length = int(rng.integers(1, 4))
                at = int(rng.integers(12, pure - 12 - length))
                flashes.append((at, at + length - 1))
            shots.append(ShotPlan(source.name, 0, 0, pure, 0, Framing((*centre, zoom), end), flashes))
        scenes.append(shots)
    # Blend frames extend the shots on either side of a gradual transition.
    flat = [s for scene in scenes for s in scene]
    for (kind, blend), before, after in zip(joins, flat, flat[1:]):
        if kind == "dissolve":
            before.lead_out, after.lead_in = blend, blend
        elif kind == "fade":
            before.lead_out, after.lead_in = blend // 2, blend // 2
    lengths = {s.name: n for opts in sources.values() for s, n in opts}
    for shot in flat:
        available = lengths[shot.source]
        if shot.shown > available:
            shot.pure = available - shot.lead_in - shot.lead_out
            shot.flashes = [f for f in shot.flashes if f[1] < shot.pure - 6]
        shot.src_start = int(rng.integers(0, available - shot.shown + 1))
    return scenes, joins


@dataclass
class Layer:
    """One source frame drawn into an output frame: weight, source, frame, crop box."""

    weight: float
    source: str
    frame: int
    box: tuple[float, float, float, float]
    flash: bool = False


def lay_out(scenes: list[list[ShotPlan]], joins: list[tuple[str, int]], sizes: dict[str, tuple[int, int]],
            repeats: dict[str, int] | None = None) -> tuple[list[list[Layer]], dict]:
    """Per output frame, the layers that make it; and the truth. A source in ``repeats`` shows
    each of its frames that many output frames running."""
    repeats = repeats or {}
    flat = [s for scene in scenes for s in scene]
    frames: list[list[Layer]] = []
    truth_shots, truth_transitions, flashes = [], [], []

    def layer(shot: ShotPlan, offset: int, weight: float) -> Layer:
        w, h = sizes[shot.source]
        t = offset / max(shot.shown - 1, 1)
        pure_offset = offset - shot.lead_in
        flash = any(a <= pure_offset <= b for a, b in shot.flashes)
        frame = (shot.src_start + offset) // repeats.get(shot.source, 1)
        return Layer(weight, shot.source, frame, shot.framing.box(t, w, h), flash)

    for i, shot in enumerate(flat):
        kind, blend = joins[i - 1] if i else ("start", 0)
        if kind == "dissolve":
            prev = flat[i - 1]
            first = len(frames)
            for j in range(blend):
                alpha = (j + 1) / (blend + 1)
                frames.append([layer(prev, prev.lead_in + prev.pure + j, 1 - alpha), layer(shot, j, alpha)])
            truth_transitions.append({"kind": "dissolve", "first_frame": first, "last_frame": len(frames) - 1})
        elif kind == "fade":
            prev = flat[i - 1]
            half = blend // 2
            first = len(frames)
            for j in range(half):
                frames.append([layer(prev, prev.lead_in + prev.pure + j, 1 - (j + 1) / (half + 1))])
            frames.append([])  # black
            for j in range(half):
                frames.append([layer(shot, j, (j + 1) / (half + 1))])
            truth_transitions.append({"kind": "fade", "first_frame": first, "last_frame": len(frames) - 1})
        elif kind == "cut":
            truth_transitions.append({"kind": "cut", "first_frame": len(frames), "last_frame": len(frames) - 1})
        start = len(frames)
        for j in range(shot.pure):
            frames.append([layer(shot, shot.lead_in + j, 1.0)])
        truth_shots.append({"start_frame": start, "end_frame": len(frames) - 1, "source": shot.source})
        flashes.extend([start + a, start + b] for a, b in shot.flashes)

    truth_scenes = []
    shot_index = 0
    for scene_index, scene in enumerate(scenes):
        first_shot, last_shot = shot_index, shot_index + len(scene) - 1
        if scene_index == 0:
            start_frame = 0
        else:
            t = truth_transitions[first_shot - 1]
            blend = t["last_frame"] - t["first_frame"] + 1
            start_frame = t["first_frame"] + blend // 2
        truth_scenes.append({"first_shot": first_shot, "last_shot": last_shot, "start_frame": start_frame})
        shot_index += len(scene)
    for a, b in zip(truth_scenes, truth_scenes[1:]):
        a["end_frame"] = b["start_frame"] - 1
    truth_scenes[-1]["end_frame"] = len(frames) - 1
    starts = {s["first_shot"] for s in truth_scenes}
    return frames, {"shots": truth_shots, "transitions": truth_transitions, "scenes": truth_scenes,
                    "flashes": flashes, "scene_starts": starts}


def render(frames: list[list[Layer]], paths: dict[str, Path],
           turns: dict[str, tuple[int, tuple[float, float, float, float]]] | None = None) -> np.ndarray:
    """Decode each source once and draw every output frame from its layers. A source in
    ``turns`` is turned upright (degrees clockwise) and only its region (fractions of the
    upright picture) is used: layer boxes are in the region's pixels."""
    import av
    from PIL import Image

    wanted: dict[str, dict[int, list[tuple[int, Layer]]]] = {}
    for index, layers in enumerate(frames):
        for lay in layers:
            wanted.setdefault(lay.source, {}).setdefault(lay.frame, []).append((index, lay))
    out = np.zeros((len(frames), HEIGHT, WIDTH, 3), np.float32)
    for source, by_frame in wanted.items():
        with av.open(str(paths[source])) as container:
            for number, frame in enumerate(container.decode(video=0)):
                if number not in by_frame:
                    continue
                image = frame.to_image().convert("RGB")  # a GIF decodes to a palette or RGBA
                rotate, region = (turns or {}).get(source, (0, (0.0, 0.0, 1.0, 1.0)))
                if rotate:
                    image = image.rotate(-rotate, expand=True)
                dx, dy = region[0] * image.width, region[1] * image.height
                for index, lay in by_frame[number]:
                    box = (lay.box[0] + dx, lay.box[1] + dy, lay.box[2] + dx, lay.box[3] + dy)
                    pixels = np.asarray(image.resize((WIDTH, HEIGHT), Image.BILINEAR, box=box), np.float32)
                    if lay.flash:
                        pixels = 255.0 - (255.0 - pixels) * FLASH_KEEP
                    out[index] += lay.weight * pixels
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def soften(frames: np.ndarray, width: int) -> np.ndarray:
    """Each frame scaled down to ``width`` (16:9, area average) and back up (bilinear): the
    detail of a low-resolution source."""
    from PIL import Image

    small = (width, round(width * HEIGHT / WIDTH))
    out = np.empty_like(frames)
    for i, rgb in enumerate(frames):
        image = Image.fromarray(rgb).resize(small, Image.BOX)
        out[i] = np.asarray(image.resize((WIDTH, HEIGHT), Image.BILINEAR))
    return out


def encode(path: Path, frames: np.ndarray) -> None:
    """H.264 (libx264, yuv420p), constant frame rate, frame i at pts i in units of 1/FPS."""
    import av
    from fractions import Fraction

    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        stream.options = {"crf": str(CRF), "preset": "medium"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def build(sources_dir: Path, recipe: Recipe, out_dir: Path | None = None, seed: int | None = None) -> list[Path]:
    out_dir = recipe.out_dir if out_dir is None else out_dir
    paths: dict[str, Path] = {}
    sizes: dict[str, tuple[int, int]] = {}
    by_place: dict[str, list[tuple[Source, int]]] = {}
    for source in recipe.sources:
        path = sources_dir / source.name
        if not path.exists():
            sys.exit(f"missing source {path} (see {recipe.out_dir.name}/PROVENANCE.md for where it comes from)")
        if blob_hash(path.read_bytes()) != source.blob:
            sys.exit(f"{path} is not the expected file (git blob {source.blob})")
        count, width, height = probe_frames(path)
        if source.rotate % 180:
            width, height = height, width
        x0, y0, x1, y1 = source.region
        paths[source.name], sizes[source.name] = path, (round(width * (x1 - x0)), round(height * (y1 - y0)))
        by_place.setdefault(source.place, []).append((source, count * source.repeat))
    repeats = {s.name: s.repeat for s in recipe.sources if s.repeat != 1}
    turns = {s.name: (s.rotate, s.region) for s in recipe.sources if s.rotate or s.region != (0.0, 0.0, 1.0, 1.0)}
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(recipe.seed if seed is None else seed)
    written = []
    for video, (layout, places) in enumerate(zip(recipe.layouts, recipe.places)):
        name = f"{recipe.prefix}_{video + 1:02d}"
        scenes, joins = plan_video(layout, places, rng, by_place)
        frames, truth = lay_out(scenes, joins, sizes, repeats)
        starts = truth.pop("scene_starts")
        for scene, place in zip(truth["scenes"], places):
            scene["place"] = place
        shot_scene = [next(k for k, s in enumerate(truth["scenes"]) if s["first_shot"] <= i <= s["last_shot"])
                      for i in range(len(truth["shots"]))]
        for i, t in enumerate(truth["transitions"]):
            t["scene_boundary"] = (i + 1) in starts
            t["similar"] = bool(t["scene_boundary"] and recipe.look_alike_pair(places[shot_scene[i]], places[shot_scene[i + 1]]))
        pixels = render(frames, paths, turns)
        softened = recipe.soften[video] if video < len(recipe.soften) else 0
        if softened:
            pixels = soften(pixels, softened)
        path = out_dir / f"{name}.mp4"
        encode(path, pixels)
        document = {"video": path.name, "fps": FPS, "width": WIDTH, "height": HEIGHT, "num_frames": len(frames), **truth}
        if softened:
            document["softened_from_width"] = softened
        (out_dir / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        print(f"{path.name}: {len(frames)} frames, {len(truth['scenes'])} scenes, {len(truth['shots'])} shots, "
              f"{len(truth['flashes'])} flashes, {path.stat().st_size / 1e6:.2f} MB", flush=True)
        written.append(path)
    write_checksums(out_dir)
    return written


def write_checksums(out_dir: Path) -> None:
    """``SHA256SUMS`` (``sha256sum`` format) of every video in ``out_dir``: the files as committed."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(out_dir.glob("*.mp4"))]
    (out_dir / "SHA256SUMS").write_text("".join(lines))


def shot_embeddings(path: Path, truth: dict) -> np.ndarray:
    """Mean EfficientNet-Lite0 embedding of each true shot's sampled frames, L2-normalised."""
    import torch

    from pipeline.config import config_from_dict
    from pipeline.algorithms.segments import Segment, decode_size
    from pipeline.media.decode import decode_segment
    from pipeline.models.efficientnet_lite import load_efficientnet_lite0
    from pipeline.models.inference import embed_frames

    config = config_from_dict({})
    device = torch.device("cpu")
    model = shot_embeddings.__dict__.setdefault("model", load_efficientnet_lite0(device))
    size = decode_size(truth["width"], truth["height"], config.decode.width, config.decode.height)
    decoded = decode_segment(str(path), Segment(0, 1, 0, truth["num_frames"]), config, size=size)
    embeddings = embed_frames(model, decoded.samples, batch_size=0, device=device, precision=config.inference.precision)
    numbers = np.asarray(decoded.sample_frames)
    out = []
    for shot in truth["shots"]:
        inside = (numbers >= shot["start_frame"]) & (numbers <= shot["end_frame"])
        if not inside.any():
            inside = np.abs(numbers - (shot["start_frame"] + shot["end_frame"]) / 2) == np.abs(
                numbers - (shot["start_frame"] + shot["end_frame"]) / 2).min()
        mean = embeddings[inside].mean(axis=0)
        out.append(mean / np.linalg.norm(mean))
    return np.asarray(out)


def cosine_report(paths: list[Path]) -> None:
    within, across = [], []
    for path in paths:
        truth = json.loads(path.with_suffix(".json").read_text())
        shots = shot_embeddings(path, truth)
        for i, t in enumerate(truth["transitions"]):
            cosine = float(shots[i] @ shots[i + 1])
            (across if t["scene_boundary"] else within).append(cosine)
    for label, values in (("within scenes", within), ("across scenes", across)):
        v = np.asarray(values)
        print(f"adjacent shots {label}: n={len(v)} cosine min {v.min():.3f} median {np.median(v):.3f} max {v.max():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=Path, required=True, help="folder holding the source files")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="scenes_set", help="which set to build")
    parser.add_argument("--out", type=Path, default=None, help="folder to write to (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=None, help="another edit of the same footage (default: the recipe's)")
    parser.add_argument("--no-embed", action="store_true", help="skip the cosine report")
    args = parser.parse_args()
    from benchmarks.measure import machine_header

    print(machine_header(), flush=True)
    paths = build(args.sources, RECIPES[args.recipe], args.out, args.seed)
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} videos, {total / 1e6:.1f} MB")
    if not args.no_embed:
        cosine_report(paths)


if __name__ == "__main__":
    main()
