"""What the networks take in and give out, for modules that work without the networks.

Light (no torch, nothing of vindex): the configuration, frame decoding, segment planning, the
index schemas and similarity search import these, and reading an index must not load torch.
"""

from __future__ import annotations

from typing import Final

#: Values in an EfficientNet-Lite0 embedding (the pooled penultimate features).
EMBEDDING_DIM: Final[int] = 1280

#: TransNetV2's input frame size: every frame is resized to this before the shot network.
INPUT_HEIGHT: Final[int] = 27
INPUT_WIDTH: Final[int] = 48
#: TransNetV2 predicts this many frames fewer at each end of a window: the context it reads
#: around the frames it predicts.
SHOT_CONTEXT_FRAMES: Final[int] = 25

__all__ = ["EMBEDDING_DIM", "INPUT_HEIGHT", "INPUT_WIDTH", "SHOT_CONTEXT_FRAMES"]
