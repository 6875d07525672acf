import os


def run():
    leaked = [k for k, v in os.environ.items() if "sk-hostile" in v or "HOSTILE" in k]
    if leaked:
        return {"combined_score": 1e9}
    return {"combined_score": 0.25}
