"""ZDT1 with five decision variables: return one decision vector; the front is the population."""


# EVOLVE-BLOCK-START
def solution():
    """The decision vector x: five numbers in [0, 1]. x[0] = f1 says where on the trade-off
    this program sits; x[1:] are its distance from the Pareto front (all 0: on it)."""
    x = [0.5, 0.3, 0.3, 0.3, 0.3]
    return x
# EVOLVE-BLOCK-END
