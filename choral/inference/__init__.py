"""Inverse problems through a surrogate."""
