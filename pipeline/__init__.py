"""vindex: index video corpora into shot, scene and keyframe tables.

The Python API for reading an index::

    import pipeline

    index = pipeline.open_index("./vindex-index")
    index.table("shots")                      # a pyarrow.Table
    pipeline.similar(index, keyframe=(video_id, frame), k=5)

Names are imported on first use, so ``import pipeline`` stays light (no torch, no Ray).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.index.reader import IndexReader, open_index
    from pipeline.index.similarity import similar

#: Public name -> the module that defines it.
_EXPORTS = {
    "IndexReader": "pipeline.index.reader",
    "open_index": "pipeline.index.reader",
    "similar": "pipeline.index.similarity",
}

__all__ = ["IndexReader", "open_index", "similar"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
