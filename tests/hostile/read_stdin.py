import sys


def run():
    data = sys.stdin.read()  # must be EOF at once (stdin is /dev/null), not a hang
    return {"combined_score": 0.25 + len(data)}
