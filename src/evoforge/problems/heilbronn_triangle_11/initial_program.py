"""Place 11 points in an equilateral triangle so that the smallest triangle they form is large."""

import math

N = 11


# EVOLVE-BLOCK-START
def construct_points():
    """Return 11 (x, y) points in the triangle (0, 0), (1, 0), (1/2, sqrt(3)/2)."""
    # barycentric weights (on the vertices A=(0,0), B=(1,0), C=(1/2, sqrt(3)/2)) of each point
    weights = [
        (0.6, 0.1, 0.3), (0.3, 0.7, 0.4), (0.3, 0.2, 0.5), (0.7, 0.5, 0.8),
        (0.1, 0.3, 0.4), (0.5, 0.3, 0.2), (0.3, 0.9, 0.2), (0.5, 0.9, 0.2),
        (0.5, 0.1, 0.5), (0.8, 0.2, 0.1), (0.1, 0.2, 0.6),
    ]
    return [to_cartesian(a, b, c) for a, b, c in weights]
# EVOLVE-BLOCK-END


def to_cartesian(a, b, c):
    """The point with barycentric weights (a, b, c): negative weights count as 0, the weights are
    normalised, and the point is pulled 1e-9 towards the centroid so that rounding can never put
    it outside the (exactly checked) triangle."""
    a, b, c = max(a, 0.0), max(b, 0.0), max(c, 0.0)
    s = a + b + c
    if not s > 0:  # no positive weight (or NaN): use the centroid
        a, b, c, s = 1.0, 1.0, 1.0, 3.0
    a, b, c = ((1 - 1e-9) * w / s + 1e-9 / 3 for w in (a, b, c))
    return [b + 0.5 * c, c * math.sqrt(3) / 2]
