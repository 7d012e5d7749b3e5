"""The pure core: segment maths, shots, scenes, keyframes, attention and stitching (numpy, no I/O, no Ray)."""
