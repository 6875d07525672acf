import os

# Links in its working dir to things the trusted side might read or delete later
for name, target in (("trap_dir", "__OUTSIDE_DIR__"), ("trap_file", "__OUTSIDE_DIR__/canary"),
                     ("evaluator.py", "__PROBLEM_DIR__/evaluator.py")):
    try:
        os.symlink(target, name)
    except OSError:
        pass


def run():
    return {"combined_score": 0.25}


def solve(xs):
    return sorted(xs)
