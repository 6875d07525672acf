def solve(xs):
    return [float("nan")] * len(xs)  # NaN compares unequal, but e.g. max() or sums misbehave
