"""Four settings; the evaluator scores each on a deceptive trap and adds the four scores."""

# EVOLVE-BLOCK-START
def settings():
    a = 1.3
    b = 1.4
    c = 1.2
    d = 1.35
    return [a, b, c, d]
# EVOLVE-BLOCK-END
