"""driver.py: places N points in the unit square with the C kernel (kernel.c) doing the search.

The evaluator compiles kernel.c into libkernel.so beside this file, then calls
``driver:solve(n)``, which must return n [x, y] pairs inside the unit square.
"""

import ctypes
import math
import os
import random

_LIB = None


def kernel():
    """The compiled kernel (libkernel.so beside this file), loaded once."""
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(os.path.abspath(__file__)), "libkernel.so"))
        lib.improve.restype = ctypes.c_double
        lib.improve.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.c_int, ctypes.c_int,
                                ctypes.c_double, ctypes.c_uint]
        _LIB = lib
    return _LIB


def improve(points, iters, step, seed):
    """Run the kernel's local search on ``points``; (new points, their minimum distance)."""
    n = len(points)
    flat = (ctypes.c_double * (2 * n))(*[c for p in points for c in p])
    d = kernel().improve(flat, n, iters, step, seed)
    return [[flat[2 * i], flat[2 * i + 1]] for i in range(n)], d


# EVOLVE-BLOCK-START
def start(n, seed):
    """A starting layout: a jittered square grid, cells filled row by row."""
    rng = random.Random(seed)
    side = math.ceil(math.sqrt(n))
    points = []
    for i in range(n):
        x = (i % side + 0.5) / side + rng.uniform(-0.05, 0.05)
        y = (i // side + 0.5) / side + rng.uniform(-0.05, 0.05)
        points.append([min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)])
    return points


def solve(n):
    """The best of a few restarts of the kernel's search."""
    best, best_d = None, -1.0
    for restart in range(4):
        points, d = improve(start(n, restart), 20000, 0.05, restart + 1)
        if d > best_d:
            best, best_d = points, d
    return best
# EVOLVE-BLOCK-END
