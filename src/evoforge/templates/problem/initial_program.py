"""Example problem: find a point where the Rastrigin function is as small as possible.

Only the code between the EVOLVE-BLOCK markers is changed by evoforge.
"""

import math


# EVOLVE-BLOCK-START
def search():
    """Return a candidate point (x, y)."""
    x, y = 3.0, -2.5
    for _ in range(20):
        x = x * 0.9
        y = y * 0.95
    return x, y
# EVOLVE-BLOCK-END


def rastrigin(x, y):
    return 20 + x * x - 10 * math.cos(2 * math.pi * x) + y * y - 10 * math.cos(2 * math.pi * y)
