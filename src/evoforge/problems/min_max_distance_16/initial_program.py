"""Place 16 points in the plane so that (max distance / min distance)^2 is as small as possible."""


# EVOLVE-BLOCK-START
# construct_points() returns 16 distinct points (x, y); here a 4 x 4 grid, slightly disturbed.
def construct_points():
    return [
        (-0.08, 0.01), (-0.04, 1.03), (0.04, 1.87), (-0.15, 3.10),
        (0.93, -0.08), (1.15, 0.99), (1.10, 1.99), (1.04, 2.90),
        (2.04, 0.11), (2.01, 1.07), (2.05, 1.87), (2.08, 3.03),
        (2.94, -0.14), (3.11, 0.99), (3.07, 2.11), (3.06, 3.13),
    ]
# EVOLVE-BLOCK-END
