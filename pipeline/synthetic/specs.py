"""What a generated clip is made of: shots, the transitions between them, and what makes a shot
hard to segment without being a transition (a flash, a large object passing, a fast pan).

Everything derives from a :class:`ClipSpec` (its ``seed`` included), so the same spec always
gives the same pixels (:mod:`pipeline.synthetic.render`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "FlashSpec",
    "PassSpec",
    "ShotSpec",
    "TransitionSpec",
    "ClipSpec",
    "TransitionKind",
    "check_int",
    "simple_spec",
]

TransitionKind = Literal["cut", "dissolve", "fade"]
_TRANSITION_KINDS = ("cut", "dissolve", "fade")


# --------------------------------------------------------------------------- specs


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise ValueError unless ``value`` is an int (numpy ints too, bools not) >= ``minimum``.

    The one rule every spec field and generator argument that counts something follows.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class FlashSpec:
    """A flash inside a shot (a camera flash, a lightning strike): not a transition.

    Frame ``first_frame + k`` of the shot has ``gains[k]`` added to every channel of
    every pixel, saturating at 255.
    """

    first_frame: int
    gains: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "gains", tuple(self.gains))
        check_int("FlashSpec.first_frame", self.first_frame, 0)
        if not self.gains:
            raise ValueError("a flash needs at least one gain")
        for gain in self.gains:
            check_int("FlashSpec gain", gain, 1)
            if gain > 255:
                raise ValueError(f"a flash gain is at most 255, got {gain!r}")

    @property
    def last_frame(self) -> int:
        return self.first_frame + len(self.gains) - 1


@dataclass(frozen=True)
class PassSpec:
    """A large object crossing the whole frame close to the camera: fast motion, not a cut.

    An ellipse ``size`` frame heights tall and 1.5 times as wide enters at one side and
    has left at the other after ``num_frames`` frames, from frame ``first_frame`` of the shot.
    """

    first_frame: int
    num_frames: int
    size: float = 0.8
    color: tuple[int, int, int] = (40, 40, 40)
    leftward: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "color", tuple(int(c) for c in self.color))
        check_int("PassSpec.first_frame", self.first_frame, 0)
        check_int("PassSpec.num_frames", self.num_frames, 2)
        if not (isinstance(self.size, (int, float)) and 0 < self.size <= 2):
            raise ValueError(f"PassSpec.size must be in (0, 2], got {self.size!r}")
        if len(self.color) != 3 or not all(0 <= c <= 255 for c in self.color):
            raise ValueError(f"PassSpec.color must be three values in 0..255, got {self.color!r}")

    @property
    def last_frame(self) -> int:
        return self.first_frame + self.num_frames - 1


@dataclass(frozen=True)
class ShotSpec:
    """One shot: ``num_frames`` frames of content ``content`` (same id => same look).

    ``variant`` > 0 keeps the content's palette and texture kind but draws another layout
    (another angle of the same place). ``pan_widths_per_s`` > 0 pans the background that
    many frame widths per second (a fast pan) instead of the look's slow drift. ``flashes``
    and ``passes`` lie inside the shot.
    """

    num_frames: int
    content: int
    variant: int = 0
    pan_widths_per_s: float = 0.0
    flashes: tuple[FlashSpec, ...] = ()
    passes: tuple[PassSpec, ...] = ()

    def __post_init__(self) -> None:
        check_int("ShotSpec.num_frames", self.num_frames, 1)
        check_int("ShotSpec.content", self.content, 0)
        check_int("ShotSpec.variant", self.variant, 0)
        if not (isinstance(self.pan_widths_per_s, (int, float)) and 0 <= self.pan_widths_per_s < 100):
            raise ValueError(f"ShotSpec.pan_widths_per_s must be in [0, 100), got {self.pan_widths_per_s!r}")
        object.__setattr__(self, "flashes", tuple(self.flashes))
        object.__setattr__(self, "passes", tuple(self.passes))
        events: tuple[FlashSpec | PassSpec, ...] = (*self.flashes, *self.passes)
        for event in events:
            if event.last_frame >= self.num_frames:
                raise ValueError(
                    f"{type(event).__name__} ends at frame {event.last_frame}, after the shot's "
                    f"{self.num_frames} frames"
                )


@dataclass(frozen=True)
class TransitionSpec:
    """How two shots are joined; gradual ones add ``num_frames`` blend frames between them.

    ``fade`` is a dip to black: the first half fades the outgoing shot out, the
    second half fades the incoming one in (an odd length has one black frame in
    the middle).
    """

    kind: TransitionKind
    num_frames: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _TRANSITION_KINDS:
            raise ValueError(f"TransitionSpec.kind must be one of {_TRANSITION_KINDS}, got {self.kind!r}")
        if self.kind == "cut":
            if self.num_frames != 0:
                raise ValueError(f"a cut has num_frames=0, got {self.num_frames!r}")
        else:
            check_int(f"{self.kind} num_frames", self.num_frames, 2)

    @classmethod
    def cut(cls) -> TransitionSpec:
        return cls("cut", 0)

    @classmethod
    def dissolve(cls, num_frames: int) -> TransitionSpec:
        return cls("dissolve", num_frames)

    @classmethod
    def fade(cls, num_frames: int) -> TransitionSpec:
        return cls("fade", num_frames)


@dataclass(frozen=True)
class ClipSpec:
    """A whole clip: shots, the transitions between them (one fewer), frame geometry and seed."""

    shots: tuple[ShotSpec, ...]
    transitions: tuple[TransitionSpec, ...]
    width: int = 320
    height: int = 180
    fps: float = 25.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shots", tuple(self.shots))
        object.__setattr__(self, "transitions", tuple(self.transitions))
        if not self.shots:
            raise ValueError("a clip needs at least one shot")
        if len(self.transitions) != len(self.shots) - 1:
            raise ValueError(
                f"{len(self.shots)} shots need {len(self.shots) - 1} transitions, "
                f"got {len(self.transitions)}"
            )
        for s in self.shots:
            if not isinstance(s, ShotSpec):
                raise TypeError(f"shots must be ShotSpec, got {type(s).__name__}")
        for t in self.transitions:
            if not isinstance(t, TransitionSpec):
                raise TypeError(f"transitions must be TransitionSpec, got {type(t).__name__}")
        check_int("width", self.width, 16)
        check_int("height", self.height, 16)
        if not (isinstance(self.fps, (int, float)) and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps!r}")
        check_int("seed", self.seed, 0)

    @property
    def num_frames(self) -> int:
        """Total frames: all shots plus all blend frames."""
        return sum(s.num_frames for s in self.shots) + sum(t.num_frames for t in self.transitions)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


# --------------------------------------------------------------------------- spec helpers


def simple_spec(
    shot_frames: list[int] | tuple[int, ...],
    transitions: str | list[str] | tuple[str, ...] = "cut",
    *,
    contents: list[int] | tuple[int, ...] | None = None,
    width: int = 320,
    height: int = 180,
    fps: float = 25.0,
    seed: int = 0,
) -> ClipSpec:
    """Spec from shot lengths and transitions written ``"cut"``, ``"dissolve:10"``, ``"fade:12"``.

    A single string applies to every transition; contents default to 0, 1, 2, ...
    """
    n = len(shot_frames)
    if isinstance(transitions, str):
        transitions = [transitions] * (n - 1)
    contents = list(range(n)) if contents is None else list(contents)
    if len(contents) != n:
        raise ValueError("need one content id per shot")
    trs = []
    for t in transitions:
        kind, _, length = t.partition(":")
        trs.append(TransitionSpec(kind, int(length) if length else 0))  # type: ignore[arg-type]
    return ClipSpec(
        tuple(ShotSpec(int(f), int(c)) for f, c in zip(shot_frames, contents)),
        tuple(trs),
        width=width,
        height=height,
        fps=fps,
        seed=seed,
    )
