"""What the networks' outputs look like, for modules that read the index without the networks.

Light (no torch): the index schemas and similarity search import these, and reading an index
must not load torch.
"""

from __future__ import annotations

from typing import Final

#: Values in an EfficientNet-Lite0 embedding (the pooled penultimate features).
EMBEDDING_DIM: Final[int] = 1280

__all__ = ["EMBEDDING_DIM"]
