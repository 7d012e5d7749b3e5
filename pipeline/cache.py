"""Where vindex keeps what it can make again: ``$XDG_CACHE_HOME/vindex`` (``~/.cache/vindex``
without it)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(name: str) -> Path:
    """The folder ``name`` of vindex's cache (``$XDG_CACHE_HOME/vindex/NAME``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "vindex" / name


__all__ = ["cache_dir"]
