"""Per-pixel work: affine warps, feathered masks, blending, colour matching.

Each kernel has one signature; the portable path (NumPy/OpenCV) is what runs on a
CPU. Nothing here knows about frames, faces or filters.
"""
