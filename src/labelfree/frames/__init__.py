"""Pixel-level object frames (seed 004): warps, networks, the run pipeline."""
