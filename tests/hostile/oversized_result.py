def solve(xs):
    return "x" * (20 * 1024 * 1024)  # 20 MB, far above the evaluator's max_bytes
