"""Numba kernels: batch-shaped, seeded, ``@njit(cache=True, nogil=True)``, no ``parallel=True``."""
