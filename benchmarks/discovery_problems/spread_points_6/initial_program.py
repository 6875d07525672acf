"""Six points in the unit square; the evaluator scores the smallest pairwise distance."""

# EVOLVE-BLOCK-START
def points():
    return [
        (0.30, 0.30),
        (0.56, 0.24),
        (0.72, 0.50),
        (0.45, 0.52),
        (0.24, 0.71),
        (0.62, 0.77),
    ]
# EVOLVE-BLOCK-END
