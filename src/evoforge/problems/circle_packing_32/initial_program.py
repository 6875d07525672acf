"""Pack 32 circles in the unit square so that the sum of their radii is as large as possible."""

import math

N = 32


# EVOLVE-BLOCK-START
def construct_packing():
    """Return (centers, radii): 32 (x, y) centers and 32 radii inside the unit square."""
    # a centre circle, an inner ring of 9, an outer ring of 18 and the four corners
    centers = [
        (0.500, 0.500), (0.800, 0.500), (0.730, 0.693), (0.552, 0.795),
        (0.350, 0.760), (0.218, 0.603), (0.218, 0.397), (0.350, 0.240),
        (0.552, 0.205), (0.730, 0.307), (0.950, 0.500), (0.923, 0.654),
        (0.845, 0.789), (0.725, 0.890), (0.578, 0.943), (0.422, 0.943),
        (0.275, 0.890), (0.155, 0.789), (0.077, 0.654), (0.050, 0.500),
        (0.077, 0.346), (0.155, 0.211), (0.275, 0.110), (0.422, 0.057),
        (0.578, 0.057), (0.725, 0.110), (0.845, 0.211), (0.923, 0.346),
        (0.070, 0.070), (0.930, 0.070), (0.070, 0.930), (0.930, 0.930),
    ]
    radii = compute_max_radii(centers)
    return centers, radii
# EVOLVE-BLOCK-END


def compute_max_radii(centers):
    """Largest radii for fixed centers by a simple feasible rule (walls, then pairwise scaling)."""
    radii = [min(x, y, 1 - x, 1 - y) for x, y in centers]
    n = len(centers)
    for i in range(n):
        for j in range(i + 1, n):
            d = math.dist(centers[i], centers[j])
            if radii[i] + radii[j] > d:
                scale = d / (radii[i] + radii[j])
                radii[i] *= scale
                radii[j] *= scale
    # a hair of slack so rounding can never produce a (strictly checked) overlap
    return [max(r * (1 - 1e-9), 0.0) for r in radii]


def run_packing():
    centers, radii = construct_packing()
    return centers, radii
