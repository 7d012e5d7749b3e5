"""vindex: index video corpora into shot, scene and keyframe tables."""
