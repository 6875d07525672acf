def run():
    chunk = b"x" * (1024 * 1024)
    for i in range(16):  # 4 MB per file (under the per-file cap), 64 MB in all
        with open(f"part{i}.bin", "wb") as f:
            for _ in range(4):
                f.write(chunk)
    return {"combined_score": 1e9}
