"""Pack 26 circles in the unit square so that the sum of their radii is as large as possible."""

import math

N = 26


# EVOLVE-BLOCK-START
def construct_packing():
    """Return (centers, radii): 26 (x, y) centers and 26 radii inside the unit square."""
    centers = [(0.5, 0.5)]
    for i in range(8):
        angle = 2 * math.pi * i / 8
        centers.append((0.5 + 0.3 * math.cos(angle), 0.5 + 0.3 * math.sin(angle)))
    for i in range(17):
        angle = 2 * math.pi * i / 17
        centers.append((0.5 + 0.45 * math.cos(angle), 0.5 + 0.45 * math.sin(angle)))
    centers = [(min(max(x, 0.02), 0.98), min(max(y, 0.02), 0.98)) for x, y in centers]
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
    return centers, radii, sum(radii)
