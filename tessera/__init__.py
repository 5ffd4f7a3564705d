"""Tessera: one language for deep-learning models and tile kernels."""

__version__ = "0.1.0"
