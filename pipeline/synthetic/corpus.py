"""Encoding a spec to an mp4 with PyAV, and the built-in sample corpus ``vindex run`` indexes
when given no source."""

from __future__ import annotations

import os
import pathlib
from fractions import Fraction

from pipeline.synthetic.render import render_clip
from pipeline.synthetic.specs import ClipSpec, check_int, simple_spec

__all__ = ["write_clip", "SAMPLE_CORPUS", "sample_corpus", "write_corpus"]


# --------------------------------------------------------------------------- encoding


def _rate(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001 * 1000)


def write_clip(
    path: str | os.PathLike,
    spec: ClipSpec,
    *,
    codec: str = "libx264",
    crf: int = 18,
    gop: int | None = None,
    preset: str = "veryfast",
    faststart: bool = False,
) -> pathlib.Path:
    """Render ``spec`` and encode it to an mp4 at ``path``; returns the path.

    yuv420p, constant frame rate, one video stream whose frame ``i`` has pts ``i``
    in units of ``1/fps``, exactly ``spec.num_frames`` frames. ``gop`` fixes the
    keyframe interval (no scene-cut keyframes); ``faststart`` puts the index
    before the media data. ``crf``/``preset`` apply to libx264/libx265 only.
    """
    import av

    if spec.width % 2 or spec.height % 2:
        raise ValueError(f"yuv420p needs even width and height, got {spec.width}x{spec.height}")
    rate = _rate(spec.fps)
    container = av.open(os.fspath(path), mode="w", format="mp4", options={"movflags": "+faststart"} if faststart else {})
    try:
        stream = container.add_stream(codec, rate=rate)
        if not isinstance(stream, av.VideoStream):
            raise ValueError(f"codec {codec!r} is not a video codec")
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        options: dict[str, object] = {}
        if codec in ("libx264", "libx265"):
            options.update(crf=str(crf), preset=preset)
        if gop is not None:
            check_int("gop", gop, 1)
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        stream.options = options
        for i, rgb in enumerate(render_clip(spec)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    finally:
        container.close()
    return pathlib.Path(path)


# --------------------------------------------------------------------------- sample corpus

#: The built-in sample corpus: name -> spec (each 11-12 s at 25 fps).
SAMPLE_CORPUS: dict[str, ClipSpec] = {
    # Hard cuts and one dissolve.
    "sample_01_cuts": simple_spec(
        [60, 75, 50, 90], ["cut", "cut", "dissolve:12"], contents=[0, 1, 2, 3], seed=11
    ),
    # A fade through black, a long dissolve, a cut.
    "sample_02_gradual": simple_spec(
        [80, 45, 70, 55], ["fade:16", "dissolve:20", "cut"], contents=[0, 1, 2, 3], seed=22
    ),
    # Smaller frames; shot 3 returns to shot 0's content (looks alike).
    "sample_03_revisit": simple_spec(
        [50, 65, 40, 70, 60],
        ["cut", "dissolve:8", "cut", "fade:10"],
        contents=[0, 1, 2, 0, 3],
        width=256,
        height=144,
        seed=33,
    ),
}


def _matches(path: pathlib.Path, spec: ClipSpec) -> bool:
    """Whether ``path`` is already a decodable clip with ``spec``'s geometry and frame count."""
    import av

    try:
        if path.stat().st_size == 0:
            return False
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            s = container.streams.video[0]
            return (
                s.codec_context.width == spec.width
                and s.codec_context.height == spec.height
                and s.frames == spec.num_frames
            )
    except Exception:  # unreadable in any way: rewrite it
        return False


def sample_corpus(dest_dir: str | os.PathLike) -> list[pathlib.Path]:
    """Write (or re-use) the built-in sample clips in ``dest_dir``; returns their paths, sorted.

    A file already present is kept when it decodes with the expected width,
    height and frame count; otherwise it is rewritten (atomically).
    """
    return write_corpus(dest_dir, SAMPLE_CORPUS)


def write_corpus(dest_dir: str | os.PathLike, specs: dict[str, ClipSpec]) -> list[pathlib.Path]:
    """Write (or re-use) clips ``NAME.mp4`` in ``dest_dir``, one per spec; returns their paths, sorted.

    Re-use checks geometry and frame count only: keep a folder per set of specs.
    """
    dest = pathlib.Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in specs.items():
        path = dest / f"{name}.mp4"
        if not _matches(path, spec):
            tmp = dest / f".{name}.{os.getpid()}.tmp.mp4"
            try:
                write_clip(tmp, spec)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        paths.append(path)
    return sorted(paths)
