"""Tile IR: each kernel as a block program over a grid of programs (GPU-first, Triton/Pallas style)."""
