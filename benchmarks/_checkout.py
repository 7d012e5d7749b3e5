"""What a benchmark run as ``python benchmarks/NAME.py`` imports first: the checkout's root on
``sys.path``, where ``python -m benchmarks.NAME`` has it, so that the checkout's own
``pipeline``, ``testkit`` (test support, not installed) and ``benchmarks`` import the same way
either way. Each script does::

    if not __package__:  # run as `python benchmarks/NAME.py`
        import _checkout  # noqa: F401
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The checkout's root: the folder holding ``pipeline/``, ``testkit/`` and ``benchmarks/``.
ROOT = Path(__file__).resolve().parent.parent

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
