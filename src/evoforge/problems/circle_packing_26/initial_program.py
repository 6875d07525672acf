"""Pack 26 circles in the unit square so that the sum of their radii is as large as possible."""

import math

N = 26


# EVOLVE-BLOCK-START
def construct_packing():
    """Return (centers, radii): 26 (x, y) centers and 26 radii inside the unit square."""
    # a centre circle, an inner ring of 8 and an outer ring of 17
    centers = [
        (0.500, 0.500), (0.800, 0.500), (0.712, 0.712), (0.500, 0.800),
        (0.288, 0.712), (0.200, 0.500), (0.288, 0.288), (0.500, 0.200),
        (0.712, 0.288), (0.950, 0.500), (0.920, 0.663), (0.833, 0.803),
        (0.701, 0.903), (0.542, 0.948), (0.377, 0.933), (0.229, 0.859),
        (0.117, 0.737), (0.058, 0.583), (0.058, 0.417), (0.117, 0.263),
        (0.229, 0.141), (0.377, 0.067), (0.542, 0.052), (0.701, 0.097),
        (0.833, 0.197), (0.920, 0.337),
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
