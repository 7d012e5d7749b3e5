"""The built-in sample corpus, and the generator of videos with exactly known shots it needs.

``vindex run`` with no source indexes :data:`SAMPLE_CORPUS`, written by :func:`sample_corpus`.

A clip is a sequence of shots joined by transitions (hard cuts, dissolves,
fades through black). Every shot renders a *content* -- a look made of a
palette, a panning tileable background texture, a few moving and rotating
anti-aliased shapes and film-like grain -- chosen from its content id, so
shots with the same id look alike and shots with different ids look clearly
different (hue steps by the golden ratio, texture kind cycles with the id).
Motion inside a shot is continuous (no jumps), so the only abrupt changes in a
clip are its cuts. Everything derives from the spec (its ``seed`` included),
so the same spec always gives the same pixels.

Frames are rendered with vectorised numpy (a window slice of a pre-rendered
texture, per-shape work limited to the shape's bounding box, grain from a
pre-computed noise field), streamed one at a time, and encoded with PyAV.

Shots may also carry what makes shot detection hard without being a transition:
a fast pan (:attr:`ShotSpec.pan_widths_per_s`), a large object crossing the frame in a
few frames (:class:`PassSpec`), a flash of a few brightened frames (:class:`FlashSpec`),
and a look that shares its palette with the shot before it (same ``content``, another
:attr:`ShotSpec.variant`).

The package: :mod:`~pipeline.synthetic.specs` (what a clip is made of),
:mod:`~pipeline.synthetic.render` (its frames), :mod:`~pipeline.synthetic.corpus` (encoding
and the sample corpus); the names below are the package's whole API.

The exact frame layout of a spec (its ground truth), random and hard spec drawers and
writers of broken files live with the tests, in ``testkit.synthetic``: the runtime
needs none of them.
"""

from __future__ import annotations

from pipeline.synthetic.corpus import SAMPLE_CORPUS, sample_corpus, write_clip, write_corpus
from pipeline.synthetic.render import blend_weights, render_clip, render_shot_frame
from pipeline.synthetic.specs import ClipSpec, FlashSpec, PassSpec, ShotSpec, TransitionSpec, check_int, simple_spec

__all__ = [
    "FlashSpec",
    "PassSpec",
    "ShotSpec",
    "TransitionSpec",
    "ClipSpec",
    "check_int",
    "render_clip",
    "render_shot_frame",
    "blend_weights",
    "write_clip",
    "simple_spec",
    "SAMPLE_CORPUS",
    "sample_corpus",
    "write_corpus",
]
