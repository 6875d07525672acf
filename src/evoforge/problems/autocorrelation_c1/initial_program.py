"""First autocorrelation inequality: a non-negative step function f on [-1/4, 1/4] whose
autoconvolution has a small maximum relative to (integral of f)^2."""


# EVOLVE-BLOCK-START
def step_heights():
    """Return the heights h_0..h_{n-1} >= 0 of a step function with n equal steps on [-1/4, 1/4]."""
    n = 50  # number of steps
    offset = 0.1  # shifts the singularity of the profile left of the interval
    power = 0.25  # steepness of the profile: heights fall off like (x + offset)^-power
    return [((i + 0.5) / n + offset) ** (-power) for i in range(n)]
# EVOLVE-BLOCK-END
