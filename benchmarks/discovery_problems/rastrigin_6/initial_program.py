"""A point in six dimensions; the evaluator scores it on a shifted Rastrigin function."""

# EVOLVE-BLOCK-START
def point():
    x0 = 2.6
    x1 = -3.4
    x2 = 1.9
    x3 = 4.1
    x4 = -2.2
    x5 = 3.3
    return [x0, x1, x2, x3, x4, x5]
# EVOLVE-BLOCK-END
