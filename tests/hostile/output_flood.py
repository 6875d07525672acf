import sys


def run():
    line = "y" * 8191 + "\n"
    for _ in range(4000):  # 32 MB on stdout
        sys.stdout.write(line)
    for _ in range(500):  # 4 MB on stderr
        sys.stderr.write(line)
    return {"combined_score": 0.25}
